"""Input checks and design matrices shared by the survival modules.

Every check raises :class:`her2dlr.errors.InputError` naming the column and the first
offending rows, so a user can find the bad cell in their table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError, nearest

__all__ = [
    "DesignSpec",
    "check_columns",
    "group_levels",
    "make_design",
    "rows_text",
    "survival_arrays",
]

#: How many offending row labels an error message lists before "and N more".
_MAX_ROWS_SHOWN = 5


def rows_text(index: Iterable[Any]) -> str:
    """Return ``"rows 3, 7, 9"`` (at most five labels, then ``"and N more"``)."""
    labels = list(index)
    shown = ", ".join(str(v) for v in labels[:_MAX_ROWS_SHOWN])
    more = len(labels) - _MAX_ROWS_SHOWN
    word = "row" if len(labels) == 1 else "rows"
    return f"{word} {shown}" + (f" and {more} more" if more > 0 else "")


def check_columns(df: pd.DataFrame, columns: Iterable[str | None], *, role: str = "column") -> None:
    """Raise :class:`InputError` if a named column is missing from ``df``.

    Parameters
    ----------
    df : DataFrame
        The table.
    columns : iterable of str or None
        Column names; ``None`` entries are skipped.
    role : str
        What the column is for, used in the message (``"time column"``).
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"Expected a pandas DataFrame, got {type(df).__name__}.")
    for col in columns:
        if col is None:
            continue
        if col not in df.columns:
            raise InputError(
                f"The {role} '{col}' is not in the table. Columns: "
                f"{', '.join(map(str, df.columns))}.{nearest(str(col), map(str, df.columns))}"
            )


def survival_arrays(
    df: pd.DataFrame,
    time: str,
    event: str,
    *,
    require_events: bool = False,
    purpose: str = "this analysis",
) -> tuple[np.ndarray, np.ndarray]:
    """Check and return the follow-up times and event indicators.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
        The cohort table.
    time : str
        Column of follow-up times (numeric, >= 0, no missing values).
    event : str
        Column of event indicators: 1/0, True/False (1 = event observed, 0 = censored).
    require_events : bool
        Raise when no case has an event (all censored).
    purpose : str
        Named in the all-censored message ("a log-rank test").

    Returns
    -------
    durations : ndarray of shape (n_cases,), float
    event_observed : ndarray of shape (n_cases,), bool

    Raises
    ------
    InputError
        Missing, non-numeric or negative times; missing events or events other than 0/1;
        no event at all when ``require_events``.
    """
    check_columns(df, [time], role="time column")
    check_columns(df, [event], role="event column")
    if len(df) == 0:
        raise InputError("The table has no rows; survival analysis needs at least one case.")
    t_raw = df[time]
    t = pd.to_numeric(t_raw, errors="coerce")
    bad = t.isna() & t_raw.notna()
    if bad.any():
        raise InputError(
            f"Time column '{time}' has non-numeric values at {rows_text(df.index[bad])} "
            f"(e.g. {t_raw[bad].iloc[0]!r}); expected follow-up times as numbers."
        )
    if t.isna().any():
        raise InputError(
            f"Time column '{time}' has {int(t.isna().sum())} missing values at "
            f"{rows_text(df.index[t.isna()])}; drop or complete these cases first."
        )
    if (t < 0).any():
        neg = t < 0
        raise InputError(
            f"Time column '{time}' has negative follow-up times at {rows_text(df.index[neg])} "
            f"(e.g. {t[neg].iloc[0]}); times must be >= 0."
        )
    if not np.isfinite(t.to_numpy(dtype=float)).all():
        inf = ~np.isfinite(t.to_numpy(dtype=float))
        raise InputError(f"Time column '{time}' has infinite values at {rows_text(df.index[inf])}.")
    e_raw = df[event]
    if e_raw.isna().any():
        raise InputError(
            f"Event column '{event}' has {int(e_raw.isna().sum())} missing values at "
            f"{rows_text(df.index[e_raw.isna()])}; expected 1 (event) or 0 (censored)."
        )
    if e_raw.dtype == bool:
        e = e_raw.to_numpy(dtype=bool)
    else:
        e_num = pd.to_numeric(e_raw, errors="coerce")
        bad = e_num.isna() | ~e_num.isin([0, 1])
        if bad.any():
            values = sorted({str(v) for v in e_raw[bad]})[:5]
            raise InputError(
                f"Event column '{event}' must hold 1 (event) or 0 (censored); got "
                f"{', '.join(values)} at {rows_text(df.index[bad])}."
            )
        e = e_num.to_numpy(dtype=float) == 1
    if require_events and not e.any():
        raise InputError(
            f"Event column '{event}' has no events: all {len(e)} cases are censored, so "
            f"{purpose} cannot be computed."
        )
    return t.to_numpy(dtype=float), e


def group_levels(values: pd.Series, order: Sequence[Any] | None = None) -> list[Any]:
    """Levels of a grouping column in display order.

    A pandas ``Categorical`` keeps its category order (levels with no case dropped);
    otherwise levels are sorted (numbers numerically, anything else as text), which is
    also R's default factor order. ``order`` overrides both.
    """
    present = pd.unique(values.dropna())
    if order is not None:
        missing = [v for v in present if v not in list(order)]
        if missing:
            raise InputError(
                f"Column '{values.name}' has values {missing!r} that are not in the given order "
                f"{list(order)!r}."
            )
        return [v for v in order if v in set(present)]
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [c for c in values.cat.categories if c in set(present)]
    try:
        return sorted(present.tolist())
    except TypeError:
        return sorted(present.tolist(), key=str)


