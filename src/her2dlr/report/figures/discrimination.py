"""Discrimination figures: ROC curves, prediction histograms, per-case waterfall, confusion matrices, AUC forest.

Every function takes numbers already computed (curves, counts, intervals) and only draws.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from her2dlr.report.figures._base import NEG_COLOR, POS_COLOR, grid_shape, new_figure, short_label

__all__ = ["plot_auc_forest", "plot_confusion_matrices", "plot_prediction_histograms", "plot_roc", "plot_waterfall"]


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], labels: Mapping[str, str],
             colors: Mapping[str, str], *, title: str = "", reference: str | None = None) -> Figure:
    """ROC curves of several models on one set, legend entries ``labels[model]``.

    Parameters
    ----------
    curves : mapping model -> (fpr, tpr)
        Each an array of shape (n_points,), in the order :func:`sklearn.metrics.roc_curve` gives.
    labels : mapping model -> str
        Legend text, e.g. ``"lr: 0.85 (0.80-0.90)"``.
    colors : mapping model -> colour
    title : str
    reference : str, optional
        Model drawn with a thicker line.
    """
    fig = new_figure(5.4, 4.4 + 0.16 * max(0, len(curves) - 6))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.6", label="chance")
    for model, (fpr, tpr) in curves.items():
        ax.step(fpr, tpr, where="post", color=colors.get(model, "k"), lw=2.2 if model == reference else 1.3,
                label=labels.get(model, model), zorder=3 if model == reference else 2)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("Sensitivity (true positive rate)")
    ax.grid(alpha=0.25, lw=0.5)
    if title:
        ax.set_title(title)
    if len(curves) > 3:  # many models: the legend goes under the axes so no curve is hidden
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False, title="AUC (95% CI)",
                  title_fontsize=7.5, fontsize=7)
    else:
        ax.legend(loc="lower right", frameon=True, framealpha=0.9, edgecolor="0.85", title="AUC (95% CI)",
                  title_fontsize=7.5)
    return fig


def plot_prediction_histograms(data: Mapping[str, tuple[np.ndarray, np.ndarray, float]], *, bins: int = 20,
                               max_cols: int = 3) -> Figure:
    """Histogram of predicted probabilities by true class, one panel per model.

    Parameters
    ----------
    data : mapping model -> (y, prob, threshold)
        ``y`` and ``prob`` of shape (n_cases,); the threshold is drawn as a dashed line (NaN: none).
    """
    rows, cols = grid_shape(len(data), max_cols)
    fig = new_figure(2.55 * cols, 2.05 * rows + 0.3)
    edges = np.linspace(0, 1, bins + 1)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (model, (y, p, thr)) in zip(axes.flat, data.items()):
        ax.hist(p[y == 0], bins=edges, color=NEG_COLOR, alpha=0.65, histtype="stepfilled", lw=0)
        ax.hist(p[y == 1], bins=edges, color=POS_COLOR, alpha=0.65, histtype="stepfilled", lw=0)
        if np.isfinite(thr):
            ax.axvline(thr, color="k", ls="--", lw=0.9)
        ax.set_title(short_label(model, 34), fontsize=8)
        ax.set_xlim(0, 1)
    for ax in axes.flat[len(data):]:
        ax.set_visible(False)
    for ax in axes.flat[max(0, len(data) - cols):len(data)]:
        ax.set_xlabel("Predicted probability")
    for ax in axes[:, 0]:
        ax.set_ylabel("Cases")
    fig.legend(handles=[Patch(color=NEG_COLOR, alpha=0.65, label="true negative class"),
                        Patch(color=POS_COLOR, alpha=0.65, label="true positive class")],
               loc="outside lower center", ncol=2, frameon=False)
    return fig


def plot_waterfall(data: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, max_cols: int = 2) -> Figure:
    """Per-case bars of ``prob - threshold`` sorted by value, coloured by true class, one panel per model.

    Parameters
    ----------
    data : mapping model -> (y, prob, threshold)
        Arrays of shape (n_cases,); ``threshold`` per case (folds may differ).
    """
    rows, cols = grid_shape(len(data), max_cols)
    fig = new_figure(3.6 * cols, 1.9 * rows + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (model, (y, p, thr)) in zip(axes.flat, data.items()):
        score = p - thr
        order = np.argsort(score)[::-1]
        x = np.arange(len(order), dtype=float)
        h = score[order]
        # one collection of rectangles instead of one patch per case (thousands of cases draw fast)
        verts = np.stack([np.column_stack([x - 0.5, np.zeros_like(h)]), np.column_stack([x - 0.5, h]),
                          np.column_stack([x + 0.5, h]), np.column_stack([x + 0.5, np.zeros_like(h)])], axis=1)
        ax.add_collection(PolyCollection(verts, facecolors=np.where(y[order] == 1, POS_COLOR, NEG_COLOR),
                                         edgecolors="none", linewidths=0))
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xlim(-0.5, len(order) - 0.5)
        lim = max(0.05, float(np.nanmax(np.abs(score))) * 1.05)
        ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_title(short_label(model, 48), fontsize=8)
    for ax in axes.flat[len(data):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("Probability \u2212 threshold")
    for ax in axes.flat[max(0, len(data) - cols):len(data)]:
        ax.set_xlabel("Cases, sorted by score")
    fig.legend(handles=[Patch(color=NEG_COLOR, label="true negative class"),
                        Patch(color=POS_COLOR, label="true positive class")],
               loc="outside lower center", ncol=2, frameon=False)
    return fig


def plot_confusion_matrices(counts: Mapping[str, tuple[int, int, int, int]], *, class_names: tuple[str, str] = ("negative", "positive"),
                            max_cols: int = 3) -> Figure:
    """Confusion matrices (counts and row percentages), one panel per model.

    Parameters
    ----------
    counts : mapping model -> (tn, fp, fn, tp)
    class_names : (negative, positive)
    """
    rows, cols = grid_shape(len(counts), max_cols)
    fig = new_figure(2.5 * cols, 2.45 * rows)
    names = [textwrap.fill(str(c), 12) for c in class_names]
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (model, (tn, fp, fn, tp)) in zip(axes.flat, counts.items()):
        mat = np.array([[tn, fp], [fn, tp]], dtype=float)
        share = mat / np.maximum(mat.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{int(mat[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.6 else "black")
        ax.set_xticks([0, 1], names, fontsize=7)
        ax.set_yticks([0, 1], names, fontsize=7, rotation=90, va="center")
        ax.set_xlabel("Predicted", fontsize=7.5)
        ax.set_ylabel("True", fontsize=7.5)
        ax.tick_params(length=0)
        ax.set_title(short_label(model, 30), fontsize=8)
        for side in ax.spines.values():
            side.set_visible(False)
    for ax in axes.flat[len(counts):]:
        ax.set_visible(False)
    return fig


def plot_auc_forest(table: pd.DataFrame, colors: Mapping[str, str], *, view_order: list[str] | None = None) -> Figure:
    """AUC with its 95% CI per model (rows) and evaluation set (markers).

    Parameters
    ----------
    table : DataFrame
        Columns ``model, view, auc, ci_low, ci_high``.
    colors : mapping model -> colour (used for the model names)
    view_order : list of str, optional
        Order of the ``view`` values.
    """
    views = view_order or list(dict.fromkeys(table["view"]))
    models = list(dict.fromkeys(table["model"]))
    markers = ["o", "s", "D", "^", "v"]
    fig = new_figure(6.4, 0.9 + 0.32 * len(models) * max(1, len(views)) ** 0.5)
    ax = fig.add_subplot()
    offsets = np.linspace(0.18, -0.18, len(views)) if len(views) > 1 else [0.0]
    for k, (view, off) in enumerate(zip(views, offsets)):
        part = table[table["view"] == view].set_index("model")
        for i, m in enumerate(models):
            if m not in part.index:
                continue
            r = part.loc[m]
            yv = len(models) - 1 - i + off
            err = [[max(0.0, r["auc"] - r["ci_low"])], [max(0.0, r["ci_high"] - r["auc"])]]
            ax.errorbar(r["auc"], yv, xerr=err, fmt=markers[k % len(markers)], color=colors.get(m, "0.2"), ms=4,
                        lw=1, capsize=2)
    ax.axvline(0.5, color="0.6", ls="--", lw=0.8)
    ax.set_yticks(range(len(models)), [short_label(m, 42) for m in models[::-1]])
    for label, m in zip(ax.get_yticklabels(), models[::-1]):
        label.set_color(colors.get(m, "k"))
    ax.set_xlabel("AUC (95% CI)")
    lo = float(np.nanmin(table["ci_low"])) if len(table) else 0.5
    # room right of 1.0 so a marker (or CI cap) at AUC = 1 is drawn whole, not cut in half by the frame
    ax.set_xlim(min(0.45, lo - 0.02), 1.03)
    ax.axvline(1.0, color="0.85", lw=0.6, zorder=0)
    ax.set_xticks([t for t in ax.get_xticks() if t <= 1.0 + 1e-9])
    if len(views) > 1:
        handles = [Line2D([], [], ls="none", marker=markers[k % len(markers)], color="0.3", label=v)
                   for k, v in enumerate(views)]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(views), fontsize=7,
                  frameon=False)
    ax.grid(axis="x", alpha=0.25, lw=0.5)
    return fig
