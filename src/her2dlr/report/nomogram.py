"""Classic nomogram of a fitted logistic model: points per variable, total points, probability.

Written by hand because no maintained Python library draws one (R's ``rms::nomogram`` is the
usual reference). The construction is the standard one:

* each variable's effect on the log-odds is ``b * x`` (numeric, over its range) or the
  coefficient of the level's dummy (categorical; the reference level has effect 0);
* the variable whose effect spans the widest range gets 0-100 points; every other variable is
  scaled by the same factor, ``points = (effect - min effect) / (widest span / 100)``;
* total points ``T`` map back to the linear predictor ``lp = b0 + sum(min effects) + T * span / 100``
  and to the probability ``1 / (1 + exp(-lp))``.

One axis per clinical variable (:func:`nomogram_from_card`): the clinical encoder turns a column
into several 0/1 inputs (``Halo=no``, ``Halo=yes``; ``Age=<missing>`` beside the imputed
``Age``), but a reader fills in one value per variable, so the inputs of one categorical column
become the levels of one axis (a level without an input of its own, a missing value included,
sits at that axis's zero effect), and a numeric column's missing-value indicator becomes a
``missing`` point of its axis (the imputed value's effect plus the indicator's). The tokens of a
multi-valued column stay separate yes/no axes: one cell can hold several.

Examples
--------
>>> nomo = nomogram_from_logistic(-3.0, {"age": 0.05, "PR=positive": 1.5},
...                               ranges={"age": [20, 80]}, levels={"PR": ["negative", "positive"]})
>>> res = nomo.predict({"age": 50, "PR": "positive"})
>>> round(res["points"]["age"], 6), round(res["points"]["PR"], 6), round(res["total_points"], 6)
(50.0, 50.0, 100.0)
>>> round(res["probability"], 4)
0.7311
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from her2dlr.errors import InputError
from her2dlr.learn.clinical import MISSING, OTHER
from her2dlr.report.figures._base import new_figure

__all__ = ["MISSING_POINT", "Nomogram", "VariableScale", "nomogram_from_card", "nomogram_from_logistic", "plot_nomogram"]

#: Ways a categorical variable's dummy may be named in the coefficients (``v`` variable, ``l`` level).
_DUMMY_NAMES = ("{v}={l}", "{v}_{l}", "{v}[T.{l}]", "{v}[{l}]", "{v}:{l}", "{v}__{l}", "{v}.{l}", "{v} {l}")
#: The point of a numeric axis for a missing value (imputed value + missing-value indicator).
MISSING_POINT = "missing"
#: Level of a categorical axis standing for every value without an input of its own (old model
#: cards do not say which levels those are).
_UNCODED = "<any other or missing>"
#: How the encoder's bracketed level names read on an axis.
_LEVEL_WORDS = {MISSING: "missing", OTHER: "other (rare)", _UNCODED: "any other / missing"}


@dataclass
class VariableScale:
    """One variable of the nomogram.

    Attributes
    ----------
    name : str
    kind : {"numeric", "categorical"}
    coef : float
        Numeric variables: the coefficient per unit.
    low, high : float
        Numeric variables: the range drawn.
    effects : dict
        Categorical variables: level -> effect on the log-odds (reference level 0).
        Numeric variables: named values off the scale (``"missing"``) -> effect.
    """

    name: str
    kind: str
    coef: float = 0.0
    low: float = 0.0
    high: float = 0.0
    effects: dict[Any, float] = field(default_factory=dict)

    def effect(self, value: Any) -> float:
        """Effect of ``value`` on the log-odds."""
        if self.kind == "numeric":
            if isinstance(value, str) and value in self.effects:
                return self.effects[value]
            if (value is None or value != value) and MISSING_POINT in self.effects:
                return self.effects[MISSING_POINT]
            return self.coef * float(value)
        for level, eff in self.effects.items():
            if value == level or str(value) == str(level):
                return eff
        raise InputError(f"Nomogram variable '{self.name}' has levels {list(self.effects)}; got {value!r}.")

    def _all_effects(self) -> list[float]:
        if self.kind == "numeric":
            return [self.coef * self.low, self.coef * self.high, *self.effects.values()]
        return list(self.effects.values())

    @property
    def min_effect(self) -> float:
        return min(self._all_effects())

    @property
    def span(self) -> float:
        return max(self._all_effects()) - min(self._all_effects())


@dataclass
class Nomogram:
    """A nomogram: points per variable value, total points to linear predictor and probability.

    Build it with :func:`nomogram_from_logistic` or :func:`nomogram_from_card`.

    Attributes
    ----------
    intercept : float
    variables : list of VariableScale
    points_per_logit : float
        100 / (widest effect span).
    """

    intercept: float
    variables: list[VariableScale]
    points_per_logit: float

    @property
    def offset(self) -> float:
        """Linear predictor at 0 total points."""
        return self.intercept + sum(v.min_effect for v in self.variables)

    @property
    def max_total_points(self) -> float:
        """Total points of the case with every variable at its highest-point value."""
        return sum(self.variable_points(v) for v in self.variables)

    def variable_points(self, var: VariableScale) -> float:
        """Largest number of points the variable can give."""
        return var.span * self.points_per_logit

    def points(self, name: str, value: Any) -> float:
        """Points of ``value`` of variable ``name``."""
        var = self._var(name)
        return (var.effect(value) - var.min_effect) * self.points_per_logit

    def linear_predictor(self, total_points: float | np.ndarray) -> float | np.ndarray:
        """Log-odds of a total number of points."""
        return self.offset + np.asarray(total_points, dtype=float) / self.points_per_logit

    def probability(self, total_points: float | np.ndarray) -> float | np.ndarray:
        """Probability of a total number of points."""
        lp = self.linear_predictor(total_points)
        return 1.0 / (1.0 + np.exp(-lp))

    def total_points_for(self, probability: float) -> float:
        """Total points giving ``probability``."""
        lp = math.log(probability / (1 - probability))
        return (lp - self.offset) * self.points_per_logit

    def predict(self, case: Mapping[str, Any]) -> dict[str, Any]:
        """Points per variable, total points, linear predictor and probability of one case.

        Parameters
        ----------
        case : mapping variable -> value
            Every variable of the nomogram.
        """
        missing = [v.name for v in self.variables if v.name not in case]
        if missing:
            raise InputError(f"Nomogram case lacks variable(s) {missing}.")
        pts = {v.name: self.points(v.name, case[v.name]) for v in self.variables}
        total = float(sum(pts.values()))
        return {"points": pts, "total_points": total, "linear_predictor": float(self.linear_predictor(total)),
                "probability": float(self.probability(total))}

    def table(self) -> pd.DataFrame:
        """Points of each tick value of each variable (``variable, value, points``)."""
        rows = []
        for v in self.variables:
            for value in _tick_values(v):
                rows.append({"variable": v.name, "value": value, "points": self.points(v.name, value)})
        return pd.DataFrame(rows)

    def _var(self, name: str) -> VariableScale:
        for v in self.variables:
            if v.name == name:
                return v
        raise InputError(f"Nomogram has no variable '{name}'; it has {[v.name for v in self.variables]}.")


def _find_dummy(coefficients: Mapping[str, Any], var: str, level: Any) -> str | None:
    for pattern in _DUMMY_NAMES:
        key = pattern.format(v=var, l=level)
        if key in coefficients:
            return key
    return None


def nomogram_from_logistic(intercept: float, coefficients: Mapping[str, Any], *,
                           ranges: Mapping[str, Sequence[float]] | None = None,
                           levels: Mapping[str, Sequence[Any]] | None = None,
                           imputed: Mapping[str, float] | None = None) -> Nomogram:
    """Build a nomogram from a fitted logistic model.

    Parameters
    ----------
    intercept : float
        ``b0`` of ``logit P(y = 1) = b0 + sum(b_j x_j)``.
    coefficients : mapping name -> float (or, for a categorical variable, level -> float)
        Numeric variables by name; categorical dummies as ``"<var>=<level>"`` (also
        ``<var>_<level>``, ``<var>[T.<level>]``, ``<var>:<level>``, ``<var>__<level>``), or
        ``{var: {level: coef}}``. Levels without a coefficient are the reference (effect 0).
    ranges : mapping name -> [min, max]
        Range drawn for each numeric variable (e.g. the training range).
    levels : mapping name -> list of levels
        Levels of each categorical variable, reference first.
    imputed : mapping name -> float, optional
        Numeric variables whose missing values were imputed with this value and flagged by the
        coefficient ``"<name>=<missing>"``: the flag becomes the axis's :data:`MISSING_POINT`
        (effect ``coef * imputed + flag coef``) instead of an axis of its own.

    Returns
    -------
    Nomogram

    Raises
    ------
    InputError
        A numeric variable without a range, a coefficient that belongs to no variable, or no
        variable with a non-zero effect.
    """
    ranges = dict(ranges or {})
    levels = dict(levels or {})
    used: set[str] = set()
    variables: list[VariableScale] = []
    for var, lvls in levels.items():
        lvls = list(lvls)
        if len(lvls) < 2:
            raise InputError(f"Nomogram: categorical variable '{var}' needs at least 2 levels, got {lvls}.")
        effects: dict[Any, float] = {}
        given = coefficients.get(var)
        if isinstance(given, Mapping):
            effects = {lvl: float(given.get(lvl, given.get(str(lvl), 0.0))) for lvl in lvls}
            used.add(var)
        else:
            for lvl in lvls:
                key = _find_dummy(coefficients, var, lvl)
                effects[lvl] = float(coefficients[key]) if key else 0.0
                if key:
                    used.add(key)
            if all(_find_dummy(coefficients, var, lvl) is None for lvl in lvls) and var in coefficients:
                if len(lvls) != 2:
                    raise InputError(f"Nomogram: '{var}' has one coefficient but {len(lvls)} levels {lvls}; "
                                     f"name its dummies '{var}=<level>'.")
                effects = {lvls[0]: 0.0, lvls[1]: float(given)}  # 0/1 coded binary variable
                used.add(var)
        variables.append(VariableScale(var, "categorical", effects=effects))
    flags = {f"{n}={MISSING}" for n in (imputed or {}) if n in coefficients and n in ranges}
    for name, coef in coefficients.items():
        if name in used or name in flags:
            continue
        if name not in ranges:
            raise InputError(f"Nomogram: coefficient '{name}' is neither a variable with a range (ranges) nor a "
                             f"dummy of a categorical variable (levels: {sorted(levels)}).")
        lo, hi = (float(x) for x in ranges[name])
        if not hi > lo:
            raise InputError(f"Nomogram: range of '{name}' must be [min, max] with max > min; got {ranges[name]}.")
        specials = {}
        flag = f"{name}={MISSING}"
        if name in (imputed or {}) and flag in coefficients:
            specials[MISSING_POINT] = float(coef) * float(imputed[name]) + float(coefficients[flag])  # type: ignore[index]
            used.add(flag)
        variables.append(VariableScale(name, "numeric", coef=float(coef), low=lo, high=hi, effects=specials))
    widest = max((v.span for v in variables), default=0.0)
    if widest <= 0:
        raise InputError("Nomogram: no variable changes the prediction (all coefficients are zero).")
    position = {name: i for i, name in enumerate(coefficients)}

    def first_key(v: VariableScale) -> int:
        if v.name in position:
            return position[v.name]
        keys = [_find_dummy(coefficients, v.name, lvl) for lvl in v.effects]
        return min((position[k] for k in keys if k), default=len(position))

    variables.sort(key=first_key)
    return Nomogram(float(intercept), variables, 100.0 / widest)


def nomogram_from_card(card: Mapping[str, Any]) -> Nomogram:
    """Nomogram from a model card's ``"logistic"`` entry, one axis per clinical variable.

    The entry is ``{"intercept": float, "coefficients": {name: float}, "ranges": {name: [min, max]},
    "levels": {name: [...]}, "variables": {column: {...}}}``
    (:func:`her2dlr.learn.integration.logistic_coefficients`). The encoded inputs of one clinical
    column are drawn as one axis (see the module docstring): ``variables`` says how each column
    was encoded; for cards without it the card's clinical input types are used, and the levels
    without an input of their own are drawn as one "any other / missing" level.
    """
    logistic = card.get("logistic") if isinstance(card, Mapping) else None
    if not isinstance(logistic, Mapping) or "intercept" not in logistic or "coefficients" not in logistic:
        raise InputError("Model card has no 'logistic' entry with 'intercept' and 'coefficients'.")
    inputs = card.get("inputs") if isinstance(card.get("inputs"), Mapping) else {}
    types = inputs.get("clinical") if isinstance(inputs.get("clinical"), Mapping) else {}
    levels, imputed = _one_axis_per_column(logistic, types)
    return nomogram_from_logistic(logistic["intercept"], logistic["coefficients"], ranges=logistic.get("ranges"),
                                  levels=levels, imputed=imputed)


def _one_axis_per_column(logistic: Mapping[str, Any], types: Mapping[str, Any]
                         ) -> tuple[dict[str, list[Any]], dict[str, float]]:
    """The card's ``levels`` with each categorical column's indicators merged into one variable, and ``imputed``."""
    coefs = logistic["coefficients"]
    ranges = logistic.get("ranges") or {}
    levels: dict[str, list[Any]] = {k: list(v) for k, v in (logistic.get("levels") or {}).items()}
    variables = logistic.get("variables") if isinstance(logistic.get("variables"), Mapping) else {}
    kinds = {**{c: str(t) for c, t in types.items()}, **{c: str(v.get("type")) for c, v in variables.items()}}
    imputed: dict[str, float] = {}
    for column, kind in kinds.items():
        prefix = f"{column}="
        members = [n for n in coefs if n.startswith(prefix) and n in levels]
        if not members or kind == "multi":  # a multi-valued cell can hold several tokens: one axis each
            continue
        info = variables.get(column, {})
        flag = f"{column}={MISSING}"
        if kind in ("numeric", "ordinal"):
            if flag not in members:
                continue
            if column not in coefs:
                levels.pop(flag)
                levels[column] = ["recorded", MISSING]
            elif column in ranges and "imputed" in info:
                levels.pop(flag)
                imputed[column] = float(info["imputed"])
            continue
        coded = [n[len(prefix):] for n in members]
        for n in members:
            levels.pop(n)
        if info:
            states = [*info.get("levels", []), info.get("reference"), OTHER if info.get("other") else None, MISSING]
            levels[column] = list(dict.fromkeys([*coded, *(x for x in states if x is not None)]))
        else:
            levels[column] = [*coded, _UNCODED]
    return levels, imputed


def _tick_values(var: VariableScale, nbins: int = 6) -> list[Any]:
    if var.kind == "categorical":
        return list(var.effects)
    return [*_numeric_ticks(var, nbins), *var.effects]


def _numeric_ticks(var: VariableScale, nbins: int) -> list[Any]:
    ticks = MaxNLocator(nbins=nbins, steps=[1, 2, 2.5, 5, 10]).tick_values(var.low, var.high)
    ticks = [float(t) for t in ticks if var.low - 1e-9 <= t <= var.high + 1e-9]
    span = var.high - var.low
    if not ticks or ticks[0] - var.low > 0.08 * span:
        ticks.insert(0, var.low)
    if ticks[-1] < var.high - 0.08 * span:
        ticks.append(var.high)
    return ticks


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _LEVEL_WORDS.get(str(value), str(value))


def _same_points(labels: Sequence[str], most: int = 3) -> str:
    """Levels that give the same points, as one tick label (``"no / missing"``; many: how many)."""
    return " / ".join(labels) if len(labels) <= most else f"{len(labels)} other levels"


def _draw_axis(ax: Any, y: float, xs: Sequence[float], labels: Sequence[str], *, fontsize: float = 7.0) -> None:
    """A horizontal axis at height ``y`` with tick marks at ``xs`` and labels above (staggered when crowded)."""
    order = np.argsort(xs)
    xs_sorted = np.asarray(xs, dtype=float)[order]
    ax.plot([xs_sorted.min(), xs_sorted.max()], [y, y], color="0.2", lw=0.9, solid_capstyle="butt")
    last_x = {0: -1.0, 1: -1.0}
    for k in order:
        x = float(xs[k])
        level = 0 if x - last_x[0] >= 0.045 else 1
        if level == 1 and x - last_x[1] < 0.045:
            level = 0
        last_x[level] = x
        ax.plot([x, x], [y, y + 0.12], color="0.2", lw=0.8)
        ax.text(x, y + 0.17 + 0.22 * level, labels[k], ha="center", va="bottom", fontsize=fontsize)


def plot_nomogram(nomo: Nomogram, *, case: Mapping[str, Any] | None = None, title: str = "",
                  probabilities: Sequence[float] = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),
                  show_linear_predictor: bool = True) -> Figure:
    """Draw the nomogram (Points, one axis per variable, Total points, Linear predictor, Probability).

    Parameters
    ----------
    nomo : Nomogram
    case : mapping, optional
        One case whose points are marked (red dots) on every axis.
    title : str
    probabilities : sequence of float
        Probability ticks (those outside the reachable range are dropped).
    show_linear_predictor : bool, default=True
    """
    total_max = max(nomo.max_total_points, 1e-9)
    rows = ["Points", *[v.name for v in nomo.variables], "Total points"]
    if show_linear_predictor:
        rows.append("Linear predictor")
    rows.append("Probability")
    fig = new_figure(7.2, 0.62 * len(rows) + 0.5, layout=None)
    ax = fig.add_axes((0.2, 0.03, 0.76, 0.9 if title else 0.95))
    ax.set_axis_off()
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.6, len(rows) - 0.2)

    def row_y(i: int) -> float:
        return len(rows) - 1 - i

    def label(i: int, text: str) -> None:
        ax.text(-0.04, row_y(i), text, ha="right", va="center", fontsize=8, fontweight="bold" if i == 0 else None)

    # Points
    label(0, "Points")
    pts = np.arange(0, 101, 10)
    _draw_axis(ax, row_y(0), pts / 100.0, [str(int(p)) for p in pts])
    for p in np.arange(0, 101, 2):
        ax.plot([p / 100, p / 100], [row_y(0), row_y(0) + 0.06], color="0.2", lw=0.5)
    # Variables
    for i, var in enumerate(nomo.variables, start=1):
        label(i, var.name)
        values = _tick_values(var, max(1, min(8, round(nomo.variable_points(var) / 10))))
        if var.kind == "categorical":
            by_x: dict[float, list[str]] = {}
            for value in values:
                by_x.setdefault(round(nomo.points(var.name, value) / 100.0, 6), []).append(_fmt(value))
            _draw_axis(ax, row_y(i), list(by_x), [_same_points(v) for v in by_x.values()])
        else:
            xs = [nomo.points(var.name, value) / 100.0 for value in values]
            _draw_axis(ax, row_y(i), xs, [_fmt(v) for v in values])
    # Total points
    k_total = len(nomo.variables) + 1
    label(k_total, "Total points")
    tticks = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]).tick_values(0, total_max)
    tticks = [t for t in tticks if -1e-9 <= t <= total_max + 1e-9]
    _draw_axis(ax, row_y(k_total), [t / total_max for t in tticks], [f"{t:g}" for t in tticks])
    # Linear predictor and probability, aligned with total points
    next_row = k_total + 1
    lp_lo, lp_hi = float(nomo.linear_predictor(0.0)), float(nomo.linear_predictor(total_max))
    if show_linear_predictor:
        label(next_row, "Linear predictor")
        lticks = MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10]).tick_values(lp_lo, lp_hi)
        lticks = [t for t in lticks if lp_lo - 1e-9 <= t <= lp_hi + 1e-9] or [lp_lo, lp_hi]
        xs = [(t - nomo.offset) * nomo.points_per_logit / total_max for t in lticks]
        _draw_axis(ax, row_y(next_row), xs, [f"{t:g}" for t in lticks])
        next_row += 1
    label(next_row, "Probability")
    p_lo, p_hi = float(nomo.probability(0.0)), float(nomo.probability(total_max))
    keep: list[tuple[float, float]] = []
    for p in probabilities:
        if p_lo <= p <= p_hi:
            x = nomo.total_points_for(p) / total_max
            if not keep or x - keep[-1][0] >= 0.035:
                keep.append((x, p))
    if len(keep) < 2:
        keep = [(0.0, p_lo), (1.0, p_hi)]
    _draw_axis(ax, row_y(next_row), [k[0] for k in keep], [f"{k[1]:g}" if k[1] >= 0.01 else f"{k[1]:.2g}" for k in keep])
    if case is not None:
        res = nomo.predict(case)
        for i, var in enumerate(nomo.variables, start=1):
            ax.plot(res["points"][var.name] / 100.0, row_y(i), "o", color="#d62728", ms=5, zorder=5)
        ax.plot(res["total_points"] / total_max, row_y(k_total), "o", color="#d62728", ms=5, zorder=5)
        ax.plot(res["total_points"] / total_max, row_y(next_row), "o", color="#d62728", ms=5, zorder=5)
        ax.text(1.02, row_y(next_row) - 0.45, f"example: {res['total_points']:.0f} points, p = {res['probability']:.2f}",
                ha="right", va="top", fontsize=7, color="#d62728")
    if title:
        fig.suptitle(title, fontsize=9.5, y=0.99)
    return fig
