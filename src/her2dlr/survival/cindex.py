"""Concordance indices (Harrell, Uno) with bootstrap CIs, and cross-validated Cox C-index.

Harrell's C comes from lifelines (``lifelines.utils.concordance_index``). Written here by hand:

* **Uno's C** with inverse-probability-of-censoring weights (Uno et al., Stat Med 2011;30:1105),
  because lifelines does not ship it. It reproduces scikit-survival's
  ``concordance_index_ipcw``: the censoring distribution G is the Kaplan-Meier estimate of
  censoring, fitted on the training cases, with censorings at an event time counted after
  the events; an event at ``T_i < tau`` gets weight ``1 / G(T_i)^2``; pair (i, j) is
  comparable when ``T_i < T_j``, or ``T_i == T_j`` and only i has the event; tied risks
  count 1/2.
* **The bootstrap**, done with case multiplicities on a pairwise matrix so that 1000
  replicates cost a few matrix products (exactly equal to recomputing the index on each
  resampled cohort; for Uno's C the censoring distribution is re-estimated per replicate).
  Percentile intervals; the risk scores are held fixed (the interval is for the index of
  these predictions, not for refitting the model).
* **Out-of-fold Cox scores**: each case's linear predictor from a Cox model fitted without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from lifelines.utils import concordance_index
from sklearn.model_selection import StratifiedKFold

from her2dlr.errors import InputError, nearest
from her2dlr.survival._data import check_columns, make_design, survival_arrays
from her2dlr.survival.results import SurvivalResult

__all__ = [
    "METHODS",
    "ConcordanceResult",
    "CrossValidatedConcordance",
    "concordance",
    "cross_validated_concordance",
    "harrell_c",
    "out_of_fold_cox_risk",
    "uno_c",
]

#: Allowed values of ``method``.
METHODS = ("harrell", "uno")

#: Above this many cases the n x n pair matrices (about 5 x 8 n^2 bytes at peak) are not built:
#: the point estimate loops over rows and the bootstrap over replicates (slower, O(n) memory).
_MATRIX_LIMIT = 2000


def _as_arrays(time: Any, event: Any, risk: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(time, dtype=float)
    e = np.asarray(event).astype(bool)
    r = np.asarray(risk, dtype=float)
    if not (t.shape == e.shape == r.shape) or t.ndim != 1:
        raise InputError(f"time, event and risk must be 1-D of one length; got {t.shape}, {e.shape}, {r.shape}.")
    for name, a in (("time", t), ("risk", r)):
        if not np.isfinite(a).all():
            raise InputError(f"The {name} values have {int((~np.isfinite(a)).sum())} missing/infinite entries.")
    if not e.any():
        raise InputError("No events: every case is censored, so no pair is comparable and the C-index is undefined.")
    return t, e, r


def harrell_c(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index of a risk score (higher risk = earlier event).

    Parameters
    ----------
    time, event, risk : array-like of shape (n_cases,)

    Returns
    -------
    float
        Share of comparable pairs ordered correctly by the risk; tied risks count 1/2.
    """
    t, e, r = _as_arrays(time, event, risk)
    return float(concordance_index(t, -r, e))


