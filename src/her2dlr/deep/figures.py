"""Figures of the deep stage: heat overlays, the TP / FP / FN / TN montage, the feature embedding.

Every figure is written atomically and can be redrawn from files in the run folder (the
embedding's 2D coordinates are saved beside it as CSV). matplotlib runs on the ``Agg``
backend; single-case overlays are composed as arrays and written with Pillow (fast enough
for every case of a cohort). The picture helpers (:func:`to_uint8`, :func:`overlay_rgb`,
:func:`draw_box`, :func:`draw_outline`, :func:`save_png`) live in
:mod:`her2dlr.imaging.figures`, shared with the segmentation figures, and are re-exported here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.imaging.figures import draw_box, draw_outline, overlay_rgb, save_png, to_uint8
from her2dlr.imaging.figures import save_figure as _save_figure
from her2dlr.io.atomic import write_csv_atomic

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
                 suptitle: str | None = None, dpi: int = 110, colour_bar: bool = False) -> Path:
    """A grid PNG: one row per group (TP, FP, FN, TN), pictures with their titles.

    Parameters
    ----------
    cells : sequence of MontageCell
    path : path-like
    n_columns : int, optional
        Pictures per row (default: the largest group).
    suptitle : str, optional
    dpi : int, default=110
    colour_bar : bool, default=False
        Add the heat overlay's colour bar (:func:`overlay_rgb` with its defaults, blended over
        mid-grey as the overlay blends over the image) under the grid.

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
    bar_in = 0.8 if colour_bar else 0.0  # inches under the grid for the colour bar and its label
    height = 2.6 * len(groups) + bar_in
    fig, axes = plt.subplots(len(groups), width, figsize=(2.3 * width, height), squeeze=False)
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
    fig.tight_layout(rect=(0, bar_in / height, 1, 1))
    if colour_bar:
        from her2dlr.imaging.figures import HEAT_BAR_LABEL

        bar = fig.add_axes((0.2, 0.45 * bar_in / height, 0.6, 0.2 * bar_in / height))
        ramp = np.tile(np.linspace(0.0, 1.0, 256), (8, 1))
        bar.imshow(overlay_rgb(np.full(ramp.shape, 128, np.uint8), ramp), aspect="auto", extent=(0, 1, 0, 1))
        bar.set_yticks([])
        bar.set_xticks([0, 0.25, 0.5, 0.75, 1])
        bar.tick_params(labelsize=7)
        bar.set_xlabel(HEAT_BAR_LABEL, fontsize=7)
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
