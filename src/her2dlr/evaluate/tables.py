"""Study tables: baseline characteristics by group ("Table 1") and univariable/multivariable odds ratios.

**Baseline table** (:func:`baseline_table`). Variable types are ``"numeric"`` (normality
decided from the data), ``"normal"``, ``"nonnormal"`` or ``"categorical"``; when not given,
non-numeric, boolean and numeric columns with at most two distinct values are categorical and
the rest numeric. A numeric variable is summarised as mean +/- SD and compared with Welch's
t-test (two groups) or Welch's one-way ANOVA (more) when the Shapiro-Wilk test has p > 0.05
in every group (and every group has 3 or more values); otherwise as median [IQR] (type-7
quartiles, R's default) with the Mann-Whitney U test (two groups; exact when both groups
have fewer than 50 values and there are no ties, else the normal approximation with
continuity correction: R's ``wilcox.test`` defaults) or the Kruskal-Wallis test.
A categorical variable is summarised as n (%) of the non-missing values of each group and
compared with Pearson's chi-square test (no continuity correction unless
``correction=True``), or with Fisher's exact test for a 2x2 table with an expected count
below 5; larger tables with expected counts below 5 keep the chi-square test and say so in
the ``test`` column. Missing values are left out of summaries and tests and counted in a
``missing`` row (n (%) of the group).

**Odds ratio table** (:func:`odds_ratio_table`). Logistic regressions fitted by
:func:`her2dlr.evaluate.logistic.fit_logit` (statsmodels ``Logit``; Firth's penalized
likelihood when a variable separates the outcome) on the complete cases of the outcome and all
listed variables. Categorical variables enter as indicator columns against a named reference
level (the first level unless ``reference`` says otherwise), and a categorical variable's
levels enter and leave the model together. Variables whose univariable p-value (the joint
Wald test of all its levels) is below ``p_enter`` are candidates; the multivariable model is
all candidates (``stepwise=None``) or the result of backward / forward selection by p-value
(:class:`her2dlr.evaluate.logistic.UnivariableMultivariableSelector`, threshold
``p_enter`` to enter and to stay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.checks import check_choice, param_error
from her2dlr.errors import InputError, nearest
from her2dlr.evaluate.logistic import (
    SEPARATION_FALLBACKS,
    LogitFit,
    UnivariableMultivariableSelector,
    fit_logit,
)

__all__ = ["VARIABLE_TYPES", "OddsRatioTable", "baseline_table", "infer_types", "odds_ratio_table"]

#: Allowed variable types of :func:`baseline_table` and :func:`odds_ratio_table`.
VARIABLE_TYPES = ("numeric", "normal", "nonnormal", "categorical")
_OR_COLUMNS = ["variable", "level", "reference", "OR", "ci_low", "ci_high", "p", "p_overall", "n", "note"]
_MWU_EXACT_BELOW = 50  # R's wilcox.test: exact p-value when both groups have fewer values and no ties


# ---------------------------------------------------------------------------- types
def _check_columns(frame: pd.DataFrame, names: Sequence[str], where: str) -> None:
    missing = [c for c in names if c not in frame.columns]
    if missing:
        hint = nearest(str(missing[0]), [str(c) for c in frame.columns])
        raise InputError(f"{where}: column(s) {missing} not in the table (columns: "
                         f"{[str(c) for c in frame.columns][:20]}).{hint}")


def check_regression_inputs(name: str, frame: Any, outcome: str, variables: Sequence[str], p_enter: Any) -> list[str]:
    """The checks every regression table shares: a DataFrame holding the outcome and the variables, the
    outcome not among them, ``p_enter`` in (0, 1). Returns the variables as a list; ``name`` heads each message."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"{name} needs a DataFrame; got {type(frame).__name__}.")
    variables = list(variables)
    if not variables:
        raise InputError(f"{name}: no variables given.")
    _check_columns(frame, [outcome], f"{name} (outcome)")
    _check_columns(frame, variables, f"{name} (variables)")
    if outcome in variables:
        raise InputError(f"{name}: the outcome '{outcome}' is also listed among the variables.")
    if isinstance(p_enter, bool) or not isinstance(p_enter, (int, float, np.number)) or not 0 < p_enter < 1:
        raise param_error(name, "p_enter", "a float in (0, 1)", p_enter)
    return variables


