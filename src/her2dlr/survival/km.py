"""Kaplan-Meier estimates, median and fixed-horizon survival, and log-rank tests.

Kaplan-Meier curves and the log-rank test itself come from lifelines. Written here by hand,
because lifelines does not ship them: the observed/expected/covariance table of the k-group
log-rank statistic and the log-rank test for trend built from it (Peto & Peto 1972; Collett,
*Modelling Survival Data*, 3rd ed., sec. 2.6), and survival at a horizon with its
confidence interval looked up on the fitted step function.

Conventions, chosen to match R's ``survival`` package:

* confidence intervals are lifelines' "exponential Greenwood", i.e. R's
  ``survfit(..., conf.type = "log-log")``;
* the median's interval is the range of times where the pointwise band crosses 0.5
  (Brookmeyer-Crowley style, as R's ``summary(survfit)``); a bound that is never reached
  is reported as NaN ("not reached");
* survival at a horizon past a group's last follow-up is NaN (not estimable), not the last value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.survival._data import check_columns, group_levels, rows_text, survival_arrays
from her2dlr.survival.results import SurvivalResult, format_p

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "KaplanMeierResult",
    "LogRankResult",
    "kaplan_meier",
    "logrank_table",
    "logrank_test",
    "number_at_risk",
]


@dataclass(repr=False)
class LogRankResult(SurvivalResult):
    """Result of a log-rank test (k groups) or a log-rank test for trend.

    Attributes
    ----------
    test_name : str
        ``"log-rank"`` or ``"log-rank trend"``.
    test_statistic : float
        Chi-square statistic.
    p_value : float
    degrees_of_freedom : int
    group_col : str
    table : DataFrame
        Per group: ``n``, ``observed``, ``expected`` events and, for trend, the ``score``.
    """

    test_name: str
    test_statistic: float
    p_value: float
    degrees_of_freedom: int
    group_col: str
    table: pd.DataFrame

    @property
    def title(self) -> str:  # type: ignore[override]
        return f"{self.test_name} test by '{self.group_col}'"

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "test": [self.test_name],
                "group": [self.group_col],
                "test_statistic": [self.test_statistic],
                "df": [self.degrees_of_freedom],
                "p": [self.p_value],
                "-log2(p)": [-np.log2(self.p_value) if self.p_value > 0 else np.inf],
            }
        )

    def _header(self) -> dict[str, Any]:
        return {
            "null_distribution": "chi squared",
            "degrees_of_freedom": self.degrees_of_freedom,
            "test_statistic": self.test_statistic,
            "p": format_p(self.p_value),
        }


def logrank_table(
    durations: np.ndarray, events: np.ndarray, groups: np.ndarray, levels: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed and expected events per group and the log-rank covariance matrix.

    Written by hand (lifelines does not expose them). With :math:`n_{gt}` at risk and
    :math:`d_{gt}` events in group g at event time t, :math:`n_t, d_t` the totals:
    :math:`E_g = \\sum_t d_t n_{gt}/n_t` and
    :math:`V_{gh} = \\sum_t d_t (n_t-d_t)/(n_t-1) \\cdot n_{gt}/n_t (\\delta_{gh} - n_{ht}/n_t)`.

    Parameters
    ----------
    durations, events, groups : ndarray of shape (n_cases,)
    levels : sequence
        Group levels, in the order of the returned arrays.

    Returns
    -------
    observed : ndarray of shape (k,)
    expected : ndarray of shape (k,)
    covariance : ndarray of shape (k, k)
    """
    k = len(levels)
    event_times = np.unique(durations[events])
    # at risk at each event time: n with duration >= t, per group
    n_risk = np.empty((len(event_times), k))
    d = np.empty((len(event_times), k))
    observed = np.empty(k)
    for g, level in enumerate(levels):
        in_g = groups == level
        t_g = np.sort(durations[in_g])
        n_risk[:, g] = len(t_g) - np.searchsorted(t_g, event_times, side="left")
        ev_g = np.sort(durations[in_g & events])
        d[:, g] = np.searchsorted(ev_g, event_times, side="right") - np.searchsorted(
            ev_g, event_times, side="left"
        )
        observed[g] = (in_g & events).sum()
    n_t = n_risk.sum(axis=1)
    d_t = d.sum(axis=1)
    frac = n_risk / n_t[:, None]
    expected = (d_t[:, None] * frac).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(n_t > 1, d_t * (n_t - d_t) / (n_t - 1), 0.0)
    cov = np.einsum("t,tg,th->gh", factor, frac, -frac)
    cov[np.diag_indices(k)] += (factor[:, None] * frac).sum(axis=0)
    return observed, expected, cov


