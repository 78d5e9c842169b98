"""The clinical model's inputs: clinical columns mapped to numbers, then seed 002's selection.

Seed 002 (Hu et al.): "univariable and stepwise multivariable analyses were performed on all
clinical features to identify those of significance"; the selected clinical variables then
enter the combined model's logistic regression. Three pieces, all scikit-learn estimators so
that they are fitted inside each training fold only:

:class:`ClinicalEncoder`
    Table of clinical columns -> numbers. ``numeric`` columns are median-imputed (with a
    ``<col>=<missing>`` indicator when values were missing in training); ``ordinal`` columns
    (declared orders such as BI-RADS 2 < 3 < 4a < 4b < 4c < 5) become their rank;
    ``categorical`` columns are one-hot encoded (``Shape=irregular``); ``multi`` columns
    (several values per cell joined by a separator, "palpable&skin retraction") get one binary
    column per value seen in training (``Signs:palpable``).
:class:`UnivariableMultivariableSelector` (in :mod:`her2dlr.evaluate.logistic`)
    Univariable logistic regression of every encoded variable (OR, 95% CI, Wald p), keep those
    with p < ``alpha_uni``, then stepwise multivariable logistic regression keeping p <
    ``alpha_multi`` (or by AIC).
:func:`clinical_pipeline`
    ``Pipeline(encode, select[, classifier])`` with pandas output, ready for cross-validation.

Naming of encoded columns (``<missing>`` and ``<other>`` are in angle brackets so that they
never collide with a real level)::

    Age                  numeric or ordinal value (imputed)
    Age=<missing>        1 when the value was missing
    Shape=oval           categorical level
    Shape=<other>        levels rarer than ``min_frequency`` in training, and unseen values
    Signs:palpable       multi-valued column holds this value
    Signs:<other>        holds a value rarer than ``min_frequency`` (or unseen)
    Signs:<missing>      the cell was missing
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from her2dlr.checks import check_choice, param_error
from her2dlr.cohort.clinical import infer_clinical_types
from her2dlr.errors import InputError, nearest
from her2dlr.evaluate.logistic import (
    UnivariableMultivariableSelector,
    feature_source,
)

__all__ = [
    "CLINICAL_TYPES",
    "MISSING",
    "OTHER",
    "ClinicalEncoder",
    "UnivariableMultivariableSelector",  # re-exported from her2dlr.evaluate.logistic
    "clinical_pipeline",
    "feature_source",  # re-exported from her2dlr.evaluate.logistic
]

#: Column types the encoder understands (the manifest's three plus ``ordinal``).
CLINICAL_TYPES = ("numeric", "categorical", "multi", "ordinal")
#: Level name of missing values in encoded column names.
MISSING = "<missing>"
#: Level name of pooled rare and unseen values in encoded column names.
OTHER = "<other>"
_DROP = (None, "most_frequent", "first")


# =============================================================================== encoding
def _is_missing(value: object, tokens: frozenset[str]) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    if isinstance(value, str):
        text = value.strip().casefold()
        return text == "" or text in tokens
    return False


def _key(value: object) -> str:
    """Matching key of a level: stripped, case-folded text; 5.0 and 5 and "5" are one level."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip().casefold()


