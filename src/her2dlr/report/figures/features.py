"""Feature figures: selection funnel, selection frequency, univariable importance, correlation heatmap."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from her2dlr.report.figures._base import grid_shape, new_figure, short_label

__all__ = ["plot_correlation", "plot_frequency", "plot_funnel", "plot_importance", "step_order"]


def plot_funnel(summary: pd.DataFrame, colors: Mapping[str, str] | None = None, *, max_cols: int = 3) -> Figure:
    """Features left after each selection step, one panel per model (bars: median over folds; lines: min-max).

    Parameters
    ----------
    summary : DataFrame
        Columns ``model, order, step, median, min, max`` (``order``: position of the step; the
        first row of a model is the input count, step ``"input"``).
    colors : mapping model -> colour, optional
    """
    colors = colors or {}
    models = list(dict.fromkeys(summary["model"]))
    rows, cols = grid_shape(len(models), max_cols)
    longest = int(summary.groupby("model").size().max())
    fig = new_figure(2.7 * cols + 0.6, (0.5 + 0.2 * longest) * rows + 0.2)
    axes = fig.subplots(rows, cols, squeeze=False)
    top = float(summary["max"].max()) * 3
    for ax, model in zip(axes.flat, models):
        part = summary[summary["model"] == model].sort_values("order")
        y = np.arange(len(part))[::-1]
        c = colors.get(model, "#4c72b0")
        ax.barh(y, part["median"], color=c, alpha=0.8, height=0.65)
        ax.hlines(y, part["min"], part["max"], color="0.25", lw=0.9)
        for yy, v in zip(y, part["median"]):
            ax.text(v * 1.15, yy, f"{v:g}", va="center", fontsize=6.5)
        ax.set_xscale("log")
        ax.set_xlim(0.8, top)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_yticks(y, [short_label(s, 26) for s in part["step"]], fontsize=6.8)
        ax.set_title(short_label(model, 34), fontsize=8)
        ax.grid(axis="x", alpha=0.25, lw=0.5)
    for ax in axes.flat[len(models):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Features kept (log)")
    return fig


def step_order(summary: pd.DataFrame) -> list[str]:
    """Every step name of a funnel summary, in the order the models run them (``input`` first)."""
    out: list[str] = []
    for _, part in summary.groupby("model", sort=False):
        for st in part.sort_values("order")["step"]:
            if st not in out:
                out.append(str(st))
    return out


def plot_frequency(freq: pd.DataFrame, *, top: int = 25, title: str = "") -> Figure:
    """Horizontal bars of how often each feature reached the model over the outer folds.

    Parameters
    ----------
    freq : DataFrame
        Columns ``feature, frequency`` (0-1).
    """
    freq = freq.sort_values("frequency", ascending=False).head(top)
    fig = new_figure(6.2, 0.6 + 0.2 * len(freq))
    ax = fig.add_subplot()
    y = np.arange(len(freq))[::-1]
    ax.barh(y, freq["frequency"], color="#4c72b0", height=0.7)
    ax.set_yticks(y, [short_label(f, 56) for f in freq["feature"]], fontsize=6.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Selection frequency over outer folds")
    if title:
        ax.set_title(title)
    ax.grid(axis="x", alpha=0.25, lw=0.5)
    return fig


def plot_importance(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Univariable AUC (95% CI) of each kept feature, sorted by distance from 0.5.

    Parameters
    ----------
    table : DataFrame
        Columns ``feature, auc, ci_low, ci_high``.
    """
    t = table.assign(dist=(table["auc"] - 0.5).abs()).sort_values("dist", ascending=False)
    fig = new_figure(6.2, 0.6 + 0.2 * len(t))
    ax = fig.add_subplot()
    y = np.arange(len(t))[::-1]
    err = np.vstack([np.clip(t["auc"] - t["ci_low"], 0, None), np.clip(t["ci_high"] - t["auc"], 0, None)])
    colors = np.where(t["auc"] >= 0.5, "#d6604d", "#4393c3")
    ax.errorbar(t["auc"], y, xerr=err, fmt="none", ecolor="0.5", lw=0.9, capsize=1.5)
    ax.scatter(t["auc"], y, c=colors, s=16, zorder=3)
    ax.axvline(0.5, color="0.6", ls="--", lw=0.8)
    ax.set_yticks(y, [short_label(f, 56) for f in t["feature"]], fontsize=6.8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("Univariable AUC (95% CI)")
    if title:
        ax.set_title(title)
    ax.grid(axis="x", alpha=0.25, lw=0.5)
    return fig


def plot_correlation(corr: pd.DataFrame, *, title: str = "") -> Figure:
    """Heatmap of a feature correlation matrix (-1 blue to +1 red), names on both axes.

    Parameters
    ----------
    corr : DataFrame of shape (n_features, n_features)
    """
    n = len(corr)
    side = min(7.0, 2.2 + 0.2 * n)
    fig = new_figure(side + 1.6, side + 0.8)
    ax = fig.add_subplot()
    im = ax.imshow(corr.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    names = [short_label(c, 34) for c in corr.columns]
    fs = 7 if n <= 20 else 5.5
    ax.set_xticks(range(n), names, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), names, fontsize=fs)
    if n <= 14:
        for i in range(n):
            for j in range(n):
                v = corr.iat[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if abs(v) > 0.6 else "black")
    for side_ in ax.spines.values():
        side_.set_visible(False)
    fig.colorbar(im, ax=ax, shrink=0.7, label="Pearson correlation")
    if title:
        ax.set_title(title)
    return fig