def _group_series(df: pd.DataFrame, group: str, order: Sequence[Any] | None) -> tuple[pd.Series, list[Any]]:
    check_columns(df, [group], role="group column")
    s = df[group]
    if s.isna().any():
        raise InputError(
            f"Group column '{group}' has {int(s.isna().sum())} missing values at "
            f"{rows_text(df.index[s.isna()])}; drop these cases or give them a group."
        )
    return s, group_levels(s, order)


def logrank_test(
    df: pd.DataFrame,
    time: str,
    event: str,
    group: str,
    *,
    trend: bool = False,
    scores: Sequence[float] | None = None,
    order: Sequence[Any] | None = None,
) -> LogRankResult:
    """Log-rank test between two or more groups, or the log-rank test for trend.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
        Follow-up time and event (1/0) columns.
    group : str
        Grouping column (at least two levels).
    trend : bool
        Test for a monotone trend across ordered groups (1 degree of freedom).
    scores : sequence of float, optional
        Score of each level for the trend test (default: the level values when the column is
        numeric, else 1, 2, ..., k in level order).
    order : sequence, optional
        Level order (default: categorical order, else sorted).

    Returns
    -------
    LogRankResult

    Examples
    --------
    >>> from lifelines.datasets import load_gbsg2
    >>> res = logrank_test(load_gbsg2(), "time", "cens", "horTh")
    >>> round(res.test_statistic, 2)
    8.56
    """
    t, e = survival_arrays(df, time, event, require_events=True, purpose="a log-rank test")
    s, levels = _group_series(df, group, order)
    if len(levels) < 2:
        raise InputError(
            f"A log-rank test needs at least two groups; column '{group}' has only {levels!r}."
        )
    g = s.to_numpy()
    observed, expected, cov = logrank_table(t, e, g, levels)
    table = pd.DataFrame(
        {"n": [int((g == lv).sum()) for lv in levels], "observed": observed, "expected": expected},
        index=pd.Index(levels, name=group),
    )
    if not trend:
        res = multivariate_logrank_test(t, g, e)
        return LogRankResult(
            "log-rank", float(res.test_statistic), float(res.p_value), len(levels) - 1, group, table
        )
    if scores is None:
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in levels)
        scores = [float(v) for v in levels] if numeric else list(range(1, len(levels) + 1))
    w = np.asarray(scores, dtype=float)
    if w.shape != (len(levels),):
        raise InputError(
            f"Trend scores for '{group}' must give one number per level {levels!r}; got {list(scores)!r}."
        )
    u = float(w @ (observed - expected))
    v = float(w @ cov @ w)
    if v <= 0:
        raise InputError(f"The log-rank trend test for '{group}' has zero variance (constant scores?).")
    chi2 = u * u / v
    table["score"] = w
    return LogRankResult("log-rank trend", chi2, float(stats.chi2.sf(chi2, 1)), 1, group, table)


def number_at_risk(durations: np.ndarray, times: Sequence[float]) -> np.ndarray:
    """Number of cases still at risk (duration >= t) at each of ``times``."""
    srt = np.sort(np.asarray(durations, dtype=float))
    return len(srt) - np.searchsorted(srt, np.asarray(times, dtype=float), side="left")


