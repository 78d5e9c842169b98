"""Segmentation quality: Dice, IoU, HD95, lesion detection, a per-case table and a cohort summary.

Masks are 2D ``(rows, columns)`` or 3D ``(slices, rows, columns)`` arrays; any non-zero value is
lesion. One lesion per case (the study's convention): boxes are the bounding box of all
lesion pixels.

Conventions for empty masks (those of the BraTS challenges):

* both empty: Dice 1, IoU 1, box IoU 1, HD95 0, ``detected`` NA (no lesion to find);
* lesion present, prediction empty: Dice 0, IoU 0, HD95 NaN, ``detected`` False;
* no lesion, prediction not empty: Dice 0, IoU 0, HD95 NaN, ``detected`` NA (a false
  positive, seen in ``pred_area``).

HD95 is MONAI's :func:`~monai.metrics.compute_hausdorff_distance` with ``percentile=95``:
the edge pixels of each mask (the mask minus its erosion), the distance of every edge pixel
of one mask to the nearest edge pixel of the other, the 95th percentile of each direction
(linear interpolation), and the larger of the two. In pixels (voxels) without a spacing, in
millimetres with one.

Detection: the prediction finds the lesion when the IoU of the predicted and true masks is
above 0.5 (``by="mask"``, the default), or the IoU of their bounding boxes (``by="box"``, the
detection benchmarks' rule, kinder to thin or irregular lesions).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.checks import check_choice, check_number
from her2dlr.errors import InputError

__all__ = [
    "DETECTION_MODES",
    "TABLE_COLUMNS",
    "bounding_box",
    "box_iou",
    "detected",
    "dice",
    "hd95",
    "iou",
    "segmentation_table",
    "summarise",
]

#: Allowed values of ``by`` / ``detection``: IoU of the masks, or of their bounding boxes.
DETECTION_MODES: tuple[str, ...] = ("mask", "box")
#: Columns of :func:`segmentation_table` (index ``case_id``).
TABLE_COLUMNS: tuple[str, ...] = ("dice", "iou", "box_iou", "hd95_px", "hd95_mm", "detected", "pred_empty",
                                  "true_area", "pred_area")

Spacing = Sequence[float] | np.ndarray


def _pair(pred: Any, true: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred) != 0
    t = np.asarray(true) != 0
    if p.shape != t.shape:
        raise InputError(f"The predicted mask has shape {p.shape}, the true mask {t.shape}: they must match.")
    if p.ndim not in (2, 3):
        raise InputError(f"Masks must be 2D (rows, columns) or 3D (slices, rows, columns); got shape {p.shape}.")
    return p, t


def dice(pred: Any, true: Any) -> float:
    """Dice coefficient ``2 |P ∩ T| / (|P| + |T|)``; 1 when both masks are empty.

    Parameters
    ----------
    pred, true : array-like of shape (rows, columns) or (slices, rows, columns)
        Non-zero is lesion.

    Returns
    -------
    float
    """
    p, t = _pair(pred, true)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def iou(pred: Any, true: Any) -> float:
    """Intersection over union (Jaccard index) ``|P ∩ T| / |P ∪ T|``; 1 when both masks are empty."""
    p, t = _pair(pred, true)
    union = int((p | t).sum())
    return 1.0 if union == 0 else int((p & t).sum()) / union


def bounding_box(mask: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounding box of the non-zero pixels: (lower corner, upper corner), half-open, in array axis order.

    None for an empty mask.
    """
    idx = np.argwhere(np.asarray(mask) != 0)
    if len(idx) == 0:
        return None
    return idx.min(axis=0), idx.max(axis=0) + 1


def box_iou(pred: Any, true: Any) -> float:
    """IoU of the bounding boxes of the two masks (volumes in pixels); 1 when both are empty, 0 when one is."""
    p, t = _pair(pred, true)
    bp, bt = bounding_box(p), bounding_box(t)
    if bp is None or bt is None:
        return 1.0 if bp is None and bt is None else 0.0
    inter = np.prod(np.clip(np.minimum(bp[1], bt[1]) - np.maximum(bp[0], bt[0]), 0, None))
    vol_p, vol_t = np.prod(bp[1] - bp[0]), np.prod(bt[1] - bt[0])
    return float(inter / (vol_p + vol_t - inter))


