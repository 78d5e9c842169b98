"""Figures of the deep stage: heat overlays, the TP / FP / FN / TN montage, the feature embedding.

Every figure is written atomically and can be redrawn from files in the run folder (the
embedding's 2D coordinates are saved beside it as CSV). matplotlib runs on the ``Agg``
backend; single-case overlays are composed as arrays and written with Pillow (fast enough
for every case of a cohort).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.io.atomic import atomic_path, write_csv_atomic

__all__ = [
    "GROUP_ORDER",
    "MontageCell",
    "draw_box",
    "draw_outline",
    "embed_2d",
    "overlay_rgb",
    "save_embedding",
    "save_montage",
    "save_png",
    "to_uint8",
]

#: Rows of the montage, top to bottom.
GROUP_ORDER: tuple[str, ...] = ("TP", "FP", "FN", "TN")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Grey image scaled to 0..255 by its 1st and 99.5th percentiles (uint8 images are kept)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    arr = image.astype(np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = np.percentile(finite, [1.0, 99.5])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((np.nan_to_num(arr, nan=lo) - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def overlay_rgb(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Heat map over a grey image.

    Parameters
    ----------
    image : ndarray of shape (rows, columns)
        Grey image (any range; see :func:`to_uint8`).
    heat : ndarray of shape (rows, columns)
        Values in [0, 1] (normalised map); 0 leaves the image as it is.
    alpha : float, default=0.5
        Opacity of the hottest pixels; each pixel's opacity is ``alpha * heat``.
    cmap : str, default="jet"

    Returns
    -------
    ndarray of shape (rows, columns, 3), uint8
    """
    from matplotlib import colormaps

    grey = to_uint8(image).astype(np.float64) / 255.0
    h = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, 1.0)
    if h.shape != grey.shape:
        raise InputError(f"Heat map shape {h.shape} differs from the image's {grey.shape}.")
    colour = colormaps[cmap](h)[..., :3]
    a = (alpha * h)[..., None]
    rgb = grey[..., None] * (1 - a) + colour * a
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def draw_box(rgb: np.ndarray, box: Sequence[int], colour: Sequence[int] = (255, 255, 0), width: int = 1
             ) -> np.ndarray:
    """Copy of ``rgb`` with the outline of box ``(x0, y0, x1, y1)`` (half-open) drawn, clipped to the image."""
    out = rgb.copy()
    rows, cols = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x1, y1 = x1 - 1, y1 - 1
    for t in range(width):
        for yy in (y0 + t, y1 - t):
            if 0 <= yy < rows:
                out[yy, max(x0, 0):max(min(x1 + 1, cols), 0)] = colour
        for xx in (x0 + t, x1 - t):
            if 0 <= xx < cols:
                out[max(y0, 0):max(min(y1 + 1, rows), 0), xx] = colour
    return out


def draw_outline(rgb: np.ndarray, mask: np.ndarray, colour: Sequence[int] = (0, 255, 0)) -> np.ndarray:
    """Copy of ``rgb`` with the boundary pixels of ``mask`` (non-zero inside) coloured."""
    from scipy.ndimage import binary_erosion

    m = np.asarray(mask) > 0
    if m.shape != rgb.shape[:2]:
        raise InputError(f"Mask shape {m.shape} differs from the image's {rgb.shape[:2]}.")
    edge = m & ~binary_erosion(m, border_value=0)
    out = rgb.copy()
    out[edge] = colour
    return out


