"""Figures of multi-class models: one-vs-rest ROC curves per model, confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from her2dlr.report.figures._base import grid_shape, new_figure, short_label

__all__ = ["CLASS_COLORS", "plot_confusion_tables", "plot_ovr_roc"]

#: One colour per class, in class order (colour-blind safe, Okabe-Ito).
CLASS_COLORS = ("#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7", "#56B4E9")


def plot_ovr_roc(curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray, str]]]) -> Figure:
    """One panel per model, one ROC curve per class (that class against the others).

    Parameters
    ----------
    curves : mapping model -> list of (fpr, tpr, legend text), one per class in class order
    """
    rows, cols = grid_shape(len(curves))
    fig = new_figure(3.6 * cols, 3.7 * rows + 0.4)
    for i, (model, per_class) in enumerate(curves.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6")
        for k, (fpr, tpr, text) in enumerate(per_class):
            ax.step(fpr, tpr, where="post", lw=1.5, color=CLASS_COLORS[k % len(CLASS_COLORS)], label=text)
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_title(short_label(model), fontsize=9)
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("Sensitivity")
        ax.grid(alpha=0.25, lw=0.5)
        ax.legend(loc="lower right", fontsize=7, frameon=False, title="one-vs-rest AUC", title_fontsize=7)
    return fig


def plot_confusion_tables(matrices: Mapping[str, pd.DataFrame]) -> Figure:
    """Confusion matrices (rows: true class, columns: predicted class), counts and row percentages."""
    rows, cols = grid_shape(len(matrices))
    k = max(len(m) for m in matrices.values())
    size = 1.0 + 0.75 * k
    fig = new_figure(size * cols + 0.6, size * rows + 0.4)
    for i, (model, m) in enumerate(matrices.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        counts = m.to_numpy(dtype=float)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (r, c), n in np.ndenumerate(counts):
            ax.text(c, r, f"{int(n)}\n{share[r, c]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if share[r, c] > 0.6 else "black")
        ax.set_xticks(range(m.shape[1]), [short_label(str(c), 16) for c in m.columns], fontsize=7, rotation=30)
        ax.set_yticks(range(m.shape[0]), [short_label(str(c), 16) for c in m.index], fontsize=7)
        ax.set_xlabel("Predicted (most probable)", fontsize=8)
        ax.set_ylabel("True", fontsize=8)
        ax.set_title(short_label(model), fontsize=9)
    return fig