def _display(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    return str(value).strip()


def _frequency_threshold(min_frequency: float | None, n: int) -> float:
    if min_frequency is None:
        return 0.0
    return float(min_frequency) if isinstance(min_frequency, (int, np.integer)) else float(min_frequency) * n


def _order_levels(counts: Counter[str]) -> list[str]:
    """Most frequent first, ties alphabetical (deterministic output order)."""
    return sorted(counts, key=lambda k: (-counts[k], k))


@dataclass
class _Unseen:
    """Counts of values met at transform time that the fitted encoding does not know."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    def add(self, column: str, value: str, encoded_as: str) -> None:
        self.counts[(column, value, encoded_as)] += 1

    def frame(self) -> pd.DataFrame:
        rows = [{"column": c, "value": v, "count": n, "encoded_as": e} for (c, v, e), n in self.counts.items()]
        return pd.DataFrame(rows, columns=["column", "value", "count", "encoded_as"])


@dataclass
class _NumericEncoding:
    """``numeric`` and ``ordinal`` columns: one value column, imputed, plus an optional indicator.

    ``scores`` maps level keys to numbers for ordinal columns (None for numeric ones).
    """

    column: str
    median: float
    indicator: bool
    scores: dict[str, float] | None = None
    kind: str = "numeric"

    @property
    def names(self) -> list[str]:
        return [self.column] + ([f"{self.column}={MISSING}"] if self.indicator else [])

    def values(self, series: pd.Series, tokens: frozenset[str], unseen: _Unseen | None) -> tuple[np.ndarray, np.ndarray]:
        """Raw numbers (NaN where missing or unseen) and the missing mask."""
        missing = series.map(lambda v: _is_missing(v, tokens)).to_numpy(dtype=bool)
        out = np.full(len(series), np.nan)
        bad: dict[Any, object] = {}
        for i, (label, v) in enumerate(series.items()):
            if missing[i]:
                continue
            if self.scores is not None:
                score = self.scores.get(_key(v))
                if score is None and unseen is None:
                    bad[label] = v
                elif score is None:
                    unseen.add(self.column, _display(v), "training median")  # type: ignore[union-attr]
                else:
                    out[i] = score
                continue
            number = _to_float(v)
            if number is None:
                bad[label] = v
            else:
                out[i] = number
        if bad:
            rows, vals = list(bad)[:5], sorted({_display(v) for v in bad.values()})[:5]
            if self.scores is not None:
                raise InputError(
                    f"Ordinal column '{self.column}' holds value(s) {vals} (rows {rows}) that are not in its declared "
                    f"order {list(self.scores)}. Add them to the order, or list them in missing_values."
                )
            raise InputError(
                f"Numeric clinical column '{self.column}' holds text {vals} in rows {rows}. Add the text to "
                f"missing_values, or declare the column 'categorical'."
            )
        return out, missing

    def encode(self, series: pd.Series, tokens: frozenset[str], unseen: _Unseen) -> np.ndarray:
        raw, missing = self.values(series, tokens, unseen)
        value = np.where(np.isnan(raw), self.median, raw)
        return np.column_stack([value, missing.astype(float)]) if self.indicator else value[:, None]


def _to_float(value: object) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError:
        return None


@dataclass
class _LevelEncoding:
    """``categorical`` (one level per cell) and ``multi`` (several per cell) columns.

    ``levels`` are the keys with their own column, in output order; ``display`` their spelling in
    column names; ``other`` whether rare training values were pooled; ``missing`` whether a
    missing-value indicator exists. ``separator`` is None for categorical columns.
    """

    column: str
    levels: list[str]
    display: dict[str, str]
    pooled: list[str]
    other: bool
    missing: bool
    separator: str | None = None
    reference: str | None = None

    @property
    def kind(self) -> str:
        return "categorical" if self.separator is None else "multi"

    @property
    def _joiner(self) -> str:
        return "=" if self.separator is None else ":"

    @property
    def names(self) -> list[str]:
        j = self._joiner
        names = [f"{self.column}{j}{self.display[k]}" for k in self.levels]
        return names + ([f"{self.column}{j}{OTHER}"] if self.other else []) + (
            [f"{self.column}{j}{MISSING}"] if self.missing else []
        )

    def cell_values(self, value: object) -> list[tuple[str, str]]:
        """``(key, spelling)`` of each value in a present cell."""
        if self.separator is None:
            return [(_key(value), _display(value))]
        parts = [p.strip() for p in str(value).split(self.separator)]
        return [(_key(p), p) for p in parts if p]

    def encode(self, series: pd.Series, tokens: frozenset[str], unseen: _Unseen) -> np.ndarray:
        index = {k: i for i, k in enumerate(self.levels)}
        n_levels = len(self.levels)
        other_col = n_levels if self.other else None
        missing_col = n_levels + int(self.other) if self.missing else None
        out = np.zeros((len(series), n_levels + int(self.other) + int(self.missing)))
        known = set(self.pooled) | ({self.reference} if self.reference is not None else set())
        for i, v in enumerate(series.tolist()):
            if _is_missing(v, tokens):
                if missing_col is not None:
                    out[i, missing_col] = 1.0
                continue
            for key, spelling in self.cell_values(v):
                if key in index:
                    out[i, index[key]] = 1.0
                elif other_col is not None:
                    out[i, other_col] = 1.0
                    if key not in known:
                        unseen.add(self.column, spelling, OTHER)
                elif key not in known:
                    unseen.add(self.column, spelling, "all zeros")
        return out


class ClinicalEncoder(TransformerMixin, BaseEstimator):
    """Map clinical columns to numbers, learning every statistic from the training cases only.

    Parameters
    ----------
    types : dict, optional
        ``column -> "numeric" | "categorical" | "multi" | "ordinal"`` (a manifest's
        ``clinical_types``). Only these columns are encoded, in this order; other columns of
        ``X`` are ignored. None: every column of ``X``, typed by
        :func:`her2dlr.cohort.clinical.infer_clinical_types`.
    ordinal : dict, optional
        ``column -> order`` for ordinal columns: a sequence of levels, lowest first (encoded
        0, 1, 2, ...) or a mapping ``level -> score``. Levels are matched as stripped,
        case-insensitive text, so BI-RADS ``5`` and ``"5"`` are one level. A column listed here
        is ordinal whatever ``types`` says (unless it is ``multi``).
    separator : str or dict
        Separator of values in ``multi`` cells; a dict gives one per column (default ``"&"``).
    min_frequency : int, float or None
        Levels (categorical) or values (multi) held by fewer training cases than this (an int
        count, or a float fraction of the training cases) are pooled into one ``<other>``
        column. None keeps every level. Default 5: rarer levels mostly cause separation in the
        logistic regressions that follow.
    drop : {None, "most_frequent", "first"}
        Reference coding of categorical columns: None keeps every level (full one-hot; the
        selector handles the resulting collinearity); ``"most_frequent"`` or ``"first"``
        (alphabetically) drops that level's column, so ORs are against it.
    reference : dict, optional
        ``column -> level`` overriding the dropped reference level for some columns.
    add_indicator : bool
        Add a ``<col>=<missing>`` (``<col>:<missing>`` for multi) column for every column with
        missing values in training. Without it a missing cell gives the training median
        (numeric, ordinal) or all zeros (categorical, multi); so does a missing cell at
        transform time in a column that had no missing values in training.
    missing_values : sequence of str, optional
        Cell texts read as missing (stripped, case-insensitive), e.g. ``"not available"``; empty
        text is always missing. None: only real missing values (a manifest is already cleaned).

    Attributes
    ----------
    types_ : dict
        The type used for every encoded column.
    medians_ : dict
        ``column -> training median`` of numeric and ordinal columns.
    ranges_ : dict
        ``column -> (min, max)`` of the training values of numeric columns (a new case outside
        it is extrapolation, which prediction reports).
    levels_ : dict
        ``column -> levels (or values) with their own output column``, as spelled in the names.
    pooled_ : dict
        ``column -> training levels pooled into <other>``.
    reference_ : dict
        ``column -> dropped reference level`` of categorical columns (with ``drop`` or
        ``reference``).
    feature_names_out_ : ndarray of str
    feature_sources_ : dict
        ``encoded name -> original column``.
    unseen_ : DataFrame
        Values met by the latest :meth:`transform` that were never seen in training (columns
        ``column, value, count, encoded_as``). They never raise: an unseen categorical or multi
        value goes to the ``<other>`` column when the column has one, else it gives all zeros
        (which, with ``drop``, is the reference level's coding); an unseen ordinal level gets
        the training median.
    notes_ : list of str
        Degenerate columns met in fitting (e.g. all missing), in words.

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"Age": [40, None, 60, 50], "Shape": ["oval", "irregular", "oval", "round"],
    ...                       "Signs": ["no", "palpable&skin retraction", "palpable", None]})
    >>> enc = ClinicalEncoder({"Age": "numeric", "Shape": "categorical", "Signs": "multi"}, min_frequency=None)
    >>> list(enc.fit(train).get_feature_names_out())  # doctest: +NORMALIZE_WHITESPACE
    ['Age', 'Age=<missing>', 'Shape=oval', 'Shape=irregular', 'Shape=round',
     'Signs:palpable', 'Signs:no', 'Signs:skin retraction', 'Signs:<missing>']
    >>> enc.transform(pd.DataFrame({"Age": [None], "Shape": ["lobulated"], "Signs": ["Palpable"]})).tolist()
    [[50.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    >>> enc.unseen_.to_dict("records")
    [{'column': 'Shape', 'value': 'lobulated', 'count': 1, 'encoded_as': 'all zeros'}]
    """

    _multiclass = True  # never reads the label: any number of classes

    def __init__(
        self,
        types: Mapping[str, str] | None = None,
        *,
        ordinal: Mapping[str, Sequence[Any] | Mapping[Any, float]] | None = None,
        separator: str | Mapping[str, str] = "&",
        min_frequency: float | None = 5,
        drop: Literal["most_frequent", "first"] | None = None,
        reference: Mapping[str, Any] | None = None,
        add_indicator: bool = True,
        missing_values: Sequence[str] | None = None,
    ) -> None:
        self.types = types
        self.ordinal = ordinal
        self.separator = separator
        self.min_frequency = min_frequency
        self.drop = drop
        self.reference = reference
        self.add_indicator = add_indicator
        self.missing_values = missing_values

    # ------------------------------------------------------------------ checks
    def _tokens(self) -> frozenset[str]:
        return frozenset(str(t).strip().casefold() for t in (self.missing_values or ()))

    def _check_params(self) -> None:
        check_choice(self, "drop", self.drop, _DROP)
        if self.add_indicator not in (True, False):
            raise param_error(self, "add_indicator", "a bool", self.add_indicator)
        mf = self.min_frequency
        if mf is not None and (
            isinstance(mf, bool) or not isinstance(mf, (int, float, np.integer, np.floating)) or mf < 0
            or (isinstance(mf, (float, np.floating)) and mf >= 1)
        ):
            raise param_error(self, "min_frequency", "None, an int >= 0 (a count) or a float in [0, 1) (a fraction "
                              "of the training cases)", mf)

    def _resolve_types(self, X: pd.DataFrame) -> dict[str, str]:
        if self.types is None:
            tokens = self._tokens()
            cleaned = X.set_axis([str(c) for c in X.columns], axis=1)
            cleaned = cleaned.apply(lambda s: s.map(lambda v: pd.NA if _is_missing(v, tokens) else v))
            _, inferred = infer_clinical_types(
                cleaned, list(cleaned.columns), separator=self.separator if isinstance(self.separator, str) else "&",
                source="the training table",
            )
            types = dict(inferred)
        else:
            types = {str(k): str(v) for k, v in self.types.items()}
        for col in self.ordinal or {}:
            if col not in types and self.types is not None:
                raise InputError(
                    f"Ordinal column '{col}' of ClinicalEncoder is not among the clinical columns {list(types)}."
                    f"{nearest(col, types)}"
                )
            if types.get(col) == "multi":
                raise InputError(f"Column '{col}' is declared 'multi' and cannot also be ordinal.")
            types[col] = "ordinal"
        for col, kind in types.items():
            if kind not in CLINICAL_TYPES:
                raise InputError(
                    f"The type of clinical column '{col}' must be one of {CLINICAL_TYPES}. Got {kind!r} instead."
                    f"{nearest(kind, CLINICAL_TYPES)}"
                )
            if kind == "ordinal" and col not in (self.ordinal or {}):
                raise InputError(
                    f"Clinical column '{col}' is typed 'ordinal' but has no order: pass ordinal={{'{col}': [lowest, "
                    "..., highest]}."
                )
        return types

    @staticmethod
    def _frame(X: Any, columns: Sequence[str], what: str) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise InputError(
                f"ClinicalEncoder.{what} needs a DataFrame with the clinical columns by name; got {type(X).__name__}."
            )
        names = [str(c) for c in X.columns]
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(
                f"Clinical column '{missing[0]}' is not in the table given to ClinicalEncoder.{what}. Columns: "
                f"{names}.{nearest(missing[0], names)}"
            )
        return X.set_axis(names, axis=1)

    def _separator_of(self, column: str) -> str:
        if isinstance(self.separator, str):
            return self.separator
        return str(self.separator.get(column, "&"))

    # ------------------------------------------------------------------ fitting per type
    def _fit_numeric(self, col: str, series: pd.Series, tokens: frozenset[str]) -> _NumericEncoding:
        scores = None
        if self.types_[col] == "ordinal":
            order = self.ordinal[col]  # type: ignore[index]
            pairs = order.items() if isinstance(order, Mapping) else ((lvl, i) for i, lvl in enumerate(order))
            scores = {_key(k): float(v) for k, v in pairs}
        probe = _NumericEncoding(col, 0.0, False, scores, kind=self.types_[col])
        raw, missing = probe.values(series, tokens, unseen=None)
        if np.isnan(raw).all():
            self.notes_.append(f"'{col}' is missing in every training case; encoded as the constant 0.")
            median = 0.0
        else:
            median = float(np.nanmedian(raw))
        indicator = bool(self.add_indicator and missing.any())
        return _NumericEncoding(col, median, indicator, scores, kind=self.types_[col])

    def _fit_levels(self, col: str, series: pd.Series, tokens: frozenset[str]) -> _LevelEncoding:
        kind = self.types_[col]
        sep = self._separator_of(col) if kind == "multi" else None
        probe = _LevelEncoding(col, [], {}, [], False, False, separator=sep)
        counts: Counter[str] = Counter()
        spellings: dict[str, Counter[str]] = {}
        n_missing = 0
        for v in series.tolist():
            if _is_missing(v, tokens):
                n_missing += 1
                continue
            for key in dict(probe.cell_values(v)):  # a value counted once per case
                counts[key] += 1
            for key, spelling in probe.cell_values(v):
                spellings.setdefault(key, Counter())[spelling] += 1
        threshold = _frequency_threshold(self.min_frequency, len(series))
        kept = [k for k in _order_levels(counts) if counts[k] >= threshold]
        pooled = sorted(k for k in counts if counts[k] < threshold)
        if not counts:
            self.notes_.append(f"'{col}' is missing in every training case; it has no level columns.")
        display = {k: max(spellings[k], key=spellings[k].__getitem__) for k in counts}  # ties: first seen
        ref = self._reference_level(col, kept, display) if kind == "categorical" and kept else None
        if ref is not None:
            kept.remove(ref)
        return _LevelEncoding(col, kept, display, pooled, other=bool(pooled), missing=bool(self.add_indicator and n_missing),
                              separator=sep, reference=ref)

    def _reference_level(self, col: str, kept: list[str], display: dict[str, str]) -> str | None:
        if self.reference and col in self.reference:
            ref = _key(self.reference[col])
            if ref not in kept:
                options = [display[k] for k in kept]
                raise InputError(
                    f"The reference level {self.reference[col]!r} of column '{col}' is not a level with its own column "
                    f"in training: {options}.{nearest(str(self.reference[col]), options)}"
                )
            return ref
        if self.drop is None:
            return None
        return kept[0] if self.drop == "most_frequent" else min(kept)

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X: pd.DataFrame, y: Any = None) -> ClinicalEncoder:
        """Learn medians, levels and values from the training cases.

        Parameters
        ----------
        X : DataFrame of shape (n_cases, n_columns)
            Must hold every column of ``types``; other columns are ignored.
        y : ignored

        Returns
        -------
        self
        """
        self._check_params()
        if not isinstance(X, pd.DataFrame):
            self._frame(X, [], "fit")
        self.types_ = self._resolve_types(X)
        X = self._frame(X, list(self.types_), "fit")
        if len(X) == 0:
            raise InputError("ClinicalEncoder.fit got a table with no rows.")
        tokens = self._tokens()
        self.notes_: list[str] = []
        encodings: dict[str, _NumericEncoding | _LevelEncoding] = {}
        for col, kind in self.types_.items():
            if kind in ("numeric", "ordinal"):
                encodings[col] = self._fit_numeric(col, X[col], tokens)
            else:
                encodings[col] = self._fit_levels(col, X[col], tokens)
        self.encodings_ = encodings
        self.ranges_ = {}
        for col, enc in encodings.items():
            if isinstance(enc, _NumericEncoding) and enc.kind == "numeric":
                raw, _ = enc.values(X[col], tokens, None)
                if not np.isnan(raw).all():
                    self.ranges_[col] = (float(np.nanmin(raw)), float(np.nanmax(raw)))
        names = [n for enc in encodings.values() for n in enc.names]
        sources = {n: col for col, enc in encodings.items() for n in enc.names}
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            raise InputError(
                f"Encoded column name '{dup[0]}' arises twice (from columns "
                f"{sorted({c for c, e in encodings.items() if dup[0] in e.names})}); rename a clinical column."
            )
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.feature_sources_ = sources
        self.feature_names_in_ = np.asarray(list(self.types_), dtype=object)
        self.n_features_in_ = len(self.types_)
        self.medians_ = {c: e.median for c, e in encodings.items() if isinstance(e, _NumericEncoding)}
        self.levels_ = {c: [e.display[k] for k in e.levels] for c, e in encodings.items() if isinstance(e, _LevelEncoding)}
        self.pooled_ = {c: [e.display[k] for k in e.pooled] for c, e in encodings.items() if isinstance(e, _LevelEncoding)}
        self.reference_ = {c: e.display[e.reference] for c, e in encodings.items()
                           if isinstance(e, _LevelEncoding) and e.reference is not None}
        self.unseen_ = _Unseen().frame()
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Encode cases with the fitted state; never fails on unseen values (see ``unseen_``).

        Parameters
        ----------
        X : DataFrame of shape (n_cases, n_columns)

        Returns
        -------
        ndarray of shape (n_cases, n_features_out)
            A DataFrame with :meth:`get_feature_names_out` as columns under
            ``set_output(transform="pandas")``.
        """
        check_is_fitted(self, "feature_names_out_")
        X = self._frame(X, list(self.types_), "transform")
        tokens = self._tokens()
        unseen = _Unseen()
        blocks = [enc.encode(X[col], tokens, unseen) for col, enc in self.encodings_.items()]
        self.unseen_ = unseen.frame()
        if not blocks:
            return np.zeros((len(X), 0))
        return np.hstack(blocks).astype(float)

    def is_missing(self, value: object) -> bool:
        """Whether a cell reads as missing (empty, NaN, or one of ``missing_values``)."""
        return _is_missing(value, self._tokens())

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the encoded columns (module docstring)."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()


# =============================================================================== pipeline
def clinical_pipeline(
    types: Mapping[str, str] | None,
    *,
    ordinal: Mapping[str, Sequence[Any] | Mapping[Any, float]] | None = None,
    separator: str | Mapping[str, str] = "&",
    min_frequency: float | None = 5,
    drop: Literal["most_frequent", "first"] | None = None,
    add_indicator: bool = True,
    missing_values: Sequence[str] | None = None,
    alpha_uni: float = 0.05,
    alpha_multi: float = 0.05,
    direction: Literal["backward", "forward", "both"] = "backward",
    criterion: Literal["p", "aic"] = "p",
    grouping: Literal["categorical", "column", "none"] = "categorical",
    on_separation: Literal["firth", "l2", "drop"] = "firth",
    fallback: Literal["smallest_p", "all", "none"] = "smallest_p",
    classifier: BaseEstimator | None = None,
) -> Pipeline:
    """The clinical model's front end: ``Pipeline(encode, select)``, optionally ``+ classify``.

    Parameters
    ----------
    types : dict or None
        ``column -> type`` of the clinical columns (a manifest's ``clinical_types``).
    ordinal, separator, min_frequency, drop, add_indicator, missing_values
        Passed to :class:`ClinicalEncoder`.
    alpha_uni, alpha_multi, direction, criterion, grouping, on_separation, fallback
        Passed to :class:`UnivariableMultivariableSelector`.
    classifier : estimator, optional
        Appended as step ``"classify"`` (e.g. ``LogisticRegression()`` for seed 002's clinical
        model).

    Returns
    -------
    Pipeline
        Steps ``"encode"``, ``"select"`` (and ``"classify"``), with pandas output so that the
        selected variables keep their names. Fit it on training cases only (e.g. inside
        ``cross_val_score``) and the encoding and selection are learned per fold.

    Examples
    --------
    >>> pipe = clinical_pipeline({"Age": "numeric", "Shape": "categorical"})
    >>> [name for name, _ in pipe.steps]
    ['encode', 'select']
    """
    steps: list[tuple[str, Any]] = [
        ("encode", ClinicalEncoder(types, ordinal=ordinal, separator=separator, min_frequency=min_frequency, drop=drop,
                                   add_indicator=add_indicator, missing_values=missing_values)),
        ("select", UnivariableMultivariableSelector(alpha_uni=alpha_uni, alpha_multi=alpha_multi, direction=direction,
                                                    criterion=criterion, grouping=grouping,
                                                    on_separation=on_separation, fallback=fallback)),
    ]
    if classifier is not None:
        steps.append(("classify", classifier))
    return Pipeline(steps).set_output(transform="pandas")
