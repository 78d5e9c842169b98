"""Propensity score matching with a balance table (standardised mean differences).

The propensity model is statsmodels' unpenalised logistic regression. Written here by hand,
because neither lifelines, statsmodels nor scikit-learn ships it: greedy nearest-neighbour
matching on the logit of the propensity score with a caliper (Austin 2011: 0.2 standard
deviations of the logit), 1:k, with or without replacement, and the balance table.

Conventions
-----------
* Matching order: treated cases from the largest propensity down (``order="largest"``, as
  MatchIt's default for this distance), or in random (seeded) or data order. Each treated case
  takes its ``ratio`` nearest available controls within the caliper (fewer if fewer are
  available); a treated case with none is left unmatched and reported.
* Matching weights: each matched treated case weighs 1; a control weighs the sum over the
  sets it joins of ``1 / (controls in that set)``.
* Standardised mean difference: ``(mean_treated - mean_control) / sqrt((var_treated +
  var_control) / 2)``, with the denominator taken from the whole (unmatched) cohort both
  before and after matching, so the change reflects the means only (as cobalt's
  ``s.d.denom = "pooled"``). Categorical covariates contribute one row per level.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import statsmodels.api as sm

from her2dlr.errors import InputError, nearest
from her2dlr.survival._data import check_columns, group_levels, make_design, rows_text
from her2dlr.survival.results import SurvivalResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ORDERS", "MatchResult", "propensity_match", "standardised_differences"]

#: Allowed values of ``order``.
ORDERS = ("largest", "random", "data")

#: Columns added to the matched table.
SET_COL, WEIGHT_COL, PS_COL = "match_set", "match_weight", "propensity"
#: First row of the balance table: the logit of the propensity score itself.
LOGIT_ROW = "logit(propensity)"


def _balance_design(df: pd.DataFrame, covariates: Sequence[str], categorical: Iterable[str]) -> pd.DataFrame:
    """Numeric covariates as they are; categorical ones as one 0/1 column per level (all levels)."""
    X, spec = make_design(df, covariates, categorical=categorical, allow_constant=True)
    out = {}
    for term, cols in spec.terms.items():
        if term in spec.levels:
            for level in spec.levels[term]:
                out[f"{term}[{level}]"] = (df[term] == level).to_numpy(dtype=float)
        else:
            out[term] = X[cols[0]].to_numpy()
    return pd.DataFrame(out, index=df.index)


def _wmean_var(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    m = float(np.average(x, weights=w))
    return m, float(np.average((x - m) ** 2, weights=w))


def standardised_differences(
    X: pd.DataFrame, treated: np.ndarray, weights: np.ndarray | None = None, denominator: pd.Series | None = None
) -> pd.DataFrame:
    """Means by arm and standardised mean differences of every column of ``X``.

    Parameters
    ----------
    X : DataFrame of shape (n_cases, n_columns)
    treated : ndarray of bool, shape (n_cases,)
    weights : ndarray of shape (n_cases,), optional
        Case weights (e.g. matching weights; 0 drops a case).
    denominator : Series, optional
        SMD denominator per column (default: pooled SD of these cases).

    Returns
    -------
    DataFrame with columns ``mean_treated``, ``mean_control``, ``smd`` and ``sd_pooled``.
    """
    w = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
    rows = {}
    for col in X.columns:
        x = X[col].to_numpy(dtype=float)
        mt, vt = _wmean_var(x[treated], w[treated])
        mc, vc = _wmean_var(x[~treated], w[~treated])
        sd = float(np.sqrt((vt + vc) / 2.0))
        den = float(denominator[col]) if denominator is not None else sd
        smd = (mt - mc) / den if den > 0 else (0.0 if mt == mc else np.inf)
        rows[col] = {"mean_treated": mt, "mean_control": mc, "smd": smd, "sd_pooled": sd}
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass(repr=False)
class MatchResult(SurvivalResult):
    """Propensity score matching: the matched cohort and its balance table.

    Attributes
    ----------
    treatment : str
    treated_value, control_value
        Arm values compared (control = reference).
    covariates : list of str
    propensity : Series
        Estimated propensity score of every case considered (index of the input).
    caliper : float
        Caliper on the logit scale (``caliper_sd`` times the SD of the logit), or inf.
    matched : DataFrame
        The matched rows (input columns plus ``match_set``, ``match_weight`` and
        ``propensity``); with replacement, a control joining several sets appears once per set.
    balance : DataFrame
        Per covariate (level): means and SMD before and after matching.
    n_treated, n_control, n_treated_matched, n_control_matched : int
    """

    treatment: str
    treated_value: Any
    control_value: Any
    covariates: list[str]
    propensity: pd.Series
    caliper_sd: float | None
    caliper: float
    ratio: int
    replace: bool
    matched: pd.DataFrame
    balance: pd.DataFrame
    n_treated: int
    n_control: int
    n_treated_matched: int
    n_control_matched: int
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:  # type: ignore[override]
        return f"propensity score matching on '{self.treatment}' ({self.treated_value} vs {self.control_value})"

    @property
    def max_smd_before(self) -> float:
        """Largest |SMD| over the covariates (levels) before matching."""
        return float(self.balance["smd_before"].drop(index=LOGIT_ROW).abs().max())

    @property
    def max_smd_after(self) -> float:
        """Largest |SMD| over the covariates (levels) after matching."""
        return float(self.balance["smd_after"].drop(index=LOGIT_ROW).abs().max())

    @property
    def summary(self) -> pd.DataFrame:
        """The balance table."""
        return self.balance

    def _header(self) -> dict[str, Any]:
        return {
            "treated / control": f"{self.n_treated} / {self.n_control}",
            "matched treated / controls": f"{self.n_treated_matched} / {self.n_control_matched}",
            "ratio, replacement": f"1:{self.ratio}, {'with' if self.replace else 'without'}",
            "caliper (logit scale)": round(self.caliper, 4) if np.isfinite(self.caliper) else "none",
            "max |SMD| before/after": f"{self.max_smd_before:.3f} / {self.max_smd_after:.3f}",
        }

    def plot(self, **kwargs: Any) -> Figure:
        """Love plot of |SMD| before and after (see :func:`her2dlr.survival.plots.plot_balance`)."""
        from her2dlr.survival.plots import plot_balance

        return plot_balance(self, **kwargs)


def _arms(df: pd.DataFrame, treatment: str, treated_value: Any, control_value: Any) -> tuple[Any, Any]:
    check_columns(df, [treatment], role="treatment column")
    s = df[treatment]
    if s.isna().any():
        raise InputError(
            f"Treatment column '{treatment}' has {int(s.isna().sum())} missing values at {rows_text(df.index[s.isna()])}."
        )
    levels = group_levels(s)
    for name, value in (("treated_value", treated_value), ("control_value", control_value)):
        if value is not None and value not in levels:
            raise InputError(
                f"{name}={value!r} does not occur in treatment column '{treatment}'; levels: "
                f"{levels!r}.{nearest(str(value), map(str, levels))}"
            )
    if treated_value is None and control_value is None:
        if len(levels) != 2:
            raise InputError(
                f"Treatment column '{treatment}' has {len(levels)} arms {levels!r}; matching compares two: "
                "give treated_value and control_value."
            )
        control_value, treated_value = levels
    elif treated_value is None:
        rest = [v for v in levels if v != control_value]
        if len(rest) != 1:
            raise InputError(f"Give treated_value: column '{treatment}' has arms {levels!r}.")
        treated_value = rest[0]
    elif control_value is None:
        rest = [v for v in levels if v != treated_value]
        if len(rest) != 1:
            raise InputError(f"Give control_value: column '{treatment}' has arms {levels!r}.")
        control_value = rest[0]
    return treated_value, control_value


def propensity_match(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    *,
    treated_value: Any = None,
    control_value: Any = None,
    caliper: float | None = 0.2,
    ratio: int = 1,
    replace: bool = False,
    order: Literal["largest", "random", "data"] = "largest",
    categorical: Iterable[str] = (),
    seed: int = 0,
    min_arm_size: int = 2,
) -> MatchResult:
    """Match treated to control cases on the logit of a logistic propensity score.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    treatment : str
        Treatment column. Rows in arms other than the two compared are ignored.
    covariates : sequence of str
        Covariates of the propensity model (categorical ones are one-hot encoded).
    treated_value, control_value : optional
        Arms compared (default for a two-arm column: control = first level, e.g. ``"no"``,
        ``0`` or ``False``; treated = the other).
    caliper : float or None
        Maximum distance on the logit scale, in standard deviations of the logit propensity
        (default 0.2); ``None`` = no caliper.
    ratio : int
        Controls per treated case (1:k).
    replace : bool
        Allow a control to be matched to several treated cases.
    order : {"largest", "random", "data"}
        Order in which treated cases pick their controls.
    categorical : iterable of str
        Numeric covariates to treat as categories.
    seed : int
        Seed of ``order="random"``.
    min_arm_size : int
        Each arm needs at least this many cases (default 2).

    Returns
    -------
    MatchResult

    Raises
    ------
    InputError
        Unknown or missing columns/values, an arm smaller than ``min_arm_size``, a constant
        covariate, or a propensity model that cannot be fitted (perfect separation).
    """
    _check_match_parameters(order, ratio, caliper)
    treated_value, control_value = _arms(df, treatment, treated_value, control_value)
    data = df[df[treatment].isin([treated_value, control_value])]
    is_t = (data[treatment] == treated_value).to_numpy()
    _check_arm_sizes(treatment, treated_value, control_value, is_t, min_arm_size)
    logit = _propensity_logit(data, treatment, covariates, categorical, is_t)
    ps = 1.0 / (1.0 + np.exp(-logit))
    cal = float(caliper * np.std(logit, ddof=1)) if caliper is not None else np.inf
    sets = _greedy_match(logit, ps, is_t, cal, ratio=ratio, replace=replace, order=order, seed=seed)
    matched, weights = _matched_rows(data, sets, ps)
    balance = pd.concat(
        [
            # the propensity score itself, on the logit scale, as the first balance row
            _balance_rows(pd.DataFrame({LOGIT_ROW: logit}, index=data.index), is_t, weights, bool(sets)),
            _balance_rows(_balance_design(data, covariates, categorical), is_t, weights, bool(sets)),
        ]
    )
    balance.index.name = "covariate"
    notes = []
    n_unmatched = int(is_t.sum()) - len(sets)
    if n_unmatched:
        notes.append(f"{n_unmatched} treated case(s) had no control within the caliper and were left out")
    if not sets:
        notes.append("no treated case could be matched: widen the caliper")
    return MatchResult(
        treatment=treatment,
        treated_value=treated_value,
        control_value=control_value,
        covariates=list(covariates),
        propensity=pd.Series(ps, index=data.index, name=PS_COL),
        caliper_sd=caliper,
        caliper=cal,
        ratio=int(ratio),
        replace=replace,
        matched=matched,
        balance=balance,
        n_treated=int(is_t.sum()),
        n_control=int((~is_t).sum()),
        n_treated_matched=len(sets),
        n_control_matched=int((weights[~is_t] > 0).sum()),
        notes=notes,
    )


def _check_match_parameters(order: str, ratio: Any, caliper: float | None) -> None:
    """Refuse an unknown ``order``, a ``ratio`` that is not an int >= 1 and a ``caliper`` <= 0."""
    if order not in ORDERS:
        raise InputError(
            f"The 'order' parameter of propensity_match must be one of {ORDERS}. Got {order!r} instead."
            f"{nearest(str(order), ORDERS)}"
        )
    if not (isinstance(ratio, (int, np.integer)) and ratio >= 1):
        raise InputError(f"The 'ratio' parameter of propensity_match must be an int >= 1. Got {ratio!r} instead.")
    if caliper is not None and not caliper > 0:
        raise InputError(f"The 'caliper' parameter of propensity_match must be > 0 or None. Got {caliper!r} instead.")


def _check_arm_sizes(treatment: str, treated_value: Any, control_value: Any, is_t: np.ndarray, min_arm_size: int) -> None:
    """Each compared arm has at least ``min_arm_size`` cases."""
    for value, n in ((treated_value, int(is_t.sum())), (control_value, int((~is_t).sum()))):
        if n < min_arm_size:
            raise InputError(
                f"Arm {treatment} = {value!r} has {n} case(s); propensity matching needs at least {min_arm_size} per arm."
            )


def _propensity_logit(
    data: pd.DataFrame, treatment: str, covariates: Sequence[str], categorical: Iterable[str], is_t: np.ndarray
) -> np.ndarray:
    """Logit of the propensity score, shape (n_cases,), from an unpenalised logistic model on standardised covariates.

    Raises when statsmodels cannot fit the model or when the arms do not overlap (perfect separation).
    """
    X, _ = make_design(data, covariates, categorical=categorical)
    Z = (X - X.mean()) / X.std(ddof=0)
    exog = sm.add_constant(Z.to_numpy(), has_constant="add")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sm.Logit(is_t.astype(float), exog).fit(disp=0, maxiter=200, method="newton")
        except Exception as exc:  # statsmodels raises several types (PerfectSeparationError, LinAlgError)
            raise InputError(
                f"The propensity model of '{treatment}' on {list(covariates)} could not be fitted "
                f"({type(exc).__name__}: {exc}); a covariate may separate the arms perfectly."
            ) from exc
    logit = exog @ fit.params
    separated = any("PerfectSeparation" in type(w.message).__name__ for w in caught) or (
        logit[is_t].min() > logit[~is_t].max() or logit[~is_t].min() > logit[is_t].max()
    )
    if separated or not np.isfinite(logit).all():
        raise InputError(
            f"The propensity model of '{treatment}' on {list(covariates)} separates the arms perfectly: no "
            "treated and control cases overlap, so matching is not meaningful. Drop the covariate that "
            "determines treatment."
        )
    return logit


def _greedy_match(
    logit: np.ndarray, ps: np.ndarray, is_t: np.ndarray, cal: float, *, ratio: int, replace: bool, order: str, seed: int
) -> list[tuple[int, list[int]]]:
    """Greedy nearest-neighbour matching on ``logit`` within the caliper ``cal`` (logit scale).

    Returns one ``(treated position, [control positions])`` per matched treated case, in the
    order the treated cases picked (see the module's conventions).
    """
    t_idx = np.flatnonzero(is_t)
    c_idx = np.flatnonzero(~is_t)
    if order == "largest":
        t_idx = t_idx[np.argsort(-ps[t_idx], kind="stable")]
    elif order == "random":
        t_idx = np.random.default_rng(seed).permutation(t_idx)
    available = np.ones(len(c_idx), dtype=bool)
    sets: list[tuple[int, list[int]]] = []
    for i in t_idx:
        dist = np.abs(logit[c_idx] - logit[i])
        ok = (dist <= cal) & available
        if not ok.any():
            continue
        cand = np.flatnonzero(ok)
        chosen = cand[np.argsort(dist[cand], kind="stable")[:ratio]]
        if not replace:
            available[chosen] = False
        sets.append((i, [int(c_idx[j]) for j in chosen]))
    return sets


def _matched_rows(
    data: pd.DataFrame, sets: list[tuple[int, list[int]]], ps: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray]:
    """The matched table (one row per case and set, with set id, weight and propensity) and the
    matching weight of every case of ``data`` (0 = not matched)."""
    weights = np.zeros(len(data))
    rows, set_ids, row_w = [], [], []
    for s_id, (i, controls) in enumerate(sets):
        weights[i] += 1.0
        rows.append(i), set_ids.append(s_id), row_w.append(1.0)
        for j in controls:
            weights[j] += 1.0 / len(controls)
            rows.append(j), set_ids.append(s_id), row_w.append(1.0 / len(controls))
    matched = data.iloc[rows].copy()
    matched[SET_COL] = set_ids
    matched[WEIGHT_COL] = row_w
    matched[PS_COL] = ps[rows]
    return matched, weights


def _balance_rows(X: pd.DataFrame, is_t: np.ndarray, weights: np.ndarray, matched_any: bool) -> pd.DataFrame:
    """Means and SMDs of the columns of ``X`` before and (when any set was formed) after matching.

    After matching, the SMD keeps the unmatched pooled SD as its denominator.
    """
    before = standardised_differences(X, is_t)
    after = standardised_differences(X, is_t, weights, denominator=before["sd_pooled"]) if matched_any else None
    return pd.DataFrame(
        {
            "mean_treated_before": before["mean_treated"],
            "mean_control_before": before["mean_control"],
            "smd_before": before["smd"],
            "mean_treated_after": after["mean_treated"] if after is not None else np.nan,
            "mean_control_after": after["mean_control"] if after is not None else np.nan,
            "smd_after": after["smd"] if after is not None else np.nan,
        }
    )