def infer_types(frame: pd.DataFrame, variables: Sequence[str] | None = None,
                types: Mapping[str, str] | None = None) -> dict[str, str]:
    """Type of each variable: the given one, else ``"categorical"`` or ``"numeric"`` from the data.

    Parameters
    ----------
    frame : DataFrame
    variables : sequence of str, optional
        Default: every column.
    types : mapping of str to str, optional
        Given types (:data:`VARIABLE_TYPES`); they win.

    Returns
    -------
    dict
        ``variable -> type``. Boolean, non-numeric and categorical-dtype columns, and numeric
        columns with at most two distinct values, are ``"categorical"``.
    """
    variables = list(frame.columns if variables is None else variables)
    given = dict(types or {})
    unknown = set(given) - set(variables)
    if unknown:
        raise InputError(f"types names variable(s) {sorted(map(str, unknown))} that are not among the variables "
                         f"{[str(v) for v in variables][:20]}.")
    out: dict[str, str] = {}
    for v in variables:
        if v in given:
            check_choice(f"types['{v}']", "type", given[v], VARIABLE_TYPES)
            out[v] = given[v]
            continue
        col = frame[v]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        out[v] = "numeric" if numeric and col.dropna().nunique() > 2 else "categorical"
    return out


def _levels(col: pd.Series) -> list[Any]:
    if isinstance(col.dtype, pd.CategoricalDtype):
        present = set(col.dropna().unique())
        return [c for c in col.cat.categories if c in present]
    values = col.dropna().unique().tolist()
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


# ---------------------------------------------------------------------------- baseline table
def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _pct(k: int, n: int, digits: int) -> str:
    return f"{k} ({100.0 * k / n:.{digits}f}%)" if n else f"{k} (-)"


def _is_normal(samples: list[np.ndarray], alpha: float) -> bool:
    for s in samples:
        if len(s) < 3 or np.ptp(s) == 0:
            return False
        if stats.shapiro(s).pvalue <= alpha:
            return False
    return True


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    ties = len(np.unique(np.concatenate([a, b]))) < len(a) + len(b)
    exact = len(a) < _MWU_EXACT_BELOW and len(b) < _MWU_EXACT_BELOW and not ties
    method = "exact" if exact else "asymptotic"
    return float(stats.mannwhitneyu(a, b, alternative="two-sided", method=method, use_continuity=True).pvalue)


def _numeric_test(samples: list[np.ndarray], normal: bool) -> tuple[float, str]:
    usable = [s for s in samples if len(s) > 0]
    if len(usable) < 2 or sum(len(s) for s in usable) <= len(usable):
        return float("nan"), ""
    if normal:
        if len(usable) == 2:
            return float(stats.ttest_ind(usable[0], usable[1], equal_var=False).pvalue), "Welch t-test"
        from statsmodels.stats.oneway import anova_oneway

        return float(anova_oneway(usable, use_var="unequal").pvalue), "Welch ANOVA"
    if np.ptp(np.concatenate(usable)) == 0:
        return float("nan"), ""
    if len(usable) == 2:
        return _mann_whitney(usable[0], usable[1]), "Mann-Whitney U"
    return float(stats.kruskal(*usable).pvalue), "Kruskal-Wallis"


def _categorical_test(table: np.ndarray, correction: bool) -> tuple[float, str]:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return float("nan"), ""
    expected = stats.contingency.expected_freq(table)
    small = int((expected < 5).sum())
    if table.shape == (2, 2) and small:
        return float(stats.fisher_exact(table).pvalue), "Fisher exact"
    res = stats.chi2_contingency(table, correction=correction)
    name = "chi-square" + (" (Yates)" if correction and table.shape == (2, 2) else "")
    if small:
        name += f" (expected count < 5 in {small} of {expected.size} cells)"
    return float(res.pvalue), name


