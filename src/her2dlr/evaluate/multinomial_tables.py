"""Relative risk ratios of a label of more than two classes (HER2-zero / HER2-low / HER2-positive).

The multinomial counterpart of :func:`her2dlr.evaluate.tables.odds_ratio_table`: every class
but the reference is compared with the reference class in a multinomial (baseline-category)
logistic regression, statsmodels ``MNLogit`` fitted by maximum likelihood on the complete
cases. ``exp(coefficient)`` is the **relative risk ratio** (RRR) of that class against the
reference class for a one-unit increase of a numeric variable, or for a level of a
categorical variable against its reference level; 95% Wald intervals ``exp(b +/- z se)`` and
Wald p-values go with each. A variable's own p-value (``p_overall``) is the likelihood-ratio
test of all its coefficients in every equation (``n_levels x (n_classes - 1)`` degrees of
freedom), the usual test of a multinomial predictor.

Variables with univariable ``p_overall < p_enter`` are candidates; the multivariable model
holds them all (``stepwise=None``) or what backward elimination by the likelihood-ratio test
keeps (``stepwise="backward"``: the variable with the largest p-value leaves while it is
``>= p_enter``). A fit that does not converge or where a variable separates the classes keeps
its numbers and says so in ``note``; such RRRs and intervals are not to be trusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.checks import param_error
from her2dlr.errors import InputError
from her2dlr.evaluate.tables import _encode, _levels, check_regression_inputs, infer_types

__all__ = ["RRR_COLUMNS", "RelativeRiskRatioTable", "relative_risk_ratio_table"]

#: Columns of :attr:`RelativeRiskRatioTable.univariable` and ``multivariable``.
RRR_COLUMNS = ["variable", "level", "reference", "class", "reference_class", "RRR", "ci_low", "ci_high", "p",
               "p_overall", "n", "note"]


@dataclass
class RelativeRiskRatioTable:
    """Univariable and multivariable multinomial logistic regression results.

    Attributes
    ----------
    univariable, multivariable : DataFrame
        Columns :data:`RRR_COLUMNS`, one row per (variable level, non-reference class); the
        reference level of a categorical variable has RRR 1 and ``note="reference"``.
    classes : list of str
        The outcome's classes, the reference first.
    reference_class : str
    candidates : list of str
        Variables with univariable ``p_overall < p_enter``.
    selected : list of str
        Variables of the multivariable model.
    n : int
        Complete cases.
    class_counts : dict of str to int
        Complete cases per class.
    p_enter : float
    stepwise : str or None
    notes : list of str
    """

    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    classes: list[str]
    reference_class: str
    candidates: list[str]
    selected: list[str]
    n: int
    class_counts: dict[str, int]
    p_enter: float
    stepwise: str | None
    notes: list[str] = field(default_factory=list)


@dataclass
class _Fit:
    params: np.ndarray  # (n_columns + 1, n_classes - 1), the constant first
    bse: np.ndarray
    pvalues: np.ndarray
    llf: float
    columns: list[str]
    note: str


def _mnlogit(X: pd.DataFrame, y: np.ndarray) -> _Fit:
    """MNLogit of class codes ``y`` (0 = reference) on ``X`` with a constant; the note names a failed
    convergence or separation."""
    import statsmodels.api as sm

    exog = np.column_stack([np.ones(len(y)), X.to_numpy(dtype=float)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(all="ignore"):
            res = sm.MNLogit(y, exog).fit(method="newton", maxiter=200, disp=0)
    notes = []
    if not res.mle_retvals.get("converged", True):
        notes.append("did not converge")
    if any("separation" in str(w.message).lower() for w in caught):
        notes.append("(quasi-)separation: a variable predicts a class almost perfectly")
    params = np.asarray(res.params, dtype=float).reshape(exog.shape[1], -1)
    with np.errstate(all="ignore"):
        bse = np.asarray(res.bse, dtype=float).reshape(params.shape)
        pvalues = np.asarray(res.pvalues, dtype=float).reshape(params.shape)
    if not np.isfinite(bse).all() or (bse > 1e3).any():
        notes.append("standard errors unstable (separation or collinearity)")
    return _Fit(params, bse, pvalues, float(res.llf), list(X.columns), "; ".join(dict.fromkeys(notes)))


def _lr_p(full: _Fit, reduced_llf: float, df: int) -> float:
    stat = max(2.0 * (full.llf - reduced_llf), 0.0)
    return float(stats.chi2.sf(stat, df)) if df > 0 else float("nan")


def _rows(fit: _Fit, variables: Sequence[str], members: Mapping[str, list[str]],
          levels_of: Mapping[str, tuple[Any, list[Any]]], classes: list[str], p_overall: Mapping[str, float],
          z: float, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    ref_class = classes[0]
    for v in variables:
        if v in levels_of:
            ref, others = levels_of[v]
            entries = [(str(lev), f"{v}={lev}", str(ref)) for lev in others]
        else:
            ref, entries = None, [("", v, "")]
        for j, cls in enumerate(classes[1:]):
            common = {"variable": v, "class": cls, "reference_class": ref_class, "p_overall": p_overall[v], "n": n}
            if ref is not None:
                rows.append({**common, "level": str(ref), "reference": str(ref), "RRR": 1.0, "ci_low": np.nan,
                             "ci_high": np.nan, "p": np.nan, "note": "reference"})
            for level, column, ref_name in entries:
                i = fit.columns.index(column) + 1
                b, se = fit.params[i, j], fit.bse[i, j]
                with np.errstate(over="ignore", invalid="ignore"):
                    rows.append({**common, "level": level, "reference": ref_name, "RRR": float(np.exp(b)),
                                 "ci_low": float(np.exp(b - z * se)), "ci_high": float(np.exp(b + z * se)),
                                 "p": float(fit.pvalues[i, j]), "note": fit.note})
    return rows


def relative_risk_ratio_table(
    frame: pd.DataFrame,
    outcome: str,
    variables: Sequence[str],
    types: Mapping[str, str] | None = None,
    p_enter: float = 0.05,
    stepwise: Literal["backward"] | None = "backward",
    *,
    reference_class: Any = None,
    reference: Mapping[str, Any] | None = None,
    conf_level: float = 0.95,
) -> RelativeRiskRatioTable:
    """Univariable RRRs of each variable and a multivariable multinomial model of those with p < ``p_enter``.

    Parameters
    ----------
    frame : DataFrame
        One row per patient.
    outcome : str
        Class column with three or more values (a categorical dtype's order is kept; else sorted).
    variables : sequence of str
        Candidate predictors.
    types : mapping of str to str, optional
        ``variable -> "numeric" | "categorical"``; others inferred
        (:func:`her2dlr.evaluate.tables.infer_types`).
    p_enter : float, default=0.05
        Univariable threshold for the multivariable model and threshold to stay in it.
    stepwise : {"backward", None}, default="backward"
    reference_class : optional
        Class the others are compared with (default: the first).
    reference : mapping of str to level, optional
        Reference level of categorical variables (default: the first).
    conf_level : float, default=0.95

    Returns
    -------
    RelativeRiskRatioTable

    Raises
    ------
    InputError
        Missing columns, an outcome with fewer than three classes in the complete cases, an
        unknown reference class, or a numeric variable holding text.
    """
    variables = check_regression_inputs("relative_risk_ratio_table", frame, outcome, variables, p_enter)
    if stepwise not in ("backward", None):
        raise param_error("relative_risk_ratio_table", "stepwise", "'backward' or None", stepwise)
    if not 0 < conf_level < 1:
        raise param_error("relative_risk_ratio_table", "conf_level", "a float in (0, 1)", conf_level)
    kinds = infer_types(frame, variables, types)
    notes: list[str] = []
    data = frame[[outcome, *variables]].dropna()
    if len(data) < len(frame):
        notes.append(f"complete-case analysis: {len(frame) - len(data)} of {len(frame)} row(s) left out")
    values = _levels(data[outcome])
    if len(values) < 3:
        raise InputError(f"relative_risk_ratio_table: outcome '{outcome}' must take three or more values in the "
                         f"complete cases; got {len(values)}: {values}. Use odds_ratio_table for two classes.")
    if reference_class is not None:
        if reference_class not in values:
            raise InputError(f"relative_risk_ratio_table: reference class {reference_class!r} is not a value of "
                             f"'{outcome}' ({values}).")
        values = [reference_class, *[v for v in values if v != reference_class]]
    y = data[outcome].map({v: k for k, v in enumerate(values)}).to_numpy(dtype=int)
    classes = [str(v) for v in values]
    X, members, levels_of = _encode(data, variables, kinds, dict(reference or {}))
    n, z = len(y), float(stats.norm.ppf(0.5 + conf_level / 2))
    null_llf = float(np.sum(np.bincount(y) * np.log(np.bincount(y) / n)))

    uni_rows: list[dict[str, Any]] = []
    p_overall: dict[str, float] = {}
    for v in variables:
        if not members[v]:
            notes.append(f"'{v}' takes a single value in the complete cases; left out")
            p_overall[v] = float("nan")
            continue
        try:
            fit = _mnlogit(X[members[v]], y)
        except Exception as exc:  # a singular information matrix: report and go on
            notes.append(f"univariable '{v}': could not be fitted ({type(exc).__name__}: {exc})")
            p_overall[v] = float("nan")
            continue
        p_overall[v] = _lr_p(fit, null_llf, len(members[v]) * (len(classes) - 1))
        uni_rows += _rows(fit, [v], members, levels_of, classes, p_overall, z, n)
        if fit.note:
            notes.append(f"univariable '{v}': {fit.note}")
    candidates = [v for v in variables if p_overall[v] < p_enter]

    selected = list(candidates)
    multi_rows: list[dict[str, Any]] = []
    if not candidates:
        notes.append(f"no variable had univariable p < {p_enter}; no multivariable model")
    while selected:
        try:
            fit = _mnlogit(X[[c for v in selected for c in members[v]]], y)
            drop_p = {v: _lr_p(fit, _mnlogit(X[[c for u in selected if u != v for c in members[u]]], y).llf
                               if len(selected) > 1 else null_llf, len(members[v]) * (len(classes) - 1))
                      for v in selected}
        except Exception as exc:
            notes.append(f"multivariable model could not be fitted ({type(exc).__name__}: {exc})")
            selected = []
            break
        worst = max(selected, key=lambda v: drop_p[v])
        if stepwise == "backward" and drop_p[worst] >= p_enter:
            selected.remove(worst)
            continue
        multi_rows = _rows(fit, selected, members, levels_of, classes, drop_p, z, n)
        if fit.note:
            notes.append(f"multivariable model: {fit.note}")
        break
    return RelativeRiskRatioTable(
        univariable=pd.DataFrame(uni_rows, columns=RRR_COLUMNS),
        multivariable=pd.DataFrame(multi_rows, columns=RRR_COLUMNS),
        classes=classes, reference_class=classes[0], candidates=candidates, selected=selected, n=n,
        class_counts={c: int((y == k).sum()) for k, c in enumerate(classes)}, p_enter=float(p_enter),
        stepwise=stepwise, notes=list(dict.fromkeys(notes)),
    )
