"""Segmentation figures: the best, median and worst cases by Dice, true outline in green, predicted in red."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.imaging.figures import (
    GAP,
    PANEL,
    draw_outline,
    grey_rgb,
    lesion_slice,
    save_png,
    scale_to_height,
    titled_row,
)

__all__ = ["PRED_COLOUR", "TRUE_COLOUR", "outlined_picture", "overlay_montage", "pick_cases"]

#: Outline colours (RGB).
TRUE_COLOUR: tuple[int, int, int] = (0, 255, 0)
PRED_COLOUR: tuple[int, int, int] = (255, 0, 0)


def pick_cases(table: pd.DataFrame, n: int = 3) -> list[str]:
    """``n`` cases spread evenly over the ranking by Dice, best first: for 3, the best, median and worst.

    Cases are ranked by ``dice``, highest first (ties keep the table's order); the case at
    rank ``floor(k * (N - 1) / (n - 1) + 0.5)`` is picked for k = 0 .. n-1 (the median of an
    even number of cases is the lower of the two middle ones). All cases when there are
    fewer than ``n``.

    Parameters
    ----------
    table : DataFrame
        Index ``case_id``, column ``dice`` (:func:`~her2dlr.segment.metrics.segmentation_table`).
    n : int, default=3

    Returns
    -------
    list of str
    """
    if "dice" not in table.columns or len(table) == 0:
        raise InputError("pick_cases needs a table with a 'dice' column and at least one case.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"The 'n' parameter of pick_cases must be an int >= 1. Got {n!r} instead.")
    ranked = table["dice"].sort_values(ascending=False, kind="stable").index.astype(str).tolist()
    if len(ranked) <= n:
        return ranked
    if n == 1:
        return [ranked[len(ranked) // 2]]
    ranks = np.floor(np.linspace(0, len(ranked) - 1, n) + 0.5).astype(int)
    return [ranked[r] for r in ranks]


def outlined_picture(image: np.ndarray, true_mask: np.ndarray, pred_mask: np.ndarray, *, height: int = PANEL
                     ) -> np.ndarray:
    """The image scaled to ``height`` rows with the true (green) and predicted (red) lesion outlines.

    Masks are scaled by nearest neighbour before their outlines are drawn, so the lines stay
    one pixel wide; red is drawn over green where the two coincide. Volumes show the middle
    slice of the true lesion (of the predicted one when there is no true lesion).

    Parameters
    ----------
    image : ndarray of shape (rows, columns), (rows, columns, 3) or (slices, rows, columns)
    true_mask, pred_mask : ndarray of shape (rows, columns) or (slices, rows, columns)

    Returns
    -------
    ndarray of shape (height, width, 3), uint8
    """
    t, p = np.asarray(true_mask) != 0, np.asarray(pred_mask) != 0
    img = np.asarray(image)
    if t.shape != p.shape or img.shape[:t.ndim] != t.shape or img.ndim - t.ndim not in (0, 1):
        raise InputError(f"Image {img.shape}, true mask {t.shape} and predicted mask {p.shape} do not match.")
    if t.ndim == 3:
        z = lesion_slice(t if t.any() else p)
        img, t, p = img[z], t[z], p[z]
    if img.ndim == 3:  # RGB
        rgb = np.stack([scale_to_height(img[..., k], height) for k in range(3)], axis=-1)
        rgb = grey_rgb(rgb.round().clip(0, 255).astype(np.uint8) if img.dtype == np.uint8 else rgb)
    else:
        rgb = grey_rgb(scale_to_height(img, height))
    return draw_outline(draw_outline(rgb, scale_to_height(t, height, mask=True), TRUE_COLOUR),
                        scale_to_height(p, height, mask=True), PRED_COLOUR)


def _by_case(arrays: Sequence[Any] | Mapping[str, Any], ids: list[str], what: str) -> dict[str, Any]:
    if isinstance(arrays, Mapping):
        missing = [c for c in ids if c not in arrays]
        if missing:
            raise InputError(f"No {what} for case(s) {missing[:5]}.")
        return {c: arrays[c] for c in ids}
    if len(arrays) != len(ids):
        raise InputError(f"{len(arrays)} {what} for the table's {len(ids)} cases: give one per row, in its order.")
    return dict(zip(ids, arrays))


def overlay_montage(images: Sequence[Any] | Mapping[str, Any], true_masks: Sequence[Any] | Mapping[str, Any],
                    pred_masks: Sequence[Any] | Mapping[str, Any], table: pd.DataFrame,
                    path: str | os.PathLike[str], n: int = 3, *, height: int = PANEL, gap: int = GAP) -> Path:
    """One row of pictures: the best, median and worst cases by Dice, outlines of the true and predicted lesions.

    Parameters
    ----------
    images : sequence or dict of ndarray
        Grey ``(rows, columns)``, RGB ``(rows, columns, 3)`` or volumes ``(slices, rows, columns)``,
        one per row of ``table`` in its order, or by case id.
    true_masks, pred_masks : sequence or dict of ndarray
        Same layout as ``images`` (without the colour axis).
    table : DataFrame
        :func:`~her2dlr.segment.metrics.segmentation_table`.
    path : path-like
        The PNG, written atomically.
    n : int, default=3
        Pictures (see :func:`pick_cases`).
    height, gap : int
        Picture height and the white gap between pictures, in pixels.

    Returns
    -------
    Path
        A PNG of ``height`` + title rows; a square image takes ``height`` columns.
    """
    ids = table.index.astype(str).tolist()
    imgs = _by_case(images, ids, "images")
    trues = _by_case(true_masks, ids, "true masks")
    preds = _by_case(pred_masks, ids, "predicted masks")
    chosen = pick_cases(table, n)
    if len(chosen) == 3:
        names = ("best", "median", "worst")
    else:
        order = table["dice"].sort_values(ascending=False, kind="stable").index.astype(str).tolist()
        names = tuple(f"rank {order.index(c) + 1}/{len(order)}" for c in chosen)
    dice_of = dict(zip(ids, table["dice"].to_numpy(dtype=float)))
    pictures, titles = [], []
    for name, cid in zip(names, chosen):
        try:
            pictures.append(outlined_picture(imgs[cid], trues[cid], preds[cid], height=height))
        except InputError as err:
            raise InputError(f"Case {cid}: {err}") from None
        titles.append(f"{name}: {cid}\nDice {dice_of[cid]:.3f}")
    return save_png(titled_row(pictures, titles, height=height, gap=gap), path)
