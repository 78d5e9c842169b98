"""Decision-curve figure (net benefit against threshold probability, with treat-all and treat-none)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from her2dlr.report.figures._base import new_figure, short_label

__all__ = ["plot_decision_curves"]

_REFERENCE_STYLES = {"treat all": {"color": "0.35", "ls": "--", "lw": 1.0},
                     "treat none": {"color": "0.1", "ls": ":", "lw": 1.0}}


def plot_decision_curves(curves: pd.DataFrame, colors: Mapping[str, str], *, title: str = "",
                         reference: str | None = None, max_threshold: float | None = None) -> Figure:
    """Net benefit of every model and of the treat-all / treat-none strategies.

    Parameters
    ----------
    curves : DataFrame
        Long table ``model, threshold, net_benefit`` (:func:`her2dlr.evaluate.decision.decision_curve`).
    colors : mapping model -> colour
    max_threshold : float, optional
        Right end of the threshold axis (default: the largest threshold in ``curves``).
    """
    fig = new_figure(5.6, 4.3 + 0.09 * curves["model"].nunique())
    ax = fig.add_subplot()
    models = list(dict.fromkeys(curves["model"]))
    top = 0.0
    for m in models:
        part = curves[curves["model"] == m].sort_values("threshold")
        key = str(m).lower()
        style = _REFERENCE_STYLES.get(key)
        if style is None:
            style = {"color": colors.get(m, "k"), "ls": "-", "lw": 2.0 if m == reference else 1.2}
        ax.plot(part["threshold"], part["net_benefit"], label=short_label(m, 40) if style.get("ls") == "-" else key,
                **style)
        top = max(top, float(np.nanmax(part["net_benefit"])) if len(part) else 0.0)
    prevalence_nb = curves.loc[curves["model"].str.lower() == "treat all", "net_benefit"]
    top = max(top, float(prevalence_nb.max()) if len(prevalence_nb) else 0.0)
    ax.set_ylim(-0.05 * max(top, 0.1), max(top, 0.05) * 1.08)
    ax.set_xlim(float(curves["threshold"].min()), max_threshold or float(curves["threshold"].max()))
    ax.axhline(0, color="0.8", lw=0.6)
    ax.set_xlabel("Threshold probability")
    ax.set_ylabel("Net benefit")
    ax.grid(alpha=0.25, lw=0.5)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    return fig