def save_png(rgb: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write an RGB (or grey) uint8 array as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")
    return Path(path)


def _save_figure(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


@dataclass
class MontageCell:
    """One picture of the montage.

    Attributes
    ----------
    group : {"TP", "FP", "FN", "TN"}
    rgb : ndarray of shape (rows, columns, 3), uint8
    title : str
        E.g. ``"benign (1)\\nlabel 1, p=0.93"``.
    """

    group: str
    rgb: np.ndarray
    title: str


def save_montage(cells: Sequence[MontageCell], path: str | os.PathLike[str], *, n_columns: int | None = None,
                 suptitle: str | None = None, dpi: int = 110) -> Path:
    """A grid PNG: one row per group (TP, FP, FN, TN), pictures with their titles.

    Parameters
    ----------
    cells : sequence of MontageCell
    path : path-like
    n_columns : int, optional
        Pictures per row (default: the largest group).
    suptitle : str, optional
    dpi : int, default=110

    Raises
    ------
    InputError
        No cells, or a group outside :data:`GROUP_ORDER`.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not cells:
        raise InputError("The montage has no pictures.")
    unknown = sorted({c.group for c in cells} - set(GROUP_ORDER))
    if unknown:
        raise InputError(f"Montage groups {unknown} are not among {list(GROUP_ORDER)}.")
    groups = [g for g in GROUP_ORDER if any(c.group == g for c in cells)]
    width = n_columns or max(sum(c.group == g for c in cells) for g in groups)
    fig, axes = plt.subplots(len(groups), width, figsize=(2.3 * width, 2.6 * len(groups)), squeeze=False)
    for r, g in enumerate(groups):
        row = [c for c in cells if c.group == g][:width]
        for j in range(width):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(row):
                ax.imshow(row[j].rgb)
                ax.set_title(row[j].title, fontsize=7)
            if j == 0:
                ax.set_ylabel(g, fontsize=12, rotation=0, labelpad=18, va="center")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path, dpi)


def embed_2d(features: np.ndarray, *, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2D embedding of feature rows: t-SNE (standardised, PCA-initialised) or PCA.

    Parameters
    ----------
    features : ndarray of shape (n_cases, n_features)
    method : {"tsne", "pca"}, default="tsne"
    seed : int, default=0

    Returns
    -------
    ndarray of shape (n_cases, 2)
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    if method not in ("tsne", "pca"):
        raise InputError(f"The 'method' parameter of embed_2d must be 'tsne' or 'pca'. Got {method!r} instead.")
    X = np.asarray(features, dtype=np.float64)
    if X.ndim != 2 or len(X) < 3:
        raise InputError(f"The embedding needs at least 3 cases in a 2D table; got shape {X.shape}.")
    X = StandardScaler().fit_transform(np.nan_to_num(X))
    if method == "pca" or X.shape[1] < 2:
        out = PCA(n_components=min(2, X.shape[1]), random_state=seed).fit_transform(X)
        return out if out.shape[1] == 2 else np.column_stack([out, np.zeros(len(out))])
    perplexity = float(min(30.0, max(2.0, (len(X) - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(X)


def save_embedding(features: pd.DataFrame, labels: pd.Series, path: str | os.PathLike[str], *,
                   method: str = "tsne", seed: int = 0, title: str | None = None,
                   class_names: Sequence[str] = ("negative", "positive"), seen: pd.Series | None = None,
                   dpi: int = 120) -> tuple[Path, Path]:
    """Scatter of the 2D embedding of deep features coloured by label (seed 000, figure 4).

    Parameters
    ----------
    features : DataFrame of shape (n_cases, n_features)
        Indexed by case id.
    labels : Series
        0/1 label by case id (cases without a label are left out).
    path : path-like
        The PNG; the coordinates go to the same name with ``.csv``.
    method : {"tsne", "pca"}, default="tsne"
    seed : int, default=0
    title : str, optional
    class_names : (str, str)
        Legend of labels 0 and 1.
    seen : Series of bool, optional
        By case id: the case was among the network's training cases (drawn hollow; the
        others, never seen by the network, filled).
    dpi : int, default=120

    Returns
    -------
    (Path, Path)
        The PNG and the CSV (``case_id, x, y, label``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    lab = labels.dropna()
    common = [c for c in features.index if c in lab.index]
    if len(common) < 3:
        raise InputError(f"The embedding needs at least 3 labelled cases with features; {len(common)} found.")
    xy = embed_2d(features.loc[common].to_numpy(), method=method, seed=seed)
    y = lab.loc[common].astype(int).to_numpy()
    coords = pd.DataFrame({"case_id": common, "x": xy[:, 0], "y": xy[:, 1], "label": y})
    was_seen = (seen.reindex(common).fillna(False).astype(bool).to_numpy() if seen is not None
                else np.zeros(len(common), bool))
    if seen is not None:
        coords["seen_in_training"] = was_seen
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    for value, colour in ((0, "#1f77b4"), (1, "#d62728")):
        for hollow in ((False, True) if seen is not None else (False,)):
            sel = (y == value) & (was_seen == hollow)
            if not sel.any():
                continue
            what = "" if seen is None else (", training" if hollow else ", unseen")
            ax.scatter(xy[sel, 0], xy[sel, 1], s=12 if hollow else 10, alpha=0.7,
                       facecolors="none" if hollow else colour, edgecolors=colour if hollow else "none",
                       linewidths=0.6, label=f"{class_names[value]}{what} (n={int(sel.sum())})")
    ax.set_xlabel(f"{'t-SNE' if method == 'tsne' else 'PC'} 1")
    ax.set_ylabel(f"{'t-SNE' if method == 'tsne' else 'PC'} 2")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(title or f"Deep features ({features.shape[1]}-d), {'t-SNE' if method == 'tsne' else 'PCA'}",
                 fontsize=10)
    fig.tight_layout()
    png = _save_figure(fig, path, dpi)
    csv = write_csv_atomic(coords, Path(path).with_suffix(".csv"))
    return png, csv