def _step_value(frame: pd.DataFrame | pd.Series, t: float) -> Any:
    """Value of a right-continuous step function (indexed by time) at ``t``."""
    idx = frame.index.to_numpy(dtype=float)
    pos = np.searchsorted(idx, t, side="right") - 1
    return frame.iloc[max(pos, 0)]


@dataclass(repr=False)
class KaplanMeierResult(SurvivalResult):
    """Kaplan-Meier curves of one cohort or of each group, with medians and horizon survival.

    Attributes
    ----------
    fitters : dict
        Group level (or ``"all"``) -> fitted ``lifelines.KaplanMeierFitter``.
    durations, events : dict
        Group level -> arrays used for the fit (for at-risk tables).
    group_col : str or None
    horizons : tuple of float
        Horizons in the time column's unit.
    horizon_labels : tuple of str
        Their labels (``"1y"``).
    alpha : float
    logrank, trend : LogRankResult or None
    """

    fitters: dict[Any, KaplanMeierFitter]
    durations: dict[Any, np.ndarray]
    events: dict[Any, np.ndarray]
    time_col: str
    event_col: str
    group_col: str | None
    horizons: tuple[float, ...] = ()
    horizon_labels: tuple[str, ...] = ()
    alpha: float = 0.05
    logrank: LogRankResult | None = None
    trend: LogRankResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:  # type: ignore[override]
        return f"Kaplan-Meier by '{self.group_col}'" if self.group_col else "Kaplan-Meier"

    @property
    def groups(self) -> list[Any]:
        """Group levels in display order."""
        return list(self.fitters)

    def survival_at(self) -> pd.DataFrame:
        """Long table: group, horizon, time, n at risk, survival and its CI at each horizon."""
        rows = []
        for level, kmf in self.fitters.items():
            ci = kmf.confidence_interval_survival_function_
            last = float(self.durations[level].max()) if len(self.durations[level]) else 0.0
            for label, h in zip(self.horizon_labels, self.horizons):
                if h > last:
                    s = lo = hi = np.nan
                else:
                    s = float(_step_value(kmf.survival_function_.iloc[:, 0], h))
                    lo, hi = (float(v) for v in _step_value(ci, h))
                rows.append(
                    {
                        "group": level,
                        "horizon": label,
                        "time": h,
                        "n_at_risk": int(number_at_risk(self.durations[level], [h])[0]),
                        "survival": s,
                        "lower": lo,
                        "upper": hi,
                    }
                )
        return pd.DataFrame(rows)

    def medians(self) -> pd.DataFrame:
        """Per group: n, events, median survival time and its CI (NaN = not reached)."""
        rows = []
        for level, kmf in self.fitters.items():
            med = float(kmf.median_survival_time_)
            lo, hi = _median_ci(kmf)
            rows.append(
                {
                    "group": level,
                    "n": len(self.durations[level]),
                    "events": int(self.events[level].sum()),
                    "median": med if np.isfinite(med) else np.nan,
                    "median_lower": lo,
                    "median_upper": hi,
                }
            )
        return pd.DataFrame(rows)

    @property
    def summary(self) -> pd.DataFrame:
        """Per group: n, events, median with CI, and survival with CI at each horizon."""
        out = self.medians().set_index("group")
        surv = self.survival_at()
        for label in self.horizon_labels:
            part = surv[surv["horizon"] == label].set_index("group")
            out[f"S({label})"] = part["survival"]
            out[f"S({label}) lower"] = part["lower"]
            out[f"S({label}) upper"] = part["upper"]
        out.index.name = self.group_col or "group"
        return out

    def at_risk_table(self, times: Sequence[float]) -> pd.DataFrame:
        """Number at risk per group (rows) at each of ``times`` (columns)."""
        return pd.DataFrame(
            {level: number_at_risk(self.durations[level], times) for level in self.fitters},
            index=pd.Index(list(times), name=self.time_col),
        ).T

    def _header(self) -> dict[str, Any]:
        head: dict[str, Any] = {"duration col": self.time_col, "event col": self.event_col}
        if self.logrank is not None:
            head["log-rank"] = f"chi2 = {self.logrank.test_statistic:.2f}, {format_p(self.logrank.p_value)}"
        if self.trend is not None:
            head["trend"] = f"chi2 = {self.trend.test_statistic:.2f}, {format_p(self.trend.p_value)}"
        return head

    def plot(self, **kwargs: Any) -> Figure:
        """Kaplan-Meier figure with CI bands and a number-at-risk table.

        See :func:`her2dlr.survival.plots.plot_km` for the keyword arguments.
        """
        from her2dlr.survival.plots import plot_km

        return plot_km(self, **kwargs)