@dataclass
class DesignSpec:
    """How covariate columns become numeric design columns (fitted once, reused on new data).

    Attributes
    ----------
    terms : dict
        Term (original column name) -> list of design column names. A numeric column maps
        to itself; a categorical one to ``"name[level]"`` for each non-reference level.
    levels : dict
        Categorical term -> its levels, the first being the reference.
    """

    terms: dict[str, list[str]] = field(default_factory=dict)
    levels: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """All design column names, in term order."""
        return [c for cols in self.terms.values() for c in cols]

    def subset(self, terms: Iterable[str]) -> DesignSpec:
        """The spec restricted to ``terms`` (order kept from this spec)."""
        keep = set(terms)
        return DesignSpec(
            terms={t: list(c) for t, c in self.terms.items() if t in keep},
            levels={t: list(lv) for t, lv in self.levels.items() if t in keep},
        )

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Build the design matrix of ``df`` with the stored levels.

        Raises
        ------
        InputError
            Missing column, missing values, non-numeric values or an unseen level.
        """
        check_columns(df, self.terms, role="covariate")
        out: dict[str, np.ndarray] = {}
        for term, cols in self.terms.items():
            s = df[term]
            if s.isna().any():
                raise InputError(
                    f"Covariate '{term}' has {int(s.isna().sum())} missing values at "
                    f"{rows_text(df.index[s.isna()])}; impute or drop these cases first."
                )
            if term in self.levels:
                levels = self.levels[term]
                unseen = ~s.isin(levels)
                if unseen.any():
                    raise InputError(
                        f"Covariate '{term}' has level {s[unseen].iloc[0]!r} at "
                        f"{rows_text(df.index[unseen])} that was not seen when the model was "
                        f"fitted (levels: {levels!r})."
                    )
                for level, col in zip(levels[1:], cols):
                    out[col] = (s == level).to_numpy(dtype=float)
            else:
                v = pd.to_numeric(s, errors="coerce") if s.dtype != bool else s.astype(float)
                if v.isna().any():
                    raise InputError(
                        f"Covariate '{term}' has non-numeric values at {rows_text(df.index[v.isna()])} "
                        f"(e.g. {s[v.isna()].iloc[0]!r}); list it under 'categorical' if it is a "
                        f"category."
                    )
                out[cols[0]] = v.to_numpy(dtype=float)
        return pd.DataFrame(out, index=df.index, columns=self.columns)


def _is_categorical(s: pd.Series) -> bool:
    return bool(
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(s.dtype)
        or pd.api.types.is_string_dtype(s.dtype)
    )


def make_design(
    df: pd.DataFrame,
    covariates: Sequence[str],
    *,
    categorical: Iterable[str] = (),
    reference: Mapping[str, Any] | None = None,
    allow_constant: bool = False,
) -> tuple[pd.DataFrame, DesignSpec]:
    """One-hot encode categorical covariates (first level = reference) and check the rest.

    Parameters
    ----------
    df : DataFrame of shape (n_cases, n_columns)
    covariates : sequence of str
        Columns to use. Text, bool-free object and ``Categorical`` columns are categorical;
        numeric and bool columns are used as numbers unless listed in ``categorical``.
    categorical : iterable of str
        Numeric columns to treat as categories (e.g. a grade coded 1/2/3).
    reference : mapping, optional
        Column -> reference level (default: the first level, see :func:`group_levels`).
    allow_constant : bool
        Keep a covariate that takes a single value (default: raise :class:`InputError`).

    Returns
    -------
    X : DataFrame of shape (n_cases, n_design_columns)
    spec : DesignSpec
    """
    covariates = list(dict.fromkeys(covariates))
    check_columns(df, covariates, role="covariate")
    categorical = set(categorical)
    reference = dict(reference or {})
    unknown = categorical.difference(covariates)
    if unknown:
        raise InputError(
            f"Categorical column(s) {sorted(unknown)!r} are not among the covariates {covariates!r}."
        )
    spec = DesignSpec()
    for term in covariates:
        s = df[term]
        if s.isna().any():
            raise InputError(
                f"Covariate '{term}' has {int(s.isna().sum())} missing values at "
                f"{rows_text(df.index[s.isna()])}; impute or drop these cases first."
            )
        if term in categorical or _is_categorical(s):
            levels = group_levels(s)
            if term in reference:
                ref = reference[term]
                if ref not in levels:
                    raise InputError(
                        f"Reference level {ref!r} of covariate '{term}' does not occur; levels: "
                        f"{levels!r}.{nearest(str(ref), map(str, levels))}"
                    )
                levels = [ref] + [lv for lv in levels if lv != ref]
            if len(levels) < 2 and not allow_constant:
                raise InputError(
                    f"Covariate '{term}' is constant (every case is {levels[0]!r}); it carries no "
                    "information and makes the model singular: remove it."
                )
            spec.levels[term] = levels
            spec.terms[term] = [f"{term}[{lv}]" for lv in levels[1:]]
        else:
            spec.terms[term] = [term]
    X = spec.transform(df)
    if not allow_constant:
        for term, cols in spec.terms.items():
            if term in spec.levels:
                continue
            v = X[cols[0]]
            if v.nunique() < 2:
                raise InputError(
                    f"Covariate '{term}' is constant (every case is {v.iloc[0]:g}); it carries no "
                    "information and makes the model singular: remove it."
                )
    return X, spec