def _check_spacing(spacing: Any, ndim: int) -> np.ndarray:
    arr = np.asarray(spacing, dtype=np.float64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, ndim)
    if arr.size != ndim or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"A spacing must be {ndim} positive numbers in the mask's axis order (rows, columns"
                         f"{'' if ndim == 2 else ' after slices'}); got {spacing!r}.")
    return arr


def hd95(pred: Any, true: Any, spacing: Spacing | float | None = None, *, percentile: float = 95.0) -> float:
    """95th-percentile symmetric Hausdorff distance between the mask boundaries (MONAI).

    Parameters
    ----------
    pred, true : array-like of shape (rows, columns) or (slices, rows, columns)
        Non-zero is lesion.
    spacing : sequence of float or float, optional
        Pixel (voxel) size in the array's axis order, e.g. ``(row_mm, column_mm)`` or
        ``(slice_mm, row_mm, column_mm)`` (SimpleITK's ``GetSpacing()`` is the reverse). Default:
        distances in pixels.
    percentile : float, default=95.0
        100 gives the classical (maximum) Hausdorff distance.

    Returns
    -------
    float
        0 when both masks are empty, NaN when one is.
    """
    from monai.metrics import compute_hausdorff_distance

    p, t = _pair(pred, true)
    check_number("hd95", "percentile", percentile, low=0, high=100, low_open=True)
    has_p, has_t = bool(p.any()), bool(t.any())
    if not (has_p and has_t):
        return 0.0 if not (has_p or has_t) else float("nan")
    sp = None if spacing is None else _check_spacing(spacing, p.ndim).tolist()
    with warnings.catch_warnings():  # MONAI's own call of a deprecated argument, once per case
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        out = compute_hausdorff_distance(p[None, None].astype(np.float32), t[None, None].astype(np.float32),
                                         include_background=True, percentile=float(percentile), spacing=sp)
    return float(out.reshape(-1)[0])


def detected(pred: Any, true: Any, *, by: str = "mask", threshold: float = 0.5) -> bool | None:
    """Whether the prediction finds the lesion: IoU of the masks (``by="mask"``) or boxes (``"box"``) > ``threshold``.

    Returns
    -------
    bool or None
        None when the true mask is empty (no lesion to find).
    """
    check_choice("detected", "by", by, DETECTION_MODES)
    check_number("detected", "threshold", threshold, low=0, high=1)
    p, t = _pair(pred, true)
    if not t.any():
        return None
    return bool((iou(p, t) if by == "mask" else box_iou(p, t)) > threshold)


def _spacings(spacings: Any, n: int) -> list[Any]:
    if spacings is None:
        return [None] * n
    if isinstance(spacings, Real) or (len(spacings) and isinstance(spacings[0], Real)):
        return [spacings] * n  # one spacing shared by every case
    if len(spacings) != n:
        raise InputError(f"{len(spacings)} spacings for {n} cases: give one per case, or one for all.")
    return list(spacings)


