"""A plain lesion tracker, temporal rejection, interpolation and smoothing of a per-frame track.

The **tracker** (:class:`TemplateTracker`) is for users with no segmentation network: the lesion box
of one key frame is the template, and each next frame is searched around the previous box by
normalised cross-correlation (NCC, computed with an FFT and summed-area tables: written here with
NumPy/SciPy because the libraries that ship it, scikit-image and OpenCV, are not dependencies) at
three scales, so a growing or shrinking cross-section is followed. The peak NCC is the confidence.

**Temporal rejection** (:func:`reject_outliers`, seed 001's "rejection and interpolation"): each
trusted frame is compared with the median box of its neighbours (``window`` frames either side):
the centre jump (in units of the median box's side), the size change ``|ln(area / median area)|``
and the overlap (IoU with the median box). A frame is rejected when any of them lies beyond a
robust threshold (median + ``z`` x 1.4826 x MAD of that quantity over the clip, and beyond a
fixed floor so a steady track does not reject its own noise), or its confidence is under
``min_confidence``. **Interpolation** (:func:`interpolate_track`) fills rejected and missing frames
linearly between the nearest trusted frames on either side (the nearest one at the ends), and
**smoothing** (:func:`smooth_track`) runs a centred moving average over the box coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.signal import fftconvolve

from her2dlr.errors import InputError

__all__ = [
    "RejectionSettings",
    "TemplateTracker",
    "box_iou",
    "ellipse_mask",
    "interpolate_track",
    "ncc_map",
    "reject_outliers",
    "smooth_track",
]

TRACK_COLUMNS = ["frame", "x", "y", "w", "h", "confidence", "source", "reason"]


def _window_sum(a: np.ndarray, h: int, w: int) -> np.ndarray:
    c = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


def ncc_map(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``template`` at every position inside ``image``.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    template : ndarray of shape (h, w), h <= H and w <= W

    Returns
    -------
    ndarray of shape (H - h + 1, W - w + 1)
        Pearson correlation between the template and the window whose top-left corner is there;
        0 where the window is flat.
    """
    image = np.asarray(image, dtype=np.float64)
    t = np.asarray(template, dtype=np.float64)
    h, w = t.shape
    if h > image.shape[0] or w > image.shape[1]:
        raise InputError(f"Template {t.shape} is larger than the image {image.shape}.")
    t = t - t.mean()
    t_norm = np.sqrt((t**2).sum())
    corr = fftconvolve(image, t[::-1, ::-1], mode="valid")
    s1 = _window_sum(image, h, w)
    s2 = _window_sum(image**2, h, w)
    var = np.maximum(s2 - s1**2 / (h * w), 0.0)
    denom = np.sqrt(var) * t_norm
    out = np.zeros_like(corr)
    ok = denom > 1e-6 * max(1.0, float(denom.max()))
    out[ok] = corr[ok] / denom[ok]
    return np.clip(out, -1.0, 1.0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``(x, y, w, h)`` row by row (arrays of shape (n, 4))."""
    a = np.atleast_2d(np.asarray(a, float))
    b = np.atleast_2d(np.asarray(b, float))
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def ellipse_mask(shape: tuple[int, int], box: tuple[float, float, float, float]) -> np.ndarray:
    """The ellipse inscribed in box ``(x, y, w, h)`` as a boolean mask of ``shape`` (a lesion from a box)."""
    x, y, w, h = box
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    cx, cy = x + w / 2 - 0.5, y + h / 2 - 0.5
    return ((xx - cx) / max(w / 2, 0.5)) ** 2 + ((yy - cy) / max(h / 2, 0.5)) ** 2 <= 1.0


class TemplateTracker:
    """Follow one lesion box from frame to frame by multi-scale NCC template matching.

    Parameters
    ----------
    frame : ndarray of shape (H, W)
        Grey key frame.
    box : (x, y, w, h)
        The lesion box on the key frame, in pixels.
    search : float, default=0.5
        Search margin around the previous box, as a fraction of its side.
    scales : tuple of float, default=(0.94, 1.0, 1.06)
        Relative template sizes tried at each frame.
    update : float, default=0.1
        Template blending rate on confident frames (follows slow appearance changes).
    """

    def __init__(self, frame: np.ndarray, box: tuple[float, float, float, float], *, search: float = 0.5,
                 scales: tuple[float, ...] = (0.94, 1.0, 1.06), update: float = 0.1) -> None:
        x, y, w, h = (float(v) for v in box)
        H, W = frame.shape
        if w < 4 or h < 4 or x < 0 or y < 0 or x + w > W + 0.5 or y + h > H + 0.5:
            raise InputError(f"Key-frame box {tuple(box)} must lie inside the {W}x{H} frame and be at least 4x4.")
        self.box = (x, y, w, h)
        self.template = self._patch(np.asarray(frame, np.float64), self.box)
        self.search = search
        self.scales = scales
        self.update = update

    @staticmethod
    def _patch(frame: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x, y, w, h = (round(v) for v in box)
        return frame[max(y, 0): y + h, max(x, 0): x + w].copy()

    def step(self, frame: np.ndarray) -> tuple[tuple[float, float, float, float], float]:
        """Find the lesion in the next frame: the new box and its NCC confidence."""
        frame = np.asarray(frame, np.float64)
        H, W = frame.shape
        x, y, w, h = self.box
        best = (-2.0, self.box)
        for s in self.scales:
            nw, nh = max(4, round(w * s)), max(4, round(h * s))
            if nw >= W or nh >= H:
                continue
            tpl = ndimage.zoom(self.template, (nh / self.template.shape[0], nw / self.template.shape[1]), order=1)
            tpl = tpl[:nh, :nw]
            if tpl.shape != (nh, nw):
                continue
            mx, my = self.search * w + abs(nw - w), self.search * h + abs(nh - h)
            x0, y0 = int(max(0, np.floor(x + (w - nw) / 2 - mx))), int(max(0, np.floor(y + (h - nh) / 2 - my)))
            x1, y1 = int(min(W, np.ceil(x + (w + nw) / 2 + mx))), int(min(H, np.ceil(y + (h + nh) / 2 + my)))
            if x1 - x0 < nw or y1 - y0 < nh:
                continue
            scores = ncc_map(frame[y0:y1, x0:x1], tpl)
            iy, ix = np.unravel_index(int(np.argmax(scores)), scores.shape)
            if scores[iy, ix] > best[0]:
                best = (float(scores[iy, ix]), (float(x0 + ix), float(y0 + iy), float(nw), float(nh)))
        confidence, box = best
        if confidence > -2.0:
            self.box = box
            if confidence > 0.6 and self.update > 0:
                patch = self._patch(frame, box)
                if patch.size:
                    zoomed = ndimage.zoom(patch, (self.template.shape[0] / patch.shape[0],
                                                  self.template.shape[1] / patch.shape[1]), order=1)
                    if zoomed.shape == self.template.shape:
                        self.template = (1 - self.update) * self.template + self.update * zoomed
        return self.box, max(confidence, 0.0)


@dataclass(frozen=True)
class RejectionSettings:
    """Thresholds of :func:`reject_outliers` (see the module docstring).

    Parameters
    ----------
    window : int, default=3
        Neighbours either side forming the reference median box.
    z : float, default=3.5
        Robust z-score (MAD units) beyond which a frame is rejected.
    min_confidence : float, default=0.3
    centre_floor : float, default=0.25
        Never reject a centre jump under this fraction of the box side.
    size_floor : float, default=0.35
        Never reject a size change under this ``|ln(area ratio)|`` (about x1.4).
    iou_floor : float, default=0.4
        Never reject an IoU above this with the median box.
    smooth : int, default=5
        Moving-average window (frames) of :func:`smooth_track`; 1 turns smoothing off.
    """

    window: int = 3
    z: float = 3.5
    min_confidence: float = 0.3
    centre_floor: float = 0.25
    size_floor: float = 0.35
    iou_floor: float = 0.4
    smooth: int = 5


def _neighbour_median(values: np.ndarray, trusted: np.ndarray, window: int) -> np.ndarray:
    n = len(values)
    out = np.full_like(values, np.nan, dtype=float)
    idx = np.flatnonzero(trusted)
    for i in range(n):
        near = idx[(np.abs(idx - i) <= window) & (idx != i)]
        if len(near):
            out[i] = np.median(values[near], axis=0)
    return out


def _robust_limit(values: np.ndarray, z: float, floor: float, upper: bool = True) -> float:
    v = values[np.isfinite(values)]
    if not len(v):
        return floor
    med = float(np.median(v))
    mad = 1.4826 * float(np.median(np.abs(v - med)))
    return max(med + z * mad, floor) if upper else min(med - z * mad, floor)


def reject_outliers(track: pd.DataFrame, settings: RejectionSettings | None = None) -> pd.DataFrame:
    """Mark frames whose box jumps in centre, size or overlap, or whose confidence is low, as rejected.

    Parameters
    ----------
    track : DataFrame
        Columns ``frame, x, y, w, h, confidence, source, reason``; rows with source ``"annotated"`` or
        ``"predicted"`` are candidates (annotations are never rejected), other rows are left as they are.
    settings : RejectionSettings, optional

    Returns
    -------
    DataFrame
        A copy with ``source = "rejected"`` and the ``reason`` filled on rejected frames.
    """
    st = settings or RejectionSettings()
    out = track.copy().reset_index(drop=True)
    boxes = out[["x", "y", "w", "h"]].to_numpy(float)
    candidate = (out["source"] == "predicted").to_numpy()
    low = candidate & (out["confidence"].to_numpy(float) < st.min_confidence)
    out.loc[low, "source"] = "rejected"
    out.loc[low, "reason"] = [f"confidence {c:.2f} < {st.min_confidence}" for c in out.loc[low, "confidence"]]
    trusted = out["source"].isin(["predicted", "annotated"]).to_numpy() & np.isfinite(boxes).all(axis=1)
    if trusted.sum() < 3:
        return out
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    areas = boxes[:, 2] * boxes[:, 3]
    ref_c = np.stack([_neighbour_median(centres[:, 0], trusted, st.window),
                      _neighbour_median(centres[:, 1], trusted, st.window)], axis=1)
    ref_wh = np.stack([_neighbour_median(boxes[:, 2], trusted, st.window),
                       _neighbour_median(boxes[:, 3], trusted, st.window)], axis=1)
    side = np.sqrt(np.maximum(ref_wh[:, 0] * ref_wh[:, 1], 1e-9))
    jump = np.linalg.norm(centres - ref_c, axis=1) / side
    size = np.abs(np.log(np.maximum(areas, 1e-9) / np.maximum(ref_wh[:, 0] * ref_wh[:, 1], 1e-9)))
    ref_box = np.concatenate([ref_c - ref_wh / 2, ref_wh], axis=1)
    iou = box_iou(boxes, ref_box)
    iou[~np.isfinite(ref_box).all(axis=1)] = np.nan
    check = trusted & candidate
    limits = {
        "centre jump": (jump, _robust_limit(jump[check], st.z, st.centre_floor)),
        "size change": (size, _robust_limit(size[check], st.z, st.size_floor)),
    }
    iou_limit = _robust_limit(iou[check], st.z, st.iou_floor, upper=False)
    for i in np.flatnonzero(check):
        reasons = [f"{name} {vals[i]:.2f} > {lim:.2f}" for name, (vals, lim) in limits.items()
                   if np.isfinite(vals[i]) and vals[i] > lim]
        if np.isfinite(iou[i]) and iou[i] < iou_limit:
            reasons.append(f"overlap {iou[i]:.2f} < {iou_limit:.2f}")
        if reasons:
            out.loc[i, "source"] = "rejected"
            out.loc[i, "reason"] = "; ".join(reasons)
    return out


def interpolate_track(track: pd.DataFrame) -> pd.DataFrame:
    """Fill the boxes of rejected and missing frames from the trusted frames either side.

    Returns
    -------
    DataFrame
        A copy where every frame that had no trusted box gets a linearly interpolated one;
        ``source`` becomes ``"interpolated"`` (rejected frames keep ``"rejected"`` and their ``reason``).

    Raises
    ------
    InputError
        When no frame is trusted: the lesion was never found.
    """
    out = track.copy().reset_index(drop=True)
    trusted = out["source"].isin(["predicted", "annotated"]).to_numpy()
    if not trusted.any():
        raise InputError("The lesion was never found in this video (no trusted frame to interpolate from).")
    frames = out["frame"].to_numpy(float)
    for col in ("x", "y", "w", "h"):
        values = out[col].to_numpy(float)
        out[col] = np.interp(frames, frames[trusted], values[trusted])
    fill = ~trusted
    out.loc[fill & (out["source"] != "rejected"), "source"] = "interpolated"
    out.loc[fill, "confidence"] = np.nan
    return out


def smooth_track(track: pd.DataFrame, window: int = 5) -> pd.DataFrame:
    """Centred moving average of ``x, y, w, h`` over ``window`` frames (annotated frames are kept as given)."""
    if window <= 1:
        return track.copy()
    out = track.copy()
    keep = out["source"] == "annotated"
    for col in ("x", "y", "w", "h"):
        smoothed = out[col].rolling(window, center=True, min_periods=1).mean()
        out[col] = np.where(keep, out[col], smoothed)
    return out