def baseline_table(
    frame: pd.DataFrame,
    by: str,
    variables: Sequence[str] | None = None,
    types: Mapping[str, str] | None = None,
    *,
    digits: int = 1,
    overall: bool = True,
    correction: bool = False,
    normality_alpha: float = 0.05,
) -> pd.DataFrame:
    """Baseline characteristics by group with the test of each variable (see the module notes).

    Parameters
    ----------
    frame : DataFrame
        One row per patient.
    by : str
        Grouping column (e.g. HER2 status or the data split); rows where it is missing are
        left out.
    variables : sequence of str, optional
        Default: every column but ``by``.
    types : mapping of str to str, optional
        ``variable -> "numeric" | "normal" | "nonnormal" | "categorical"``; others inferred
        (:func:`infer_types`).
    digits : int, default=1
        Decimals of means, SDs, medians and percentages.
    overall : bool, default=True
        Add an ``overall`` column.
    correction : bool, default=False
        Yates' continuity correction for 2x2 chi-square tests.
    normality_alpha : float, default=0.05
        Shapiro-Wilk level below which a numeric variable is summarised as median [IQR].

    Returns
    -------
    DataFrame
        Columns ``variable, level``, one column per group (the group values as strings),
        ``overall``, ``p``, ``test``. The first row (``variable="n"``) counts the cases.
        Numeric variables get one row (``level`` "mean ± SD" or "median [IQR]"), categorical
        ones one row per level (p and test on the first), and a ``missing`` row when values
        are missing.

    Examples
    --------
    >>> df = pd.DataFrame({"her2": ["pos"] * 4 + ["neg"] * 4, "palpable": ["yes", "yes", "yes", "no"] * 2})
    >>> row = baseline_table(df, "her2").iloc[1]
    >>> row["level"], row["neg"], row["pos"], row["test"], float(row["p"])
    ('no', '1 (25.0%)', '1 (25.0%)', 'Fisher exact', 1.0)
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"baseline_table needs a DataFrame; got {type(frame).__name__}.")
    _check_columns(frame, [by], "baseline_table (by)")
    variables = [c for c in frame.columns if c != by] if variables is None else list(variables)
    _check_columns(frame, variables, "baseline_table (variables)")
    if by in variables:
        raise InputError(f"baseline_table: the grouping column '{by}' is also listed among the variables.")
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise param_error("baseline_table", "digits", "an int >= 0", digits)
    if not 0 < normality_alpha < 1:
        raise param_error("baseline_table", "normality_alpha", "a float in (0, 1)", normality_alpha)
    kinds = infer_types(frame, variables, types)
    data = frame.loc[frame[by].notna()]
    groups = _levels(data[by])
    if len(groups) < 2:
        raise InputError(f"baseline_table: the grouping column '{by}' has {len(groups)} group(s) "
                         f"({groups}); at least 2 are needed.")
    names = [str(g) for g in groups]
    if len(set(names)) < len(names) or {"variable", "level", "p", "test", "overall"} & set(names):
        raise InputError(f"baseline_table: group names {names} clash with each other or with the table's own "
                         "columns (variable, level, overall, p, test); recode the grouping column.")
    parts = [data.loc[data[by] == g] for g in groups] + ([data] if overall else [])
    cols = names + (["overall"] if overall else [])
    rows: list[dict[str, Any]] = [{"variable": "n", "level": "", **{c: str(len(d)) for c, d in zip(cols, parts)},
                                   "p": np.nan, "test": ""}]
    for v in variables:
        kind = kinds[v]
        if kind != "categorical":
            vals = [pd.to_numeric(d[v], errors="coerce") for d in parts]
            bad = data[v].notna() & pd.to_numeric(data[v], errors="coerce").isna()
            if bad.any():
                raise InputError(f"baseline_table: variable '{v}' is {kind} but holds non-numeric value(s) "
                                 f"{data.loc[bad, v].unique().tolist()[:5]}; declare it 'categorical' in types.")
            samples = [s.dropna().to_numpy(dtype=float) for s in vals]
            normal = kind == "normal" or (kind == "numeric" and _is_normal(samples[: len(groups)], normality_alpha))
            p, test = _numeric_test(samples[: len(groups)], normal)
            cells = {}
            for c, s in zip(cols, samples):
                if len(s) == 0:
                    cells[c] = "-"
                elif normal:
                    sd = float(np.std(s, ddof=1)) if len(s) > 1 else float("nan")
                    cells[c] = f"{_fmt(float(s.mean()), digits)} ± {_fmt(sd, digits)}"
                else:
                    q1, med, q3 = np.quantile(s, [0.25, 0.5, 0.75])
                    cells[c] = f"{_fmt(med, digits)} [{_fmt(q1, digits)}, {_fmt(q3, digits)}]"
            rows.append({"variable": v, "level": "mean ± SD" if normal else "median [IQR]", **cells, "p": p,
                         "test": test})
        else:
            levels = _levels(data[v])
            counts = np.array([[int((d[v] == lev).sum()) for d in parts] for lev in levels], dtype=int)
            totals = np.array([int(d[v].notna().sum()) for d in parts])
            p, test = _categorical_test(counts[:, : len(groups)], correction) if levels else (float("nan"), "")
            for i, lev in enumerate(levels):
                rows.append({"variable": v, "level": str(lev),
                             **{c: _pct(int(counts[i, j]), int(totals[j]), digits) for j, c in enumerate(cols)},
                             "p": p if i == 0 else np.nan, "test": test if i == 0 else ""})
            if not levels:
                rows.append({"variable": v, "level": "", **dict.fromkeys(cols, "-"), "p": np.nan, "test": ""})
        n_missing = [int(d[v].isna().sum()) for d in parts]
        if any(n_missing):
            rows.append({"variable": v, "level": "missing",
                         **{c: _pct(k, len(d), digits) for c, k, d in zip(cols, n_missing, parts)},
                         "p": np.nan, "test": ""})
    table = pd.DataFrame(rows, columns=["variable", "level", *cols, "p", "test"])
    dropped = int(frame[by].isna().sum())
    table.attrs["notes"] = [f"{dropped} row(s) with missing '{by}' left out"] if dropped else []
    return table


# ---------------------------------------------------------------------------- odds ratios
@dataclass
class OddsRatioTable:
    """Univariable and multivariable logistic regression results.

    Attributes
    ----------
    univariable, multivariable : DataFrame
        One row per numeric variable and per level of a categorical variable (the reference
        level included, OR 1): ``variable, level, reference, OR, ci_low, ci_high, p,
        p_overall`` (joint Wald p of the variable's levels), ``n`` (cases), ``note``.
        ``multivariable`` holds the variables of the final model.
    candidates : list of str
        Variables with univariable ``p_overall < p_enter``.
    selected : list of str
        Variables in the multivariable model.
    steps : DataFrame or None
        The stepwise path (:attr:`UnivariableMultivariableSelector.steps_`), None without stepwise.
    model : LogitFit or None
        The multivariable model.
    n, n_events : int
        Complete cases used, and events among them.
    outcome, event : str, Any
    p_enter : float
    stepwise : str or None
    notes : list of str
    """

    univariable: pd.DataFrame
    multivariable: pd.DataFrame
    candidates: list[str]
    selected: list[str]
    steps: pd.DataFrame | None
    model: LogitFit | None
    n: int
    n_events: int
    outcome: str
    event: Any
    p_enter: float
    stepwise: str | None
    notes: list[str] = field(default_factory=list)

    def combined(self) -> pd.DataFrame:
        """Univariable and multivariable columns side by side (``uni_*``, ``multi_*``), one row per level."""
        key = ["variable", "level"]
        uni = self.univariable[[*key, "reference", "OR", "ci_low", "ci_high", "p"]].rename(
            columns={c: f"uni_{c}" for c in ("OR", "ci_low", "ci_high", "p")})
        multi = self.multivariable[[*key, "OR", "ci_low", "ci_high", "p"]].rename(
            columns={c: f"multi_{c}" for c in ("OR", "ci_low", "ci_high", "p")})
        return uni.merge(multi, on=key, how="left")


_Levels = dict[str, tuple[Any, list[Any]]]  # categorical variable -> (reference level, other levels)


def _encode(data: pd.DataFrame, variables: Sequence[str], kinds: Mapping[str, str],
            reference: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, list[str]], _Levels]:
    """Design columns of each variable; categorical: one indicator per non-reference level."""
    columns: dict[str, pd.Series] = {}
    members: dict[str, list[str]] = {}
    levels_of: _Levels = {}
    for v in variables:
        col = data[v]
        if kinds[v] != "categorical":
            num = pd.to_numeric(col, errors="coerce")
            if num.isna().any():
                bad = col[num.isna()].unique().tolist()[:5]
                raise InputError(f"odds_ratio_table: variable '{v}' is numeric but holds non-numeric value(s) {bad}; "
                                 "declare it 'categorical' in types.")
            columns[v] = num.astype(float)
            members[v] = [v]
            continue
        levels = _levels(col)
        if v in reference:
            ref = reference[v]
            if ref not in levels:
                raise InputError(f"odds_ratio_table: reference level {ref!r} of '{v}' is not among its levels "
                                 f"{levels}.{nearest(str(ref), [str(x) for x in levels])}")
        else:
            ref = levels[0] if levels else None
        others = [lev for lev in levels if lev != ref]
        levels_of[v] = (ref, others)
        members[v] = []
        for lev in others:
            name = f"{v}={lev}"
            columns[name] = (col == lev).astype(float)
            members[v].append(name)
    return pd.DataFrame(columns, index=data.index), members, levels_of


def _rows(fit: LogitFit | None, variables: Sequence[str], members: Mapping[str, list[str]],
          levels_of: Mapping[str, tuple[Any, list[Any]]], conf_level: float, n: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if fit is None:
        return rows
    tab = fit.table(conf_level).set_index("feature")
    for v in variables:
        p_overall = fit.wald_p(members[v])
        if v in levels_of:
            ref, others = levels_of[v]
            rows.append({"variable": v, "level": str(ref), "reference": str(ref), "OR": 1.0, "ci_low": np.nan,
                         "ci_high": np.nan, "p": np.nan, "p_overall": p_overall, "n": n, "note": "reference"})
            entries = [(str(lev), f"{v}={lev}", str(ref)) for lev in others]
        else:
            entries = [("", v, "")]
        for level, column, ref_name in entries:
            r = tab.loc[column]
            rows.append({"variable": v, "level": level, "reference": ref_name, "OR": r["odds_ratio"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p": r["p_value"], "p_overall": p_overall,
                         "n": n, "note": r["note"]})
    return rows


def odds_ratio_table(
    frame: pd.DataFrame,
    outcome: str,
    variables: Sequence[str],
    types: Mapping[str, str] | None = None,
    p_enter: float = 0.05,
    stepwise: Literal["backward", "forward"] | None = "backward",
    *,
    event: Any = None,
    reference: Mapping[str, Any] | None = None,
    conf_level: float = 0.95,
    on_separation: Literal["firth", "l2", "drop"] = "firth",
) -> OddsRatioTable:
    """Univariable odds ratios of each variable and a multivariable model of those with p < ``p_enter``.

    Parameters
    ----------
    frame : DataFrame
        One row per patient.
    outcome : str
        Binary outcome column.
    variables : sequence of str
        Candidate predictors.
    types : mapping of str to str, optional
        ``variable -> "numeric" | "categorical"`` ("normal"/"nonnormal" count as numeric);
        others inferred (:func:`infer_types`).
    p_enter : float, default=0.05
        Univariable threshold for the multivariable model, and stepwise threshold to enter/stay
        (0.1 is a common, more lenient choice).
    stepwise : {"backward", "forward", None}, default="backward"
        ``None``: the multivariable model holds all candidates.
    event : optional
        Outcome value that is the event (coded 1); default the larger of the two values.
    reference : mapping of str to level, optional
        Reference level of categorical variables; default the first (sorted, or the
        categorical dtype's order).
    conf_level : float, default=0.95
    on_separation : {"firth", "l2", "drop"}, default="firth"
        Passed to :func:`her2dlr.evaluate.logistic.fit_logit`.

    Returns
    -------
    OddsRatioTable
    """
    variables = check_regression_inputs("odds_ratio_table", frame, outcome, variables, p_enter)
    if stepwise not in ("backward", "forward", None):
        raise param_error("odds_ratio_table", "stepwise", "one of 'backward', 'forward', None", stepwise)
    check_choice("odds_ratio_table", "on_separation", on_separation, SEPARATION_FALLBACKS)
    if not 0 < conf_level < 1:
        raise param_error("odds_ratio_table", "conf_level", "a float in (0, 1)", conf_level)
    kinds = infer_types(frame, variables, types)
    notes: list[str] = []
    data = frame[[outcome, *variables]].dropna()
    if len(data) < len(frame):
        lost = {v: int(frame[v].isna().sum()) for v in [outcome, *variables] if frame[v].isna().any()}
        notes.append(f"complete-case analysis: {len(frame) - len(data)} of {len(frame)} row(s) left out "
                     f"(missing values per column: {lost})")
    values = _levels(data[outcome])
    if len(values) != 2:
        raise InputError(f"odds_ratio_table: outcome '{outcome}' must take two values in the complete cases; "
                         f"got {len(values)}: {values[:10]}.")
    if event is None:
        event = values[1]
    elif event not in values:
        raise InputError(f"odds_ratio_table: event {event!r} is not a value of '{outcome}' ({values}).")
    y = (data[outcome] == event).to_numpy(dtype=float)
    X, members, levels_of = _encode(data, variables, kinds, dict(reference or {}))
    n = len(y)

    uni_rows: list[dict[str, Any]] = []
    p_overall: dict[str, float] = {}
    for v in variables:
        if not members[v]:
            notes.append(f"'{v}' takes a single value in the complete cases; left out")
            p_overall[v] = float("nan")
            continue
        fit = fit_logit(X[members[v]], y, on_separation=on_separation)
        p_overall[v] = fit.wald_p(members[v])
        uni_rows += _rows(fit, [v], members, levels_of, conf_level, n)
        notes += [f"univariable '{v}': {note}" for note in fit.notes]
    candidates = [v for v in variables if p_overall[v] < p_enter]

    steps: pd.DataFrame | None = None
    model: LogitFit | None = None
    selected: list[str] = []
    if not candidates:
        notes.append(f"no variable had univariable p < {p_enter}; no multivariable model")
    elif stepwise is None:
        model = fit_logit(X[[c for v in candidates for c in members[v]]], y, on_separation=on_separation)
        selected = list(candidates)
    else:
        cols = [c for v in candidates for c in members[v]]
        sel = UnivariableMultivariableSelector(
            alpha_uni=p_enter, alpha_multi=p_enter, direction=stepwise, criterion="p",
            groups={c: v for v in candidates for c in members[v]}, on_separation=on_separation,
            fallback="none", conf_level=conf_level,
        ).fit(X[cols], y)
        selected = [v for v in candidates if v in sel.selected_groups_]
        model, steps = sel.multivariable_fit_, sel.steps_
        notes += [n_ for n_ in sel.notes_ if not n_.startswith("univariable")]
    if model is not None:
        notes += [f"multivariable model: {note}" for note in model.notes]
    multi_rows = _rows(model, selected, members, levels_of, conf_level, n)
    return OddsRatioTable(
        univariable=pd.DataFrame(uni_rows, columns=_OR_COLUMNS),
        multivariable=pd.DataFrame(multi_rows, columns=_OR_COLUMNS),
        candidates=candidates, selected=selected, steps=steps, model=model, n=n, n_events=int(y.sum()),
        outcome=outcome, event=event, p_enter=float(p_enter), stepwise=stepwise, notes=list(dict.fromkeys(notes)),
    )