def _median_ci(kmf: KaplanMeierFitter) -> tuple[float, float]:
    """Times where the lower and upper pointwise bands first reach <= 0.5 (NaN if never)."""
    ci = kmf.confidence_interval_survival_function_
    out = []
    for col in ci.columns:
        below = ci.index[ci[col].to_numpy() <= 0.5]
        out.append(float(below[0]) if len(below) else np.nan)
    lower_band, upper_band = out  # columns: lower, upper
    # the lower band reaches 0.5 first -> lower bound of the median's interval
    return lower_band, upper_band


def kaplan_meier(
    df: pd.DataFrame,
    time: str,
    event: str,
    group: str | None = None,
    *,
    horizons: Sequence[float] = (),
    horizon_labels: Sequence[str] | None = None,
    alpha: float = 0.05,
    logrank: bool = True,
    trend: bool | None = None,
    order: Sequence[Any] | None = None,
) -> KaplanMeierResult:
    """Kaplan-Meier estimates overall or by group, with log-rank (and trend) tests.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
        Follow-up time and event (1/0) columns.
    group : str, optional
        Grouping column; ``None`` gives one curve for all cases.
    horizons : sequence of float
        Times (in the time column's unit) at which survival and its CI are reported.
    horizon_labels : sequence of str, optional
        Labels of the horizons (default: the numbers).
    alpha : float
        1 - confidence level.
    logrank : bool
        Add the log-rank test (when there are at least two groups and one event).
    trend : bool, optional
        Add the trend test; default: when there are more than two groups.
    order : sequence, optional
        Group order (default: categorical order, else sorted).

    Returns
    -------
    KaplanMeierResult

    Notes
    -----
    A group without any event gets a flat curve at 1, a median of NaN ("not reached") and
    no error. A cohort with no event at all gives curves but no log-rank test (a note says so).
    """
    t, e = survival_arrays(df, time, event)
    horizons = tuple(float(h) for h in horizons)
    labels = tuple(horizon_labels) if horizon_labels is not None else tuple(f"{h:g}" for h in horizons)
    if len(labels) != len(horizons):
        raise InputError(f"Got {len(labels)} horizon labels for {len(horizons)} horizons.")
    if group is None:
        levels: list[Any] = ["all"]
        g = np.array(["all"] * len(t), dtype=object)
    else:
        s, levels = _group_series(df, group, order)
        g = s.to_numpy()
    fitters: dict[Any, KaplanMeierFitter] = {}
    durs: dict[Any, np.ndarray] = {}
    evs: dict[Any, np.ndarray] = {}
    for level in levels:
        m = g == level
        kmf = KaplanMeierFitter(alpha=alpha, label=str(level))
        kmf.fit(t[m], e[m])
        fitters[level], durs[level], evs[level] = kmf, t[m], e[m]
    res = KaplanMeierResult(fitters, durs, evs, time, event, group, horizons, labels, alpha)
    for level in levels:
        if not evs[level].any():
            res.notes.append(f"group {level!r} has no events: its curve stays at 1, median not reached")
    if group is not None and len(levels) >= 2:
        if not e.any():
            res.notes.append("no events in the cohort: log-rank test not computed")
        else:
            if logrank:
                res.logrank = logrank_test(df, time, event, group, order=levels)
            if trend or (trend is None and len(levels) > 2):
                res.trend = logrank_test(df, time, event, group, trend=True, order=levels)
    return res