def _censoring_survival(time: np.ndarray, event: np.ndarray, mult: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier of the censoring distribution (censorings at a tie come after events).

    Returns the unique times and G at each (right-continuous). ``mult`` are case weights
    (bootstrap multiplicities), shape (n_cases,) or (n_boot, n_cases).
    """
    uniq, inv = np.unique(time, return_inverse=True)
    if mult is None:
        mult = np.ones(len(time))
    m2 = np.atleast_2d(mult)
    n_t = len(uniq)
    cens = np.zeros((m2.shape[0], n_t))
    dead = np.zeros((m2.shape[0], n_t))
    np.add.at(cens.T, inv[~event], m2[:, ~event].T)
    np.add.at(dead.T, inv[event], m2[:, event].T)
    total = cens + dead
    at_risk = np.cumsum(total[:, ::-1], axis=1)[:, ::-1]  # weight with time >= u
    at_risk_cens = at_risk - dead
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where(at_risk_cens > 0, 1.0 - cens / at_risk_cens, 1.0)
    G = np.cumprod(step, axis=1)
    return uniq, (G[0] if np.ndim(mult) == 1 else G)


def _lookup(uniq: np.ndarray, G: np.ndarray, times: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(uniq, times, side="right") - 1
    out = np.where(idx >= 0, np.take(G, np.clip(idx, 0, None), axis=-1), 1.0)
    return out


def _pair_matrices(t: np.ndarray, e: np.ndarray, r: np.ndarray, tied_tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """Comparable-pair matrix B and concordance-credit matrix A = B * (1 | 1/2 | 0)."""
    Ti, Tj = t[:, None], t[None, :]
    comp = e[:, None] & ((Ti < Tj) | ((Ti == Tj) & ~e[None, :]))
    diff = r[:, None] - r[None, :]
    credit = np.where(np.abs(diff) <= tied_tol, 0.5, (diff > 0).astype(float))
    return comp * credit, comp.astype(float)


def _uno_weights(
    t: np.ndarray, e: np.ndarray, tau: float | None, train: tuple[np.ndarray, np.ndarray] | None, mult: np.ndarray | None = None
) -> np.ndarray:
    """1/G(T_i)^2 for events before tau (0 otherwise); NaN where G(T_i) = 0."""
    if train is None:
        uniq, G = _censoring_survival(t, e, mult)
    else:
        uniq, G = _censoring_survival(*train)
    g = _lookup(uniq, G, t)
    use = e & (t < tau if tau is not None else True)
    with np.errstate(divide="ignore"):
        w = np.where(use, 1.0 / np.where(g > 0, g, np.nan) ** 2, 0.0)
    return np.where(use & ~(g > 0), np.nan, w)


def uno_c(
    time: Any,
    event: Any,
    risk: Any,
    *,
    tau: float | None = None,
    train_time: Any = None,
    train_event: Any = None,
) -> float:
    """Uno's concordance index with inverse-probability-of-censoring weights.

    Parameters
    ----------
    time, event, risk : array-like of shape (n_cases,)
        Test cases and their risk scores (higher = riskier).
    tau : float, optional
        Truncation time: only events before ``tau`` count as the earlier member of a pair.
        Choose it where the censoring survival is still well above 0.
    train_time, train_event : array-like, optional
        Cases used to estimate the censoring distribution (default: the test cases).

    Returns
    -------
    float

    Raises
    ------
    InputError
        When the censoring survival is 0 at an event time used (set a smaller ``tau``).
    """
    t, e, r = _as_arrays(time, event, risk)
    train = None
    if train_time is not None:
        train = (np.asarray(train_time, dtype=float), np.asarray(train_event).astype(bool))
    w = _uno_weights(t, e, tau, train)
    if np.isnan(w).any():
        raise InputError(
            "Uno's C: the censoring survival G(t) is 0 at an event time; set tau below "
            f"{np.min(t[np.isnan(w)]):g} (censoring-weighted estimates need G(t) > 0)."
        )
    if len(t) <= _MATRIX_LIMIT:
        A, B = _pair_matrices(t, e, r)
        num, den = float(w @ A.sum(axis=1)), float(w @ B.sum(axis=1))
    else:  # row by row: O(n) memory
        num = den = 0.0
        for i in np.flatnonzero(w > 0):
            a, b = _row_pairs(t, e, r, i)
            num += w[i] * a
            den += w[i] * b
    if den == 0:
        raise InputError("Uno's C: no comparable pairs (no event before tau with a later case).")
    return float(num / den)


def _row_pairs(t: np.ndarray, e: np.ndarray, r: np.ndarray, i: int, tied_tol: float = 1e-8) -> tuple[float, float]:
    comp = (t[i] < t) | ((t[i] == t) & ~e)
    comp[i] = False
    diff = r[i] - r[comp]
    credit = np.where(np.abs(diff) <= tied_tol, 0.5, (diff > 0).astype(float))
    return float(credit.sum()), float(comp.sum())


@dataclass(repr=False)
class ConcordanceResult(SurvivalResult):
    """A concordance index with its bootstrap percentile interval.

    Attributes
    ----------
    method : str
        ``"harrell"`` or ``"uno"``.
    estimate, ci_low, ci_high : float
    n_bootstrap : int
        Replicates used (replicates where the index is undefined are dropped and counted
        in :attr:`n_failed`).
    n, n_events : int
    tau : float or None
    alpha : float
    """

    method: str
    estimate: float
    ci_low: float
    ci_high: float
    n_bootstrap: int
    n: int
    n_events: int
    tau: float | None = None
    alpha: float = 0.05
    n_failed: int = 0
    label: str = ""
    replicates: np.ndarray | None = field(default=None, repr=False)

    @property
    def title(self) -> str:  # type: ignore[override]
        return f"{'Harrell' if self.method == 'harrell' else 'Uno'} concordance index{' of ' + self.label if self.label else ''}"

    @property
    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "model": [self.label],
                "method": [self.method],
                "c_index": [self.estimate],
                "ci_low": [self.ci_low],
                "ci_high": [self.ci_high],
                "n": [self.n],
                "events": [self.n_events],
                "n_bootstrap": [self.n_bootstrap],
                "tau": [self.tau if self.tau is not None else np.nan],
            }
        )

    def _header(self) -> dict[str, Any]:
        return {
            "estimate": round(self.estimate, 4),
            f"{100 * (1 - self.alpha):.0f}% CI": f"{self.ci_low:.4f}-{self.ci_high:.4f}",
            "bootstrap replicates": self.n_bootstrap,
        }


def _bootstrap(
    t: np.ndarray, e: np.ndarray, r: np.ndarray, method: str, tau: float | None, n_boot: int, seed: int | np.random.Generator
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(t)
    if n_boot <= 0:
        return np.empty(0)
    if n > _MATRIX_LIMIT:  # loop: O(n log n) Harrell or O(n^2) Uno per replicate
        out = np.full(n_boot, np.nan)
        for b in range(n_boot):
            idx = rng.integers(0, n, n)
            with contextlib.suppress(InputError):
                out[b] = harrell_c(t[idx], e[idx], r[idx]) if method == "harrell" else uno_c(t[idx], e[idx], r[idx], tau=tau)
        return out
    A, B = _pair_matrices(t, e, r)
    out = np.empty(n_boot)
    chunk = max(1, min(n_boot, 2_000_000 // max(n, 1)))
    for start in range(0, n_boot, chunk):
        nb = min(chunk, n_boot - start)
        M = rng.multinomial(n, np.full(n, 1.0 / n), size=nb).astype(float)  # (nb, n) multiplicities
        if method == "harrell":
            W = M
        else:
            W = M * _uno_weights_boot(t, e, tau, M)
        num = np.einsum("bi,bi->b", W, M @ A.T)
        den = np.einsum("bi,bi->b", W, M @ B.T)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + nb] = np.where(den > 0, num / den, np.nan)
    return out


def _uno_weights_boot(t: np.ndarray, e: np.ndarray, tau: float | None, M: np.ndarray) -> np.ndarray:
    uniq, G = _censoring_survival(t, e, M)  # (nb, n_unique)
    idx = np.searchsorted(uniq, t, side="right") - 1  # >= 0 since t is in uniq
    g = G[:, idx]
    use = e & (t < tau if tau is not None else True)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(use[None, :], 1.0 / g**2, 0.0)
    # A zero G where the case was drawn makes the replicate undefined (NaN propagates).
    w[(~np.isfinite(w)) & (M == 0)] = 0.0
    w[~np.isfinite(w)] = np.nan
    return w


def concordance(
    time: Any,
    event: Any,
    risk: Any,
    *,
    method: Literal["harrell", "uno"] = "harrell",
    tau: float | None = None,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    label: str = "",
) -> ConcordanceResult:
    """C-index of a risk score with a percentile bootstrap confidence interval.

    Parameters
    ----------
    time, event, risk : array-like of shape (n_cases,)
        Follow-up, event indicator (1/0) and risk score (higher = earlier event expected).
    method : {"harrell", "uno"}
    tau : float, optional
        Truncation time of Uno's C (ignored by Harrell's).
    n_bootstrap : int
        Bootstrap replicates (0 = no interval).
    alpha : float
        1 - confidence level.
    seed : int
        Seed of the resampling.
    label : str
        Name of the score, shown in the summary.

    Returns
    -------
    ConcordanceResult

    Examples
    --------
    >>> import numpy as np
    >>> res = concordance([1, 2, 3, 4], [1, 1, 0, 1], [4, 3, 2, 1], n_bootstrap=0)
    >>> res.estimate
    1.0
    """
    if method not in METHODS:
        raise InputError(
            f"The 'method' parameter of concordance must be one of {METHODS}; got {method!r}.{nearest(str(method), METHODS)}"
        )
    t, e, r = _as_arrays(time, event, risk)
    est = harrell_c(t, e, r) if method == "harrell" else uno_c(t, e, r, tau=tau)
    reps = _bootstrap(t, e, r, method, tau, n_bootstrap, seed)
    ok = reps[np.isfinite(reps)]
    lo, hi = (np.quantile(ok, [alpha / 2, 1 - alpha / 2]) if len(ok) else (np.nan, np.nan))
    return ConcordanceResult(
        method, est, float(lo), float(hi), len(ok), len(t), int(e.sum()), tau, alpha,
        int(len(reps) - len(ok)), label, reps,
    )


def out_of_fold_cox_risk(
    df: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    n_splits: int = 5,
    seed: int = 0,
    categorical: Iterable[str] = (),
    reference: Mapping[str, Any] | None = None,
    penalizer: float = 0.0,
    folds: pd.Series | None = None,
) -> pd.DataFrame:
    """Out-of-fold Cox linear predictors: each case scored by a model fitted without it.

    Folds are stratified on the event indicator and fixed by ``seed`` (or given as ``folds``,
    a column of fold numbers aligned with ``df``). Categorical levels are fixed from the whole
    table before splitting (level names are not learned from outcomes). Each fold's linear
    predictor is centred on the mean over its training cases, so scores from different folds
    share an origin and can be pooled (e.g. for risk groups).

    Returns
    -------
    DataFrame indexed like ``df`` with columns ``risk`` (linear predictor, higher = riskier)
    and ``fold``.
    """
    from her2dlr.survival.cox import fit_cox

    _t, e = survival_arrays(df, time, event, require_events=True, purpose="a Cox model")
    if n_splits < 2:
        raise InputError(f"The 'n_splits' parameter must be an int >= 2; got {n_splits}.")
    if int(e.sum()) < n_splits or int((~e).sum()) < n_splits:
        raise InputError(
            f"{n_splits}-fold cross-validation needs at least {n_splits} events and {n_splits} censored cases "
            f"in column '{event}'; got {int(e.sum())} and {int((~e).sum())}."
        )
    _, spec = make_design(df, covariates, categorical=categorical, reference=reference)
    data = df.copy()
    for term, levels in spec.levels.items():
        data[term] = pd.Categorical(data[term], categories=levels)
    if folds is None:
        skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        fold = np.empty(len(df), dtype=int)
        for k, (_, test_idx) in enumerate(skf.split(np.zeros(len(df)), e.astype(int))):
            fold[test_idx] = k
    else:
        fold = np.asarray(folds)
    risk = np.empty(len(df))
    for k in np.unique(fold):
        train, test = fold != k, fold == k
        fit = fit_cox(
            data.iloc[train], time, event, covariates, categorical=categorical, penalizer=penalizer, check_ph=False,
        )
        # centred on the training fold's mean design row, so pooled scores share an origin
        centre = float(fit.predict_risk(data.iloc[train]).mean())
        risk[test] = fit.predict_risk(data.iloc[test]).to_numpy() - centre
    return pd.DataFrame({"risk": risk, "fold": fold}, index=df.index)


@dataclass(repr=False)
class CrossValidatedConcordance(SurvivalResult):
    """Harrell's C-index of a Cox model in (repeated) k-fold cross-validation.

    Attributes
    ----------
    estimate : float
        Mean held-out C-index over all folds (and repeats).
    ci_low, ci_high : float
        Percentile bootstrap interval of that mean: held-out cases are resampled within each
        fold (models held fixed) and the fold indices averaged per replicate.
    folds : DataFrame
        Per repeat and fold: n, events, held-out C-index.
    pooled : ConcordanceResult
        C-index of the pooled out-of-fold linear predictors (first repeat), each centred on
        its training fold's mean, with its own bootstrap CI.
    oof_risk : DataFrame
        Out-of-fold risk and fold of every case (first repeat).
    """

    covariates: list[str]
    estimate: float
    ci_low: float
    ci_high: float
    folds: pd.DataFrame
    pooled: ConcordanceResult
    oof_risk: pd.DataFrame
    alpha: float = 0.05

    title = "cross-validated Cox C-index"

    @property
    def summary(self) -> pd.DataFrame:
        extra = pd.DataFrame(
            [
                {"repeat": "all", "fold": "mean", "n": np.nan, "events": np.nan, "c_index": self.estimate,
                 "ci_low": self.ci_low, "ci_high": self.ci_high},
                {"repeat": "0", "fold": "pooled", "n": self.pooled.n, "events": self.pooled.n_events,
                 "c_index": self.pooled.estimate, "ci_low": self.pooled.ci_low, "ci_high": self.pooled.ci_high},
            ]
        )
        folds = self.folds.astype({"repeat": str, "fold": str})
        return pd.concat([folds, extra], ignore_index=True)

    def _header(self) -> dict[str, Any]:
        return {
            "covariates": ", ".join(self.covariates),
            "mean held-out C-index": f"{self.estimate:.4f} ({self.ci_low:.4f}-{self.ci_high:.4f})",
            "pooled out-of-fold C": f"{self.pooled.estimate:.4f} ({self.pooled.ci_low:.4f}-{self.pooled.ci_high:.4f})",
        }


def cross_validated_concordance(
    df: pd.DataFrame,
    time: str,
    event: str,
    covariates: Sequence[str],
    *,
    n_splits: int = 5,
    n_repeats: int = 1,
    seed: int = 0,
    categorical: Iterable[str] = (),
    reference: Mapping[str, Any] | None = None,
    penalizer: float = 0.0,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
) -> CrossValidatedConcordance:
    """Harrell's C-index of a Cox model of ``covariates`` in (repeated) k-fold CV.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    time, event : str
    covariates : sequence of str
    n_splits, n_repeats : int
        Folds per repeat and number of repeats (repeat r shuffles with ``seed + r``).
    seed : int
    categorical, reference, penalizer
        As in :func:`her2dlr.survival.cox.fit_cox`.
    n_bootstrap : int
        Bootstrap replicates of the intervals.
    alpha : float

    Returns
    -------
    CrossValidatedConcordance
    """
    check_columns(df, covariates, role="covariate")
    if n_repeats < 1:
        raise InputError(f"The 'n_repeats' parameter must be an int >= 1; got {n_repeats}.")
    t, e = survival_arrays(df, time, event)
    rows = []
    reps = []
    first = pd.DataFrame()
    for rep in range(n_repeats):
        oof = out_of_fold_cox_risk(
            df, time, event, covariates, n_splits=n_splits, seed=seed + rep,
            categorical=categorical, reference=reference, penalizer=penalizer,
        )
        if rep == 0:
            first = oof
        for k in range(n_splits):
            m = (oof["fold"] == k).to_numpy()
            if not e[m].any():
                rows.append({"repeat": rep, "fold": k + 1, "n": int(m.sum()), "events": 0, "c_index": np.nan})
                continue
            res = concordance(t[m], e[m], oof["risk"].to_numpy()[m], n_bootstrap=n_bootstrap,
                              seed=seed + 1000 * rep + k)
            rows.append({"repeat": rep, "fold": k + 1, "n": int(m.sum()), "events": int(e[m].sum()),
                         "c_index": res.estimate})
            if res.replicates is not None:
                reps.append(res.replicates)
    folds = pd.DataFrame(rows)
    estimate = float(folds["c_index"].mean())
    lo = hi = np.nan
    if reps and n_bootstrap > 0:
        mean_reps = np.nanmean(np.vstack(reps), axis=0)
        lo, hi = np.quantile(mean_reps[np.isfinite(mean_reps)], [alpha / 2, 1 - alpha / 2])
    pooled = concordance(t, e, first["risk"], n_bootstrap=n_bootstrap, alpha=alpha, seed=seed,
                         label="pooled out-of-fold Cox")
    return CrossValidatedConcordance(list(covariates), estimate, float(lo), float(hi), folds, pooled, first, alpha)
