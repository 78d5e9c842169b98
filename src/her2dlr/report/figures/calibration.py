"""Calibration figures: all models on one set, and one model in detail with interval bars."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from her2dlr.report.figures._base import NEG_COLOR, POS_COLOR, new_figure, short_label

__all__ = ["plot_calibration", "plot_calibration_detail"]


def _diagonal(ax: object) -> None:
    ax.plot([0, 1], [0, 1], ls="--", lw=0.8, color="0.55", label="ideal")  # type: ignore[attr-defined]
    ax.set_xlim(0, 1)  # type: ignore[attr-defined]
    ax.set_ylim(-0.02, 1.02)  # type: ignore[attr-defined]
    ax.grid(alpha=0.25, lw=0.5)  # type: ignore[attr-defined]


def plot_calibration(curves: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], colors: Mapping[str, str], *,
                     title: str = "", reference: str | None = None) -> Figure:
    """Smoothed calibration curves (lines) and binned observed rates (markers) of several models.

    Parameters
    ----------
    curves : mapping model -> (binned, smooth)
        ``binned`` with columns ``mean_pred, obs_rate`` (:func:`her2dlr.evaluate.calibration.calibration_curve_binned`),
        ``smooth`` with columns ``pred, obs`` (:func:`her2dlr.evaluate.calibration.calibration_loess`).
    colors : mapping model -> colour
    """
    fig = new_figure(5.4, 4.4 + 0.16 * max(0, len(curves) - 6))
    ax = fig.add_subplot()
    _diagonal(ax)
    for model, (binned, smooth) in curves.items():
        c = colors.get(model, "k")
        lw = 2.0 if model == reference else 1.2
        if smooth is not None and len(smooth):
            ax.plot(smooth["pred"], smooth["obs"], color=c, lw=lw, label=short_label(model, 40))
        if binned is not None and len(binned):
            ax.plot(binned["mean_pred"], binned["obs_rate"], ls="none", marker="o", ms=3.2, color=c, alpha=0.8,
                    label=None if smooth is not None and len(smooth) else short_label(model, 40))
    ax.set_aspect("equal")
    ax.set_xlabel("Predicted probability")
    ax.set_ylabel("Observed proportion positive")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", frameon=True, framealpha=0.9, edgecolor="0.85")
    return fig


def plot_calibration_detail(binned: pd.DataFrame, smooth: pd.DataFrame | None, y: np.ndarray, p: np.ndarray, *,
                            summary: Mapping[str, float] | None = None, title: str = "", color: str = "k") -> Figure:
    """One model: binned rates with their CIs, smoothed curve, and predicted-probability histogram below.

    Parameters
    ----------
    binned : DataFrame
        Columns ``mean_pred, obs_rate, ci_low, ci_high`` (and ``n``).
    smooth : DataFrame or None
        Columns ``pred, obs``.
    y, p : arrays of shape (n_cases,)
        Labels and probabilities (for the histogram).
    summary : mapping, optional
        ``slope``, ``intercept``, ``brier``, ``hl_p`` written in the corner.
    """
    fig = new_figure(5.0, 5.2)
    gs = fig.add_gridspec(2, 1, height_ratios=[4, 1.1])
    ax = fig.add_subplot(gs[0])
    hax = fig.add_subplot(gs[1], sharex=ax)
    _diagonal(ax)
    if smooth is not None and len(smooth):
        ax.plot(smooth["pred"], smooth["obs"], color=color, lw=1.8, label="smoothed (LOESS)")
    if len(binned):
        err = np.vstack([np.clip(binned["obs_rate"] - binned["ci_low"], 0, None),
                         np.clip(binned["ci_high"] - binned["obs_rate"], 0, None)])
        ax.errorbar(binned["mean_pred"], binned["obs_rate"], yerr=err, fmt="o", ms=4, color=color, ecolor="0.45",
                    lw=0.9, capsize=2, label="binned (95% CI)")
    ax.set_ylabel("Observed proportion positive")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", frameon=True, framealpha=0.9, edgecolor="0.85")
    if summary:
        parts = []
        for key, name in (("slope", "slope"), ("intercept", "intercept"), ("brier", "Brier"), ("hl_p", "HL p")):
            v = summary.get(key)
            if v is not None and np.isfinite(v):
                parts.append(f"{name} = {v:.3f}" if key != "hl_p" else f"{name} = {v:.3g}")
        ax.text(0.97, 0.04, "\n".join(parts), transform=ax.transAxes, ha="right", va="bottom", fontsize=7.5,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8"})
    edges = np.linspace(0, 1, 41)
    hax.hist(p[y == 0], bins=edges, color=NEG_COLOR, alpha=0.65, histtype="stepfilled", lw=0)
    hax.hist(p[y == 1], bins=edges, color=POS_COLOR, alpha=0.65, histtype="stepfilled", lw=0)
    hax.set_xlabel("Predicted probability")
    hax.set_ylabel("Cases")
    hax.set_xlim(0, 1)
    ax.tick_params(labelbottom=False)
    return fig
