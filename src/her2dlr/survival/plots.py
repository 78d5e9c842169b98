"""Figures: Kaplan-Meier with CI bands and number-at-risk table, forest plot, love plot.

Built on ``matplotlib.figure.Figure`` directly (no pyplot, no global backend change), so they
work in scripts, servers and threads. Saved with :func:`save_figure`, which writes atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

from her2dlr.io.atomic import atomic_path
from her2dlr.survival.results import format_p

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from her2dlr.survival.cox import CoxResult
    from her2dlr.survival.km import KaplanMeierResult
    from her2dlr.survival.matching import MatchResult
    from her2dlr.survival.treatment import TreatmentBenefitResult

__all__ = [
    "group_colors",
    "plot_balance",
    "plot_forest",
    "plot_km",
    "plot_km_pair",
    "plot_treatment_benefit",
    "save_figure",
]

_RISK_COLORS = {"low": "#1a9850", "moderate": "#f08c00", "high": "#d73027"}
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def group_colors(groups: Sequence[Any]) -> dict[Any, str]:
    """Colour per group: green/orange/red for low/moderate/high risk, else a fixed palette."""
    if all(str(g) in _RISK_COLORS for g in groups):
        return {g: _RISK_COLORS[str(g)] for g in groups}
    return {g: _TAB10[i % len(_TAB10)] for i, g in enumerate(groups)}


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save ``fig`` atomically; the format follows the file suffix (``.png``, ``.pdf``, ``.svg``)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _ticks(tmax: float, n: int = 6) -> np.ndarray:
    ticks = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(0, tmax)
    return ticks[(ticks >= 0) & (ticks <= tmax * 1.0001)]


def _km_axes(fig: Figure, slot: Any, n_groups: int, at_risk: bool) -> tuple[Axes, Axes | None]:
    if not at_risk:
        return fig.add_subplot(slot), None
    sub = slot.subgridspec(2, 1, height_ratios=[4.0, 0.35 + 0.26 * n_groups], hspace=0.02)
    ax = fig.add_subplot(sub[0])
    return ax, fig.add_subplot(sub[1], sharex=ax)


def _draw_km(
    result: KaplanMeierResult,
    ax: Axes,
    risk_ax: Axes | None,
    *,
    time_scale: float,
    time_label: str | None,
    ci: bool,
    show_p: bool,
    censor_marks: bool,
    title: str | None,
    legend_title: str | None,
    label_fmt: str,
    xmax: float | None = None,
) -> None:
    groups = result.groups
    colors = group_colors(groups)
    tmax = xmax if xmax is not None else max(float(d.max()) for d in result.durations.values() if len(d)) / time_scale
    for g in groups:
        kmf = result.fitters[g]
        sf = kmf.survival_function_.iloc[:, 0]
        x = sf.index.to_numpy(dtype=float) / time_scale
        y = sf.to_numpy()
        n, ev = len(result.durations[g]), int(result.events[g].sum())
        label = label_fmt.format(group=g, n=n, events=ev) if result.group_col else f"all (n={n}, events={ev})"
        ax.step(x, y, where="post", color=colors[g], lw=1.8, label=label)
        if ci:
            band = kmf.confidence_interval_survival_function_
            ax.fill_between(x, band.iloc[:, 0].to_numpy(), band.iloc[:, 1].to_numpy(), step="post",
                            color=colors[g], alpha=0.15, lw=0)
        if censor_marks:
            d, e = result.durations[g], result.events[g]
            ct = np.unique(d[~e])
            if len(ct):
                pos = np.searchsorted(sf.index.to_numpy(dtype=float), ct, side="right") - 1
                ax.plot(ct / time_scale, y[np.clip(pos, 0, None)], ls="none", marker="|", ms=6, mew=1.0,
                        color=colors[g], alpha=0.8)
    ax.set_ylim(-0.02, 1.04)
    ax.set_xlim(0, tmax * 1.02)
    ticks = _ticks(tmax)
    ax.set_xticks(ticks)
    ax.set_ylabel("Survival probability")
    ax.grid(alpha=0.25, lw=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower left", frameon=True, framealpha=0.85, edgecolor="0.85", fontsize=8.5,
              title=legend_title, title_fontsize=8.5)
    if title:
        ax.set_title(title, fontsize=10.5)
    if show_p and (result.logrank is not None or result.trend is not None):
        lines = []
        if result.logrank is not None:
            lines.append(f"log-rank {format_p(result.logrank.p_value)}")
        if result.trend is not None:
            lines.append(f"trend {format_p(result.trend.p_value)}")
        ax.text(0.97, 0.97, "\n".join(lines), transform=ax.transAxes, fontsize=9, va="top", ha="right",
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "0.8", "alpha": 0.9})
    ax.set_xlabel(time_label or result.time_col)
    if risk_ax is None:
        return
    # Number-at-risk table: one row per group, numbers under the x ticks, group names as
    # coloured y tick labels pushed left of the first column.
    table = result.at_risk_table(ticks * time_scale)
    n_g = len(groups)
    ypos = np.arange(n_g)[::-1]
    for yv, g in zip(ypos, groups):
        for x, v in zip(ticks, table.loc[g].to_numpy()):
            risk_ax.text(x, yv, f"{int(v)}", ha="center", va="center", fontsize=8, color=colors[g])
    risk_ax.set_ylim(-0.6, n_g - 0.4)
    risk_ax.set_yticks(ypos)
    risk_ax.set_yticklabels([str(g) if result.group_col else "all" for g in groups], fontsize=8)
    for label, g in zip(risk_ax.get_yticklabels(), groups):
        label.set_color(colors[g])
    risk_ax.tick_params(axis="y", length=0, pad=16)
    risk_ax.tick_params(axis="x", length=0, labelbottom=False)
    for side in ("top", "right", "left", "bottom"):
        risk_ax.spines[side].set_visible(False)
    risk_ax.set_title("Number at risk", fontsize=8.5, loc="left", pad=2)


def plot_km(
    result: KaplanMeierResult,
    *,
    title: str | None = None,
    time_scale: float = 1.0,
    time_label: str | None = None,
    at_risk: bool = True,
    ci: bool = True,
    show_p: bool = True,
    censor_marks: bool = True,
    legend_title: str | None = None,
    label_fmt: str = "{group} (n={n}, events={events})",
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Kaplan-Meier curves with 95% CI bands, censoring marks, log-rank p and an at-risk table.

    Parameters
    ----------
    result : KaplanMeierResult
    title : str, optional
    time_scale : float
        Divide times by this for display (e.g. 365.25 for days shown as years).
    time_label : str, optional
        x-axis label (default: the time column).
    at_risk : bool
        Add the number-at-risk table under the plot, at the x ticks.
    ci, show_p, censor_marks : bool
    legend_title : str, optional
    label_fmt : str
        Legend entry; ``{group}``, ``{n}`` and ``{events}`` are filled in.
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_g = len(result.groups)
    fig = Figure(figsize=figsize or (7.0, 5.2 + 0.25 * n_g), layout="constrained")
    gs = fig.add_gridspec(1, 1)
    ax, risk_ax = _km_axes(fig, gs[0], n_g, at_risk)
    _draw_km(result, ax, risk_ax, time_scale=time_scale, time_label=time_label, ci=ci, show_p=show_p,
             censor_marks=censor_marks, title=title, legend_title=legend_title or result.group_col, label_fmt=label_fmt)
    return fig


def plot_km_pair(
    left: KaplanMeierResult,
    right: KaplanMeierResult,
    *,
    titles: tuple[str, str] = ("", ""),
    time_scale: float = 1.0,
    time_label: str | None = None,
    suptitle: str | None = None,
) -> Figure:
    """Two Kaplan-Meier panels side by side (e.g. true vs predicted HER2-low status)."""
    n_g = max(len(left.groups), len(right.groups))
    fig = Figure(figsize=(12.0, 5.4 + 0.25 * n_g), layout="constrained")
    gs = fig.add_gridspec(1, 2, wspace=0.08)
    for slot, res, title in ((gs[0], left, titles[0]), (gs[1], right, titles[1])):
        ax, risk_ax = _km_axes(fig, slot, len(res.groups), True)
        _draw_km(res, ax, risk_ax, time_scale=time_scale, time_label=time_label, ci=True, show_p=True,
                 censor_marks=True, title=title, legend_title=None, label_fmt="{group} (n={n}, events={events})")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def plot_forest(
    result: CoxResult,
    *,
    title: str | None = None,
    show_reference: bool = True,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Forest plot of a Cox model: HR and CI per covariate on a log axis, with the numbers.

    Categorical covariates show their reference level as a row marked "reference".
    """
    s = result.summary
    rows: list[dict[str, Any]] = []
    for term, cols in result.design.terms.items():
        if term in result.design.levels:
            levels = result.design.levels[term]
            if show_reference:
                rows.append({"label": f"{term}: {levels[0]}", "ref": True})
            for level, col in zip(levels[1:], cols):
                r = s.loc[col]
                rows.append({"label": f"{term}: {level}", "ref": False, **r.to_dict()})
        else:
            rows.append({"label": term, "ref": False, **s.loc[cols[0]].to_dict()})
    n = len(rows)
    width, height = figsize or (9.5, 1.5 + 0.34 * n)
    fig = Figure(figsize=(width, height))
    bottom, top = 0.6 / height, 1 - 0.85 / height  # inches kept for the x axis and the title/header
    ax = fig.add_axes((0.27, bottom, 0.38, top - bottom))
    y = np.arange(n)[::-1]
    finite = [r for r in rows if not r["ref"]]
    lows = [r["hr_lower"] for r in finite if np.isfinite(r["hr_lower"]) and r["hr_lower"] > 0]
    highs = [r["hr_upper"] for r in finite if np.isfinite(r["hr_upper"])]
    lo = min([*lows, 1.0]) / 1.25
    hi = max([*highs, 1.0]) * 1.25
    for yi, r in zip(y, rows):
        ax.text(-0.03, yi, r["label"], transform=ax.get_yaxis_transform(), ha="right", va="center", fontsize=9)
        if r["ref"]:
            ax.text(1.04, yi, "reference", transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8.5,
                    color="0.45")
            continue
        sig = r["p"] < result.alpha
        color = "#b2182b" if sig and r["hr"] > 1 else ("#2166ac" if sig else "0.35")
        ax.plot([r["hr_lower"], r["hr_upper"]], [yi, yi], color=color, lw=1.6)
        ax.plot([r["hr"]], [yi], marker="s", ms=6, color=color)
        nd = 3 if r["hr_upper"] - r["hr_lower"] < 0.05 else 2
        ax.text(1.04, yi, f"{r['hr']:.{nd}f} ({r['hr_lower']:.{nd}f}-{r['hr_upper']:.{nd}f})",
                transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8.5)
        ax.text(1.52, yi, format_p(r["p"]).replace("p = ", "").replace("p ", ""),
                transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=8.5)
    ax.axvline(1.0, color="0.5", ls="--", lw=0.9)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks([])
    ax.spines[["top", "right", "left"]].set_visible(False)
    ax.set_xlabel("Hazard ratio (log scale)")
    level = round(100 * (1 - result.alpha))
    ax.text(1.04, n - 0.25, f"HR ({level}% CI)", transform=ax.get_yaxis_transform(), ha="left", va="bottom",
            fontsize=9, fontweight="bold")
    ax.text(1.52, n - 0.25, "p", transform=ax.get_yaxis_transform(), ha="left", va="bottom", fontsize=9,
            fontweight="bold")
    candidates = np.array([0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100])
    ax.xaxis.set_major_locator(FixedLocator(candidates[(candidates >= lo) & (candidates <= hi)]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    head = title or f"Cox model: {result.n} cases, {result.n_events} events, AIC {result.aic:.1f}, C-index {result.concordance:.3f}"
    fig.text(0.02, 1 - 0.2 / height, head, fontsize=10.5, ha="left", va="top")
    return fig


def plot_balance(result: MatchResult, *, threshold: float = 0.1, title: str | None = None) -> Figure:
    """Love plot: |standardised mean difference| of each covariate before and after matching."""
    b = result.balance
    n = len(b)
    fig = Figure(figsize=(7.0, 1.3 + 0.32 * n), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    ax.scatter(b["smd_before"].abs(), y, facecolors="none", edgecolors="#d73027", s=36, label="before matching")
    ax.scatter(b["smd_after"].abs(), y, color="#4575b4", s=30, label="after matching")
    for yi, (bef, aft) in zip(y, zip(b["smd_before"].abs(), b["smd_after"].abs())):
        ax.plot([bef, aft], [yi, yi], color="0.8", lw=0.8, zorder=0)
    ax.axvline(threshold, color="0.4", ls="--", lw=0.9)
    ax.set_yticks(y)
    ax.set_yticklabels(list(b.index), fontsize=8.5)
    ax.set_xlabel("|standardised mean difference|")
    ax.set_xlim(0, max(float(np.nanmax(b[["smd_before", "smd_after"]].abs().to_numpy())) * 1.1, threshold * 1.5))
    ax.grid(axis="x", alpha=0.25)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="lower right", frameon=True, fontsize=8.5)
    ax.set_title(
        title or f"Balance of '{result.treatment}' ({result.treated_value} vs {result.control_value}): "
        f"{result.n_treated_matched} matched sets", fontsize=10,
    )
    return fig


def plot_treatment_benefit(
    result: TreatmentBenefitResult,
    *,
    time_scale: float = 1.0,
    time_label: str | None = None,
    group_title: str = "{group}",
    ncols: int | None = None,
) -> Figure:
    """Kaplan-Meier curves by treatment arm, one panel per group, with HR and at-risk tables."""
    groups = list(result.groups.values())
    # one time axis for all panels, so curves can be compared across groups
    longest = max((float(d.max()) for g in groups if g.km is not None for d in g.km.durations.values() if len(d)), default=0.0)
    xmax = longest / time_scale if longest > 0 else None
    short = {"matched Cox (robust SE)": "matched HR", "adjusted Cox": "adjusted HR", "Cox": "HR"}
    ncols = ncols or min(3, len(groups))
    nrows = int(np.ceil(len(groups) / ncols))
    n_arms = len(result.arms)
    fig = Figure(figsize=(5.2 * ncols, (5.0 + 0.25 * n_arms) * nrows), layout="constrained")
    gs = fig.add_gridspec(nrows, ncols, wspace=0.06, hspace=0.08)
    for i, g in enumerate(groups):
        slot = gs[i // ncols, i % ncols]
        head = group_title.format(group=g.group) + f" (n={g.n})"
        if g.km is None:
            ax = fig.add_subplot(slot)
            ax.axis("off")
            ax.set_title(head, fontsize=10.5)
            ax.text(0.5, 0.5, "not assessed:\n" + g.reason, ha="center", va="center", wrap=True, fontsize=9,
                    transform=ax.transAxes)
            continue
        lines = [head]
        for r in g.rows:
            if "hr" in r and np.isfinite(r.get("hr", np.nan)):
                lines.append(f"{short.get(r.get('estimate', ''), 'HR')} {r['hr']:.2f} ({r['hr_lower']:.2f}-{r['hr_upper']:.2f}), "
                             f"{format_p(r['p'])}"
                             + (f" [{r['arm']}]" if n_arms > 2 else ""))
        ax, risk_ax = _km_axes(fig, slot, len(g.km.groups), True)
        _draw_km(g.km, ax, risk_ax, time_scale=time_scale, time_label=time_label, ci=True, show_p=True,
                 censor_marks=True, title="\n".join(lines), legend_title=result.treatment_name or result.treatment,
                 label_fmt="{group} (n={n}, events={events})", xmax=xmax)
    return fig
