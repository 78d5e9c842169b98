"""Calibration of predicted probabilities: curves, logistic recalibration, Brier, Hosmer-Lemeshow.

Conventions, chosen to match R (checked by ``scripts/r/evaluate_reference.R``):

* **Logistic recalibration** (Cox 1958; rms ``val.prob``): ``slope`` and ``intercept_recal``
  are the coefficients of ``glm(y ~ qlogis(p), family = binomial)`` (val.prob's "Slope" and
  "Intercept"); ``intercept`` is calibration-in-the-large, the intercept of
  ``glm(y ~ offset(qlogis(p)), family = binomial)`` (0 when the mean prediction is right).
  As in val.prob, cases with ``p`` exactly 0 or 1 (infinite logit) are left out of these fits.
* **Smoothed curve**: ``lowess(p, y, iter = 0)`` as R's ``lowess`` with its default
  ``delta = 0.01 * diff(range(p))`` (statsmodels' implementation; no robustness iterations,
  which make no sense for 0/1 outcomes). ``eavg`` / ``e90`` / ``emax`` are the mean, 90th
  percentile and maximum of ``|p - smoothed|`` at the cases, as val.prob's Eavg / E90 / Emax
  (``eavg`` is also called the integrated calibration index, Austin & Steyerberg 2019).
* **Hosmer-Lemeshow**: groups by quantiles of ``p`` exactly as ResourceSelection's
  ``hoslem.test``: breaks ``quantile(p, seq(0, 1, 1/g))`` (type 7), ``cut(p, breaks,
  include.lowest = TRUE)`` (intervals closed on the right, the first also on the left);
  tied breaks are merged and empty groups left out, and the degrees of freedom are the number
  of groups formed minus 2 (development data; pass ``df`` for external validation, where
  Hosmer & Lemeshow suggest the number of groups).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import special, stats

from her2dlr.checks import check_choice, param_error
from her2dlr.errors import InputError
from her2dlr.evaluate.compare import wilson_ci
from her2dlr.evaluate.metrics import check_binary_probs

__all__ = [
    "HosmerLemeshowResult",
    "brier_score",
    "calibration_curve_binned",
    "calibration_loess",
    "calibration_slope_intercept",
    "calibration_summary",
    "hosmer_lemeshow",
    "r_quantile7",
]


def _check_int(where: str, name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise param_error(where, name, f"an int >= {low}", value)
    return int(value)


def r_quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles by R's default (type 7) with R's own arithmetic, so that breaks equal R's to the bit.

    ``index = 1 + (n - 1) * prob``; ``q = (1 - h) x[lo] + h x[hi]`` with ``h = index - lo``
    (NumPy's ``"linear"`` method computes ``x[lo] + h (x[hi] - x[lo])``, which can differ in the
    last bit and move a case across a group boundary).
    """
    xs = np.sort(np.asarray(x, dtype=np.float64))
    index = (len(xs) - 1) * np.asarray(probs, dtype=np.float64)  # 0-based: R's index - 1
    lo = np.floor(index).astype(int)
    hi = np.ceil(index).astype(int)
    q = xs[lo].copy()
    h = index - lo
    move = (index > lo) & (xs[hi] != q)
    q[move] = (1 - h[move]) * q[move] + h[move] * xs[hi[move]]
    return q


