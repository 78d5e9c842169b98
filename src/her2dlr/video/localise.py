"""Per-frame lesion localisation in a clip, from the best source available.

Sources, in the order of preference the toolkit uses:

1. ``"annotations"``: the user's per-frame boxes (CSV ``frame, x, y, w, h``) or mask files
   (:func:`read_annotations`); frames without an annotation are interpolated.
2. ``"network"``: a trained segmentation network (:func:`her2dlr.segment.infer.segment_images`), box
   prompted from the previous frame's box (starting at one annotated key frame), or unprompted.
3. ``"tracker"``: :class:`her2dlr.video.track.TemplateTracker` from one key-frame box, for users with no
   network; the lesion of a frame is the ellipse inscribed in its box.

Frames that frame QC flags (:mod:`her2dlr.video.qc`) are not localised. Predicted frames then go
through temporal rejection, every frame without a trusted box is interpolated, and the track is
smoothed (:mod:`her2dlr.video.track`). Each frame's ``source`` is recorded: ``annotated``,
``predicted``, ``rejected`` (its box interpolated; ``reason`` says which rule) or ``interpolated``
(``reason``: the QC flag, nothing found, not annotated).

Frames before the key frame are tracked backwards from it, so they are held (as given) until the
key frame arrives: choose an early key frame for long clips. Only cropped masks are kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.video import frame_grey
from her2dlr.io.video_annotations import read_annotations
from her2dlr.video.qc import FrameQC, QCSettings, qc_counts
from her2dlr.video.track import (
    TRACK_COLUMNS,
    RejectionSettings,
    TemplateTracker,
    ellipse_mask,
    interpolate_track,
    reject_outliers,
    smooth_track,
)

__all__ = ["LOCALISERS", "Localisation", "Localiser", "finalise_track", "localise_video", "read_annotations"]

PathLike = str | os.PathLike[str]
Box = tuple[float, float, float, float]
LOCALISERS = ("annotations", "network", "tracker")


# ------------------------------------------------------------------ results
def _box_of(mask: np.ndarray) -> Box | None:
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)


@dataclass
class Localisation:
    """The lesion of every frame of a clip.

    Attributes
    ----------
    track : DataFrame
        ``frame, x, y, w, h, confidence, source, reason`` after rejection, interpolation and smoothing.
    shape : (int, int)
        Frame height and width.
    qc : DataFrame
        Frame QC table (:class:`her2dlr.video.qc.FrameQC`).
    method : str
    masks : dict of int to (int, int, ndarray)
        Cropped masks ``(y0, x0, crop)`` of the frames that have one (annotated or predicted by a network).
    """

    track: pd.DataFrame
    shape: tuple[int, int]
    qc: pd.DataFrame
    method: str
    masks: dict[int, tuple[int, int, np.ndarray]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Frames per source and per QC flag (``qc_<flag>``)."""
        src = self.track["source"].value_counts()
        out = {s: int(src.get(s, 0)) for s in ("annotated", "predicted", "interpolated", "rejected")}
        out.update({f"qc_{k}": v for k, v in qc_counts(self.qc).items()})
        return out

    def mask(self, frame: int) -> np.ndarray:
        """Full-size boolean lesion mask of ``frame``.

        A frame with its own mask returns it; an interpolated frame gets the mask of the nearest frame
        that has one, moved and scaled onto its box; with no masks at all (tracker), the ellipse
        inscribed in the box.
        """
        row = self.track.iloc[frame]
        box = (float(row.x), float(row.y), float(row.w), float(row.h))
        if frame in self.masks:
            return self._full(frame)
        if not self.masks:
            return ellipse_mask(self.shape, box)
        keys = np.fromiter(self.masks, int)
        near = int(keys[np.argmin(np.abs(keys - frame))])
        src = self.track.iloc[near]
        return _move_mask(self._full(near), (float(src.x), float(src.y), float(src.w), float(src.h)), box)

    def _full(self, frame: int) -> np.ndarray:
        y0, x0, crop = self.masks[frame]
        full = np.zeros(self.shape, dtype=bool)
        full[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop
        return full


def _move_mask(mask: np.ndarray, src: Box, dst: Box) -> np.ndarray:
    """``mask`` (lesion in box ``src``) mapped onto box ``dst`` by shift and scale (nearest neighbour)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    x0, y0 = max(int(np.floor(dst[0])), 0), max(int(np.floor(dst[1])), 0)
    x1, y1 = min(int(np.ceil(dst[0] + dst[2])), w), min(int(np.ceil(dst[1] + dst[3])), h)
    if x1 <= x0 or y1 <= y0:
        return out
    ys = src[1] + (np.arange(y0, y1) + 0.5 - dst[1]) * src[3] / max(dst[3], 1e-6) - 0.5
    xs = src[0] + (np.arange(x0, x1) + 0.5 - dst[0]) * src[2] / max(dst[2], 1e-6) - 0.5
    yi = np.clip(np.round(ys).astype(int), 0, h - 1)
    xi = np.clip(np.round(xs).astype(int), 0, w - 1)
    out[y0:y1, x0:x1] = mask[np.ix_(yi, xi)]
    return out


def _crop(mask: np.ndarray) -> tuple[int, int, np.ndarray]:
    ys, xs = np.nonzero(mask)
    y0, x0 = int(ys.min()), int(xs.min())
    return y0, x0, mask[y0:ys.max() + 1, x0:xs.max() + 1].copy()


# ------------------------------------------------------------------ the localiser
class Localiser:
    """Localise the lesion frame by frame; :meth:`finish` applies rejection, interpolation and smoothing.

    Usable on a live source: call :meth:`update` with each frame as it arrives (it returns the raw
    per-frame result), then :meth:`finish` once.

    Parameters
    ----------
    method : {"annotations", "network", "tracker"}
    key_frame : int, default=0
        Frame of ``key_box`` (tracker, box-prompted network).
    key_box : (x, y, w, h), optional
        The lesion box on the key frame.
    annotations : mapping of int to box or mask, optional
        For ``"annotations"`` (see :func:`read_annotations`).
    model, spec : segmentation network and its SegSpec, optional
        For ``"network"``.
    rejection : RejectionSettings, optional
    qc : QCSettings, optional
    device : str, default="cpu"
    """

    def __init__(self, method: str, *, key_frame: int = 0, key_box: Box | None = None,
                 annotations: dict[int, Box | np.ndarray] | None = None, model: Any = None, spec: Any = None,
                 rejection: RejectionSettings | None = None, qc: QCSettings | None = None,
                 device: str = "cpu") -> None:
        if method not in LOCALISERS:
            from her2dlr.errors import nearest

            raise InputError(f"Unknown localisation method '{method}'. Allowed: {', '.join(LOCALISERS)}."
                             f"{nearest(method, LOCALISERS)}")
        if method == "annotations" and not annotations:
            raise InputError("Localisation by annotations needs per-frame annotations (a CSV or mask folder).")
        if method == "network" and (model is None or spec is None):
            raise InputError("Localisation by network needs a segmentation network and its spec.")
        prompted = method == "tracker" or (method == "network" and bool(getattr(spec, "box_prompt", False)))
        if prompted and key_box is None:
            raise InputError(f"Localisation by {'tracker' if method == 'tracker' else 'a box-prompted network'} "
                             "needs the lesion box on one key frame.")
        self.method, self.key_frame, self.key_box = method, int(key_frame), key_box
        self.annotations = annotations or {}
        self.model, self.spec, self.device = model, spec, device
        self.prompted = prompted
        self.rejection = rejection or RejectionSettings()
        self._qc = FrameQC(qc)
        self._rows: dict[int, dict[str, Any]] = {}
        self._masks: dict[int, tuple[int, int, np.ndarray]] = {}
        self._held: list[tuple[int, np.ndarray]] = []
        self._state: Any = None
        self._shape: tuple[int, int] | None = None
        self._index = 0

    # one frame -------------------------------------------------------------
    def update(self, frame: np.ndarray) -> dict[str, Any]:
        """Take the next frame; return its raw row (``frame, x, y, w, h, confidence, source, reason``).

        Frames before the key frame are held and answered with ``source = "pending"``.
        """
        index = self._index
        self._index += 1
        if self._shape is None:
            self._shape = tuple(frame.shape[:2])  # type: ignore[assignment]
        flag = self._qc.update(frame)
        if flag != "ok" and not (self.prompted and index == self.key_frame):  # the user's key frame is kept
            return self._record(index, None, None, 0.0, f"qc: {flag}")
        if self.prompted and index < self.key_frame:
            self._held.append((index, frame))
            return {"frame": index, "source": "pending"}
        if self.prompted and index == self.key_frame:
            row = self._first(index, frame)
            for held_index, held in reversed(self._held):  # backwards from the key frame
                self._one(held_index, held)
            self._held.clear()
            self._state = self._forward_state
            return row
        return self._one(index, frame)

    def _first(self, index: int, frame: np.ndarray) -> dict[str, Any]:
        grey = frame_grey(frame)
        if self.method == "tracker":
            self._state = TemplateTracker(grey, self.key_box)  # type: ignore[arg-type]
        else:
            self._state = self.key_box
        row = self._one(index, frame)
        self._forward_state = self._state
        if self.method == "tracker":  # the backward pass starts again from the key frame
            self._state = TemplateTracker(grey, self.key_box)  # type: ignore[arg-type]
        else:
            self._state = self.key_box
        return row

    def _one(self, index: int, frame: np.ndarray) -> dict[str, Any]:
        if self.method == "annotations":
            ann = self.annotations.get(index)
            if ann is None:
                return self._record(index, None, None, 0.0, "not annotated")
            if isinstance(ann, np.ndarray):
                if ann.shape != frame.shape[:2]:
                    raise InputError(f"Annotation mask of frame {index} is {ann.shape[1]}x{ann.shape[0]} but the "
                                     f"frame is {frame.shape[1]}x{frame.shape[0]}.")
                box = _box_of(ann)
                if box is None:
                    return self._record(index, None, None, 0.0, "empty annotation mask")
                return self._record(index, box, ann, 1.0, None, source="annotated")
            return self._record(index, ann, None, 1.0, None, source="annotated")
        if self.method == "tracker":
            if self._state is None:
                return self._record(index, None, None, 0.0, "before the key frame")
            box, confidence = self._state.step(frame_grey(frame))
            return self._record(index, box, None, confidence, None)
        return self._network(index, frame)

    def _network(self, index: int, frame: np.ndarray) -> dict[str, Any]:
        from her2dlr.segment.infer import segment_images

        image = frame if self.spec.channels == 3 and frame.ndim == 3 else frame_grey(frame)
        prompt = None
        if self.prompted:
            if self._state is None:
                return self._record(index, None, None, 0.0, "before the key frame")
            prompt = self._state
        pred = segment_images(self.model, [image], boxes=[prompt] if prompt is not None else None, spec=self.spec,
                              device=self.device, progress=False)[0]
        if pred.empty:
            return self._record(index, None, None, 0.0, "nothing found")
        box = _box_of(pred.mask)
        if self.prompted and pred.confidence >= self.rejection.min_confidence:
            self._state = box
        return self._record(index, box, pred.mask, pred.confidence, None)

    def _record(self, index: int, box: Box | None, mask: np.ndarray | None, confidence: float,
                reason: str | None, *, source: str = "predicted") -> dict[str, Any]:
        if box is None:
            row = {"frame": index, "x": np.nan, "y": np.nan, "w": np.nan, "h": np.nan, "confidence": confidence,
                   "source": "missing", "reason": reason}
        else:
            row = {"frame": index, "x": box[0], "y": box[1], "w": box[2], "h": box[3], "confidence": confidence,
                   "source": source, "reason": reason}
            if mask is not None and mask.any():
                self._masks[index] = _crop(mask)
        self._rows[index] = row
        return row

    # the end ---------------------------------------------------------------
    @property
    def qc_table(self) -> pd.DataFrame:
        """Frame QC of the frames so far."""
        return self._qc.table

    def raw(self) -> tuple[pd.DataFrame, dict[int, tuple[int, int, np.ndarray]]]:
        """The per-frame results so far, before rejection: the raw track and the cropped masks."""
        if self._index == 0 or self._shape is None:
            raise InputError("No frames were given to localise.")
        if self._held or (self.prompted and self.key_frame >= self._index):
            raise InputError(f"Key frame {self.key_frame} is beyond the clip's {self._index} frames.")
        track = pd.DataFrame([self._rows[i] for i in range(self._index)], columns=TRACK_COLUMNS)
        track["reason"] = track["reason"].astype(object)
        return track, dict(self._masks)

    def finish(self) -> Localisation:
        """Rejection, interpolation and smoothing over the whole clip (:func:`finalise_track`).

        Raises
        ------
        InputError
            No frames; the key frame lies beyond the clip; the lesion was never found.
        """
        track, masks = self.raw()
        return finalise_track(track, masks, self._shape, self._qc.table, self.method,  # type: ignore[arg-type]
                              self.rejection)


def finalise_track(track: pd.DataFrame, masks: dict[int, tuple[int, int, np.ndarray]], shape: tuple[int, int],
                   qc: pd.DataFrame, method: str, rejection: RejectionSettings | None = None) -> Localisation:
    """Temporal rejection, interpolation and smoothing of a raw per-frame track.

    Parameters
    ----------
    track : DataFrame
        Raw rows (:meth:`Localiser.raw`).
    masks : dict
        Cropped masks of the frames that have one; those of rejected frames are dropped.
    shape : (int, int)
    qc : DataFrame
        Frame QC table.
    method : str
    rejection : RejectionSettings, optional

    Returns
    -------
    Localisation
    """
    rejection = rejection or RejectionSettings()
    track = reject_outliers(track, rejection)
    kept = dict(masks)
    for i in track.index[track["source"] == "rejected"]:
        kept.pop(int(track.at[i, "frame"]), None)
    track = interpolate_track(track)
    track = smooth_track(track, rejection.smooth)
    return Localisation(track=track, shape=shape, qc=qc, method=method, masks=kept)


def localise_video(frames: Iterable[np.ndarray], method: str, *, progress: bool = False, total: int | None = None,
                   **options: Any) -> Localisation:
    """Localise the lesion in every frame of ``frames`` (an iterator or a :class:`~her2dlr.io.video.VideoReader`).

    Parameters
    ----------
    frames : iterable of ndarray
    method : {"annotations", "network", "tracker"}
    progress : bool, default=False
        A progress bar over the frames.
    total : int, optional
        Frame count for the progress bar.
    **options
        Passed to :class:`Localiser`.

    Returns
    -------
    Localisation

    Raises
    ------
    InputError
        Bad options, no frames, or a lesion never found (the message says so; a cohort run records it
        and goes on).
    """
    localiser = Localiser(method, **options)
    for frame in _progress(frames, progress, total, "localising"):
        localiser.update(frame)
    return localiser.finish()


def _progress(frames: Iterable[np.ndarray], show: bool, total: int | None, desc: str) -> Iterator[np.ndarray]:
    if not show:
        yield from frames
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=desc, unit="frame", leave=False) as bar:
        for frame in frames:
            yield frame
            bar.update(1)
