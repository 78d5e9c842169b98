"""A model of video features (``video_tf``) applied to a new clip, from a file or a live source.

:func:`predict_video` streams a clip (file, DICOM cine or frame folder) through the path that made the
training table (:func:`her2dlr.video.stage.analyse_video`: frame QC, localisation, rejection and
interpolation, per-frame radiomics, time-frequency features), then applies the model with
:func:`her2dlr.predict.api.predict`. With ``overlay`` it writes the clip with the lesion outline
(colour by source: annotated blue, predicted green, interpolated yellow, rejected red) and the track of
the lesion centre over the last second drawn on every frame.

:class:`VideoStream` serves a live source frame by frame: :meth:`VideoStream.push` localises each frame
as it arrives (the row to draw at once) and keeps the frame losslessly in a temporary folder;
:meth:`VideoStream.finish` runs the same analysis on what was received and returns the prediction.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.errors import InputError
from her2dlr.learn.artefact import ModelArtefact, load_artefact
from her2dlr.predict.api import PredictionResult, predict
from her2dlr.predict.cases import Case
from her2dlr.video.features import DEFAULT_TARGET_FPS
from her2dlr.video.localise import Localiser
from her2dlr.video.stage import VideoAnalysis, analyse_video

__all__ = ["VideoPrediction", "VideoStream", "predict_video", "write_overlay"]

PathLike = str | os.PathLike[str]
SOURCE_COLOURS = {"annotated": (40, 120, 255), "predicted": (40, 220, 60), "interpolated": (255, 220, 0),
                  "rejected": (255, 40, 40)}


@dataclass
class VideoPrediction:
    """The model's answer for a clip, with the analysis it rests on."""

    result: PredictionResult
    analysis: VideoAnalysis
    overlay: Path | None = None


def _params(artefact: ModelArtefact) -> str:
    tables = artefact.feature_tables
    video = [t for t in tables if t.get("roi") == "video"]
    if not video:
        raise InputError(f"Model '{artefact.name}' was not trained on a video feature table (video_tf); "
                         "give it images or features instead of a video.")
    return str(video[0].get("params") or "video")


def _predict(artefact: ModelArtefact, analysis: VideoAnalysis, clinical: Mapping[str, Any] | None) -> PredictionResult:
    row = analysis.row.iloc[0].to_dict()
    case = Case(case_id=analysis.case_id, features=row, clinical=dict(clinical or {}))
    result = predict(artefact, case, progress=False)[0]
    result.provenance["inputs"] = "video"
    result.provenance["video"] = {"path": str(analysis.info.path), "fps": analysis.info.fps,
                                  "frames": analysis.counts(), "method": analysis.localisation.method}
    return result


def predict_video(model: ModelArtefact | PathLike, video: PathLike, *, case_id: str = "case",
                  clinical: Mapping[str, Any] | None = None, annotations: PathLike | None = None, key_frame: int = 0,
                  key_box: tuple[float, float, float, float] | None = None, segmenter: Any = None, spec: Any = None,
                  fps: float | None = None, spacing: float | None = None, overlay: PathLike | None = None,
                  n_jobs: int = 1, progress: bool = True) -> VideoPrediction:
    """Apply a ``video_tf`` model to one clip.

    Parameters
    ----------
    model : ModelArtefact or path
    video : path-like
        Video file, DICOM cine or frame folder.
    case_id : str
    clinical : mapping, optional
        Clinical values, for models that fuse them.
    annotations, key_frame, key_box, segmenter, spec, fps, spacing
        As :func:`her2dlr.video.stage.analyse_video` (localisation from annotations, a segmentation
        network or the tracker from one key-frame box).
    overlay : path-like, optional
        Write the clip with the lesion outline and track here (MP4).
    n_jobs : int, default=1
    progress : bool, default=True

    Returns
    -------
    VideoPrediction
    """
    artefact = model if isinstance(model, ModelArtefact) else load_artefact(model)
    params = _params(artefact)
    analysis = analyse_video(video, case_id=case_id, annotations=annotations, key_frame=key_frame, key_box=key_box,
                             model=segmenter, spec=spec, params=params, fps=fps, spacing=spacing,
                             target_fps=DEFAULT_TARGET_FPS, n_jobs=n_jobs, progress=progress)
    result = _predict(artefact, analysis, clinical)
    out = None
    if overlay is not None:
        from her2dlr.io.video import open_video

        out = write_overlay(open_video(video, fps=fps), analysis, overlay, probability=result.probability)
    return VideoPrediction(result=result, analysis=analysis, overlay=out)