def segmentation_table(pred_masks: Sequence[Any], true_masks: Sequence[Any], case_ids: Sequence[Any],
                       spacings: Any = None, *, detection: str = "mask", threshold: float = 0.5) -> pd.DataFrame:
    """Segmentation quality of every case.

    Parameters
    ----------
    pred_masks, true_masks : sequence of array-like of shape (rows, columns) or (slices, rows, columns)
        One pair per case (the sizes may differ between cases); non-zero is lesion.
    case_ids : sequence of str
    spacings : sequence of float, or sequence of (sequence of float or None), optional
        One spacing for all cases, or one per case, in the masks' axis order (see :func:`hd95`).
        ``hd95_mm`` is NaN for cases without one.
    detection : {"mask", "box"}, default="mask"
        IoU of the masks or of their bounding boxes decides ``detected``.
    threshold : float, default=0.5
        ``detected`` when that IoU is above it.

    Returns
    -------
    DataFrame
        Index ``case_id``; columns :data:`TABLE_COLUMNS`: ``dice, iou, box_iou, hd95_px, hd95_mm``,
        ``detected`` (nullable boolean; NA without a true lesion), ``pred_empty`` (bool),
        ``true_area, pred_area`` (pixels or voxels).

    Examples
    --------
    >>> t = np.zeros((8, 8), bool); t[2:6, 2:6] = True
    >>> p = np.zeros((8, 8), bool); p[2:6, 3:7] = True
    >>> segmentation_table([p], [t], ["a"])[["dice", "iou", "detected"]].round(3).to_dict("records")
    [{'dice': 0.75, 'iou': 0.6, 'detected': True}]
    """
    check_choice("segmentation_table", "detection", detection, DETECTION_MODES)
    n = len(case_ids)
    if len(pred_masks) != n or len(true_masks) != n:
        raise InputError(f"{len(pred_masks)} predicted and {len(true_masks)} true masks for {n} case ids.")
    rows = []
    for cid, pred, true, sp in zip(case_ids, pred_masks, true_masks, _spacings(spacings, n)):
        try:
            p, t = _pair(pred, true)
        except InputError as err:
            raise InputError(f"Case {cid}: {err}") from None
        rows.append({
            "case_id": str(cid), "dice": dice(p, t), "iou": iou(p, t), "box_iou": box_iou(p, t),
            "hd95_px": hd95(p, t), "hd95_mm": float("nan") if sp is None else hd95(p, t, sp),
            "detected": detected(p, t, by=detection, threshold=threshold), "pred_empty": not p.any(),
            "true_area": int(t.sum()), "pred_area": int(p.sum()),
        })
    table = pd.DataFrame(rows, columns=["case_id", *TABLE_COLUMNS]).set_index("case_id")
    table["detected"] = table["detected"].astype("boolean")
    table["pred_empty"] = table["pred_empty"].astype(bool)
    return table


def _boot_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator, level: float) -> tuple[float, float]:
    if n_boot == 0 or len(values) == 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(lo), float(hi)


def _nanmedian(values: pd.Series) -> float:
    v = values.to_numpy(dtype=np.float64)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")


def summarise(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0, *, level: float = 0.95) -> dict[str, float]:
    """Cohort summary of a :func:`segmentation_table`, with case-bootstrap percentile CIs.

    Parameters
    ----------
    table : DataFrame
        From :func:`segmentation_table`.
    n_boot : int, default=1000
        Bootstrap resamples of the cases (0: no CIs).
    seed : int, default=0
    level : float, default=0.95

    Returns
    -------
    dict
        ``n_cases``, ``dice_mean``, ``dice_ci_low``, ``dice_ci_high``, ``dice_median``, ``iou_mean``,
        ``iou_median``, ``hd95_px_median``, ``hd95_mm_median`` (over cases where it is defined;
        NaN without spacings), ``n_hd95`` (cases with a finite HD95), ``detection_rate`` with
        ``detection_ci_low`` / ``detection_ci_high`` (over the ``n_lesions`` cases with a true
        lesion), ``n_pred_empty``.
    """
    missing = [c for c in TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"The segmentation table lacks column(s) {missing}: make it with segmentation_table().")
    if len(table) == 0:
        raise InputError("The segmentation table has no cases.")
    check_number("summarise", "n_boot", n_boot, low=0, integer=True)
    check_number("summarise", "level", level, low=0, high=1, low_open=True)
    rng = np.random.default_rng(seed)
    d = table["dice"].to_numpy(dtype=np.float64)
    dice_lo, dice_hi = _boot_ci(d, n_boot, rng, level)
    det = table["detected"].dropna().astype(float).to_numpy()
    det_lo, det_hi = _boot_ci(det, n_boot, rng, level)
    return {
        "n_cases": len(table),
        "dice_mean": float(d.mean()), "dice_ci_low": dice_lo, "dice_ci_high": dice_hi,
        "dice_median": float(np.median(d)),
        "iou_mean": float(table["iou"].mean()), "iou_median": float(table["iou"].median()),
        "hd95_px_median": _nanmedian(table["hd95_px"]), "hd95_mm_median": _nanmedian(table["hd95_mm"]),
        "n_hd95": int(np.isfinite(table["hd95_px"].to_numpy(dtype=np.float64)).sum()),
        "detection_rate": float(det.mean()) if det.size else float("nan"),
        "detection_ci_low": det_lo, "detection_ci_high": det_hi, "n_lesions": int(det.size),
        "n_pred_empty": int(table["pred_empty"].sum()),
    }