def _hl_groups(p: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Group index of each case (0-based) and the unique breaks, as ``cut(p, unique(quantile(p, ...)))``."""
    probs = np.arange(n_groups + 1) * (1.0 / n_groups)  # R: seq(0, 1, 1/g) = 0 + (0:g) * (1/g)
    probs = np.minimum(probs, 1.0)
    breaks = np.unique(r_quantile7(p, probs))
    if len(breaks) < 2:
        return np.zeros(len(p), dtype=int), breaks
    # right-closed intervals (b[k-1], b[k]]; p == b[0] goes to the first (include.lowest)
    group = np.searchsorted(breaks, p, side="left") - 1
    return np.clip(group, 0, len(breaks) - 2), breaks


@dataclass(frozen=True)
class HosmerLemeshowResult:
    """Hosmer-Lemeshow goodness-of-fit test.

    Attributes
    ----------
    statistic : float
        ``sum over groups and both classes of (observed - expected)^2 / expected``.
    df : int
    p_value : float
    table : DataFrame
        One row per group: ``group, lower, upper, n, observed, expected, observed_0, expected_0,
        mean_pred, obs_rate``.
    n_groups_requested : int
    """

    statistic: float
    df: int
    p_value: float
    table: pd.DataFrame = field(repr=False)
    n_groups_requested: int = 10

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the table)."""
        return {"statistic": self.statistic, "df": self.df, "p_value": self.p_value,
                "n_groups": len(self.table), "n_groups_requested": self.n_groups_requested}


def hosmer_lemeshow(y: Any, p: Any, n_groups: int = 10, *, df: int | None = None) -> HosmerLemeshowResult:
    """Hosmer-Lemeshow test with quantile groups, as ResourceSelection's ``hoslem.test``.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
        0/1 outcomes.
    p : array-like of shape (n_cases,)
        Predicted probabilities.
    n_groups : int, default=10
        Groups requested (``g``); ties in the quantile breaks give fewer.
    df : int, optional
        Degrees of freedom; default the number of groups formed minus 2, right for a model
        fitted on these cases. For predictions fixed in advance (external validation) pass
        the number of groups: the statistic then follows chi-square with that many df.

    Returns
    -------
    HosmerLemeshowResult

    Raises
    ------
    InputError
        Bad labels or probabilities, or fewer than 3 groups could be formed (ties).
    """
    yy, pp = check_binary_probs(y, p, where="hosmer_lemeshow")
    g = _check_int("hosmer_lemeshow", "n_groups", n_groups, 3)
    group, breaks = _hl_groups(pp, g)
    rows = []
    for k in range(max(len(breaks) - 1, 1)):
        member = group == k
        n = int(member.sum())
        if n == 0:
            continue
        e1 = float(pp[member].sum())
        o1 = int(yy[member].sum())
        upper = float(breaks[min(k + 1, len(breaks) - 1)])
        rows.append({"group": len(rows) + 1, "lower": float(breaks[k]), "upper": upper, "n": n,
                     "observed": o1, "expected": e1, "observed_0": n - o1, "expected_0": n - e1,
                     "mean_pred": e1 / n, "obs_rate": o1 / n})
    table = pd.DataFrame(rows)
    if len(table) < 3:
        raise InputError(
            f"hosmer_lemeshow: only {len(table)} group(s) could be formed from {n_groups} quantile groups "
            f"(the predictions take {len(np.unique(pp))} distinct value(s)); the test needs at least 3."
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = ((table["observed"] - table["expected"]) ** 2 / table["expected"]
                 + (table["observed_0"] - table["expected_0"]) ** 2 / table["expected_0"])
    statistic = float(terms.sum())
    dof = len(table) - 2 if df is None else _check_int("hosmer_lemeshow", "df", df, 1)
    return HosmerLemeshowResult(statistic, dof, float(stats.chi2.sf(statistic, dof)), table, g)


def brier_score(y: Any, p: Any) -> float:
    """Brier score, ``mean((p - y)^2)``.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
    p : array-like of shape (n_cases,)

    Returns
    -------
    float

    Examples
    --------
    >>> brier_score([1, 0, 1, 0], [0.8, 0.2, 0.6, 0.4])
    0.1
    """
    yy, pp = check_binary_probs(y, p, where="brier_score")
    return float(np.mean((pp - yy) ** 2))


def calibration_curve_binned(y: Any, p: Any, n_bins: int = 10, strategy: str = "quantile", *,
                             level: float = 0.95) -> pd.DataFrame:
    """Observed event rate against mean prediction in bins of the predictions.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
    p : array-like of shape (n_cases,)
    n_bins : int, default=10
    strategy : {"quantile", "uniform"}, default="quantile"
        ``"quantile"``: bins of about equal size, grouped as :func:`hosmer_lemeshow` (tied
        breaks merged); ``"uniform"``: ``n_bins`` equal-width bins of [0, 1] (closed on the
        right, the first also on the left).
    level : float, default=0.95
        Level of the Wilson interval of the observed rate.

    Returns
    -------
    DataFrame
        One row per non-empty bin: ``bin, lower, upper, n, n_events, mean_pred, obs_rate,
        ci_low, ci_high``.
    """
    yy, pp = check_binary_probs(y, p, where="calibration_curve_binned")
    k = _check_int("calibration_curve_binned", "n_bins", n_bins, 1)
    check_choice("calibration_curve_binned", "strategy", strategy, ("quantile", "uniform"))
    if strategy == "quantile":
        group, breaks = _hl_groups(pp, k)
        if len(breaks) < 2:
            breaks = np.array([pp[0], pp[0]])
    else:
        breaks = np.linspace(0.0, 1.0, k + 1)
        group = np.clip(np.searchsorted(breaks, pp, side="left") - 1, 0, k - 1)
    rows = []
    for b in range(len(breaks) - 1):
        member = group == b
        n = int(member.sum())
        if n == 0:
            continue
        events = int(yy[member].sum())
        lo, hi = wilson_ci(events, n, level)
        rows.append({"bin": len(rows) + 1, "lower": float(breaks[b]), "upper": float(breaks[b + 1]), "n": n,
                     "n_events": events, "mean_pred": float(pp[member].mean()), "obs_rate": events / n,
                     "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def _lowess(y: np.ndarray, p: np.ndarray, frac: float) -> tuple[np.ndarray, np.ndarray]:
    """R's ``lowess(p, y, f = frac, iter = 0)``: sorted ``p`` and the smoothed ``y`` there."""
    from statsmodels.nonparametric.smoothers_lowess import lowess

    with np.errstate(invalid="ignore", divide="ignore"):  # few distinct p: some local fits are degenerate
        fit = lowess(y.astype(float), p, frac=frac, it=0, delta=0.01 * float(p.max() - p.min()))
    return fit[:, 0], fit[:, 1]


def _at(x: np.ndarray, s: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation of the curve ``(x, s)`` at ``points``, tied ``x`` averaged (R's
    ``approx(x, s, xout = points, ties = mean)``); NaN outside the range of ``x``."""
    ux, inverse = np.unique(x, return_inverse=True)
    us = np.bincount(inverse, weights=s) / np.bincount(inverse)
    return np.interp(points, ux, us, left=np.nan, right=np.nan)


def calibration_loess(y: Any, p: Any, frac: float = 2 / 3, grid: Any = None, *, clip: bool = True) -> pd.DataFrame:
    """Smoothed calibration curve: lowess of the outcomes on the predictions.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
    p : array-like of shape (n_cases,)
    frac : float, default=2/3
        Share of the cases in each local fit (R's ``f``).
    grid : array-like, optional
        Predictions at which to give the curve, by linear interpolation between the cases
        (NaN outside their range); default every case's own prediction.
    clip : bool, default=True
        Clip ``obs`` to [0, 1] (a local linear fit can leave it near the ends).

    Returns
    -------
    DataFrame
        Columns ``pred, obs``, sorted by ``pred``; equal to R's
        ``lowess(p, y, f = frac, iter = 0)`` when ``grid`` is None and ``clip`` is False.
    """
    yy, pp = check_binary_probs(y, p, where="calibration_loess")
    if isinstance(frac, bool) or not isinstance(frac, (int, float, np.number)) or not 0 < frac <= 1:
        raise param_error("calibration_loess", "frac", "a float in (0, 1]", frac)
    pred, obs = _lowess(yy, pp, float(frac))
    if grid is not None:
        points = np.sort(np.asarray(grid, dtype=np.float64).ravel())
        if not np.isfinite(points).all():
            raise InputError("calibration_loess: grid has missing or infinite values.")
        pred, obs = points, _at(pred, obs, points)
    return pd.DataFrame({"pred": pred, "obs": np.clip(obs, 0.0, 1.0) if clip else obs})


def _calibration_errors(yy: np.ndarray, pp: np.ndarray) -> dict[str, float]:
    """val.prob's Eavg, E90, Emax: ``|p - lowess(p, y)(p)|`` at the cases (tied p averaged)."""
    x, s = _lowess(yy, pp, 2 / 3)
    err = np.abs(pp - _at(x, s, pp))
    return {"eavg": float(err.mean()), "e90": float(np.quantile(err, 0.9)), "emax": float(err.max())}


def calibration_slope_intercept(y: Any, p: Any) -> dict[str, float]:
    """Logistic recalibration: calibration slope and intercepts (see the module notes).

    Parameters
    ----------
    y : array-like of shape (n_cases,)
    p : array-like of shape (n_cases,)

    Returns
    -------
    dict
        ``slope, slope_se`` (``glm(y ~ logit p)``; 1 is ideal, < 1 means over-confident
        predictions), ``intercept, intercept_se`` (calibration-in-the-large,
        ``glm(y ~ offset(logit p))``; 0 is ideal), ``intercept_recal`` (the intercept of the
        slope model, val.prob's "Intercept"), ``n`` (cases used) and ``n_excluded`` (p of 0 or 1).
    """
    yy, pp = check_binary_probs(y, p, where="calibration_slope_intercept")
    keep = (pp > 0) & (pp < 1)
    yk, lp = yy[keep].astype(float), special.logit(pp[keep])
    if len(np.unique(yk)) < 2 or len(np.unique(lp)) < 2:
        raise InputError(
            "calibration_slope_intercept: after leaving out predictions of exactly 0 or 1, "
            f"{int(keep.sum())} case(s) remain with {len(np.unique(yk))} class(es) and {len(np.unique(lp))} "
            "distinct prediction(s); the logistic recalibration needs both classes and two distinct predictions."
        )
    slope_fit = sm.GLM(yk, sm.add_constant(lp), family=sm.families.Binomial()).fit(tol=1e-12)
    citl_fit = sm.GLM(yk, np.ones((len(yk), 1)), family=sm.families.Binomial(), offset=lp).fit(tol=1e-12)
    return {
        "slope": float(slope_fit.params[1]),
        "slope_se": float(slope_fit.bse[1]),
        "intercept": float(citl_fit.params[0]),
        "intercept_se": float(citl_fit.bse[0]),
        "intercept_recal": float(slope_fit.params[0]),
        "n": int(keep.sum()),
        "n_excluded": int((~keep).sum()),
    }


def calibration_summary(y: Any, p: Any, *, n_groups: int = 10) -> dict[str, float]:
    """Brier score, calibration slope and intercept, Hosmer-Lemeshow test and lowess errors.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
    p : array-like of shape (n_cases,)
    n_groups : int, default=10
        Hosmer-Lemeshow groups.

    Returns
    -------
    dict
        ``brier, slope, intercept, intercept_recal, hl_statistic, hl_df, hl_p, eavg, e90, emax,
        n``; the Hosmer-Lemeshow entries are NaN when fewer than 3 groups can be formed.
    """
    yy, pp = check_binary_probs(y, p, where="calibration_summary")
    si = calibration_slope_intercept(yy, pp)
    try:
        hl = hosmer_lemeshow(yy, pp, n_groups)
        hl_stat, hl_df, hl_p = hl.statistic, float(hl.df), hl.p_value
    except InputError:
        hl_stat = hl_df = hl_p = math.nan
    return {"brier": float(np.mean((pp - yy) ** 2)), "slope": si["slope"], "intercept": si["intercept"],
            "intercept_recal": si["intercept_recal"], "hl_statistic": hl_stat, "hl_df": hl_df, "hl_p": hl_p,
            **_calibration_errors(yy, pp), "n": len(yy)}