class VideoStream:
    """A live clip, frame by frame (the serving path).

    Parameters
    ----------
    model : ModelArtefact or path
    fps : float
        The source's frame rate.
    key_box : (x, y, w, h), optional
        Lesion box on frame ``key_frame`` (tracker, box-prompted network).
    key_frame : int, default=0
    segmenter, spec : optional
        Segmentation network and its spec.
    case_id : str, default="case"
    clinical : mapping, optional

    Examples
    --------
    >>> stream = VideoStream("runs/s/models/video_tf-xgboost", fps=25, key_box=(40, 30, 50, 40))  # doctest: +SKIP
    >>> for frame in camera:  # doctest: +SKIP
    ...     row = stream.push(frame)  # box, confidence, source of this frame
    >>> answer = stream.finish()  # doctest: +SKIP
    """

    def __init__(self, model: ModelArtefact | PathLike, *, fps: float, key_box: tuple[float, float, float, float] | None = None,
                 key_frame: int = 0, segmenter: Any = None, spec: Any = None, case_id: str = "case",
                 clinical: Mapping[str, Any] | None = None) -> None:
        self.artefact = model if isinstance(model, ModelArtefact) else load_artefact(model)
        self.params = _params(self.artefact)
        if not fps or fps <= 0:
            raise InputError(f"A live source needs its frame rate; got fps={fps}.")
        self.fps = float(fps)
        method = "network" if segmenter is not None else "tracker"
        self.localiser = Localiser(method, key_frame=key_frame, key_box=key_box, model=segmenter, spec=spec)
        self.case_id, self.clinical = case_id, clinical
        self._folder = Path(tempfile.mkdtemp(prefix="her2dlr-live-"))
        self._n = 0

    def push(self, frame: np.ndarray) -> dict[str, Any]:
        """Take the next frame; return its raw localisation (``frame, x, y, w, h, confidence, source``)."""
        from PIL import Image

        arr = np.asarray(frame)
        if arr.dtype != np.uint8:
            raise InputError(f"Live frames must be uint8 grey (H, W) or RGB (H, W, 3); frame {self._n} is {arr.dtype}.")
        Image.fromarray(arr).save(self._folder / f"frame_{self._n:06d}.png", compress_level=1)
        self._n += 1
        return self.localiser.update(arr)

    def close(self) -> None:
        """Discard the frames received so far (a source that stopped early); :meth:`finish` does it itself."""
        shutil.rmtree(self._folder, ignore_errors=True)

    def finish(self, overlay: PathLike | None = None) -> VideoPrediction:
        """Finish the clip: rejection, interpolation, features and the model's answer."""
        try:
            loc = self.localiser.finish()
            analysis = analyse_video(self._folder, case_id=self.case_id, fps=self.fps, params=self.params,
                                     localisation=loc)
            result = _predict(self.artefact, analysis, self.clinical)
            out = None
            if overlay is not None:
                from her2dlr.io.video import open_video

                out = write_overlay(open_video(self._folder, fps=self.fps), analysis, overlay,
                                    probability=result.probability)
            return VideoPrediction(result=result, analysis=analysis, overlay=out)
        finally:
            shutil.rmtree(self._folder, ignore_errors=True)


def _outline(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return mask & ~ndimage.binary_erosion(mask)


def write_overlay(frames: Iterable[np.ndarray], analysis: VideoAnalysis, path: PathLike, *,
                  probability: float | None = None) -> Path:
    """Write the clip with each frame's lesion outline, its source and the centre track (last second).

    Parameters
    ----------
    frames : iterable of ndarray
        The clip (again).
    analysis : VideoAnalysis
    path : path-like
        Output video (MP4).
    probability : float, optional
        Printed on every frame.
    """
    from PIL import Image, ImageDraw

    from her2dlr.io.video import VideoWriter

    loc = analysis.localisation
    track = loc.track
    centres = np.stack([track["x"] + track["w"] / 2, track["y"] + track["h"] / 2], axis=1)
    tail = max(2, round(float(analysis.info.fps or 15)))
    with VideoWriter(path, fps=float(analysis.info.fps or 15.0)) as writer:
        for i, frame in enumerate(frames):
            rgb = np.asarray(frame)
            if rgb.dtype != np.uint8:
                rgb = np.clip(rgb / max(float(rgb.max()), 1.0) * 255, 0, 255).astype(np.uint8)
            rgb = np.repeat(rgb[..., None], 3, axis=2) if rgb.ndim == 2 else rgb[..., :3].copy()
            source = str(track["source"].iloc[i])
            colour = SOURCE_COLOURS.get(source, (255, 255, 255))
            rgb[_outline(loc.mask(i))] = colour
            image = Image.fromarray(rgb)
            draw = ImageDraw.Draw(image)
            points = [tuple(map(float, p)) for p in centres[max(0, i - tail): i + 1]]
            if len(points) > 1:
                draw.line(points, fill=(255, 140, 0), width=1)
            label = f"{i} {source}" + (f"  p={probability:.2f}" if probability is not None else "")
            draw.text((2, 2), label, fill=colour)
            writer.write(np.asarray(image))
    return Path(path)


def predict_video_options(artefact: ModelArtefact, video: PathLike, *, overlay: PathLike | None = None,
                          box: str | None = None, mask: PathLike | None = None, spacing: float | None = None,
                          clinical: list[str] | None = None, case: str = "case") -> VideoPrediction:
    """``her2dlr predict MODEL --video CLIP``: the command line's options turned into :func:`predict_video`.

    ``--box`` is the lesion box on frame 0 (the tracker follows it), ``--mask`` the per-frame annotations
    (boxes CSV or mask folder); ``--clinical COLUMN=VALUE`` items feed models that fuse clinical values.
    """
    from her2dlr.predict.inputs import parse_box, parse_clinical

    if box is None and mask is None:
        raise InputError("--video needs --box x,y,w,h (the lesion on frame 0) or --mask (per-frame annotations: "
                         "a frame,x,y,w,h CSV or a folder of mask files).")
    key_box = parse_box(box) if box is not None else None
    return predict_video(artefact, video, case_id=case, clinical=parse_clinical(clinical), annotations=mask,
                         key_box=key_box, spacing=spacing, overlay=overlay)
