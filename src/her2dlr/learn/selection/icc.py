"""Intraclass correlation of features across repeat segmentations, and the ICC filter (seed 003)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from her2dlr.checks import check_choice, check_number, feature_label
from her2dlr.errors import InputError
from her2dlr.learn.selection._base import BaseSelector

__all__ = ["ICC_FORMS", "ICCFilter", "intraclass_correlation"]

#: Shrout & Fleiss (1979) single-measure forms.
ICC_FORMS = ("icc1", "icc2", "icc3")


def intraclass_correlation(ratings: np.ndarray, form: str = "icc3") -> np.ndarray:
    """Single-measure ICC of Shrout & Fleiss (1979), for many features at once.

    With ``n`` targets (cases), ``k`` raters (segmentations) and the two-way ANOVA mean squares
    MSR (between targets), MSC (between raters), MSE (residual), MSW (within targets):

    * ``icc1`` = ICC(1,1) = (MSR - MSW) / (MSR + (k-1) MSW)   (one-way random)
    * ``icc2`` = ICC(2,1) = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)   (two-way random, absolute agreement)
    * ``icc3`` = ICC(3,1) = (MSR - MSE) / (MSR + (k-1) MSE)   (two-way mixed, consistency)

    These are pingouin's ``ICC1``, ``ICC2`` and ``ICC3`` rows. Written here (vectorised over
    features) because pingouin loops one feature at a time and is not a dependency.

    Parameters
    ----------
    ratings : ndarray of shape (n_targets, k_raters) or (n_targets, k_raters, n_features)
        No missing values.
    form : {"icc1", "icc2", "icc3"}

    Returns
    -------
    float ndarray of shape () or (n_features,)
        NaN where the denominator is 0 (a feature constant over all cases and raters).

    Examples
    --------
    Shrout & Fleiss (1979), Table 2 (6 targets, 4 judges): ICC(2,1) = 0.29, ICC(3,1) = 0.71.

    >>> Y = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    >>> round(float(intraclass_correlation(Y, "icc3")), 3), round(float(intraclass_correlation(Y, "icc2")), 3)
    (0.715, 0.29)
    """
    if form not in ICC_FORMS:
        raise InputError(f"ICC form must be one of {', '.join(ICC_FORMS)}. Got {form!r} instead.")
    Y = np.asarray(ratings, dtype=np.float64)
    squeeze = Y.ndim == 2
    if squeeze:
        Y = Y[:, :, None]
    if Y.ndim != 3 or Y.shape[0] < 2 or Y.shape[1] < 2:
        raise InputError(f"ICC needs ratings of shape (n_targets >= 2, k_raters >= 2[, n_features]); got {Y.shape}.")
    n, k = Y.shape[0], Y.shape[1]
    grand = Y.mean(axis=(0, 1))
    ss_rows = k * ((Y.mean(axis=1) - grand) ** 2).sum(axis=0)
    ss_cols = n * ((Y.mean(axis=0) - grand) ** 2).sum(axis=0)
    ss_total = ((Y - grand) ** 2).sum(axis=(0, 1))
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    msw = (ss_cols + ss_err) / (n * (k - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        if form == "icc1":
            icc = (msr - msw) / (msr + (k - 1) * msw)
        elif form == "icc2":
            icc = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
        else:
            icc = (msr - mse) / (msr + (k - 1) * mse)
    icc = np.where(np.isfinite(icc), icc, np.nan)
    return icc[0] if squeeze else icc


class ICCFilter(BaseSelector):
    """Keep features reproducible across repeat segmentations: ICC > ``threshold`` (seed 003: 0.75).

    ``fit(X)`` pairs each training case of ``X`` (a DataFrame indexed by case id, the feature
    table of the reference segmentation) with the same case in each ``repeat`` table (features
    of a second reader's or a re-test segmentation, same column names) and computes the ICC of
    every feature over the training cases found in all tables. Only training cases are used,
    like every other step. Put this step first: it must see the raw feature values.

    Parameters
    ----------
    repeat : DataFrame or list of DataFrame
        Repeat feature table(s) indexed by case id; not every case needs one.
    threshold : float, default=0.75
    form : {"icc3", "icc2", "icc1"}, default="icc3"
        ICC(3,1) consistency (default), ICC(2,1) absolute agreement or ICC(1,1).
    missing : {"error", "drop", "keep"}, default="error"
        What to do with a feature absent from a repeat table.
    min_cases : int, default=5
        Fewest training cases with a repeat segmentation needed.

    Attributes
    ----------
    icc_ : ndarray of shape (n_features_in_,)
        NaN for features without repeats (``missing="keep"/"drop"``) or constant ones.
    n_cases_ : int
        Training cases used.
    """

    _needs_y = False

    def __init__(self, repeat: pd.DataFrame | Sequence[pd.DataFrame] | None = None, *, threshold: float = 0.75,
                 form: str = "icc3", missing: str = "error", min_cases: int = 5) -> None:
        self.repeat = repeat
        self.threshold = threshold
        self.form = form
        self.missing = missing
        self.min_cases = min_cases

    def _check_params(self) -> None:
        check_number(self, "threshold", self.threshold, low=-1.0, high=1.0)
        check_choice(self, "form", self.form, ICC_FORMS)
        check_choice(self, "missing", self.missing, ("error", "drop", "keep"))
        check_number(self, "min_cases", self.min_cases, low=2, integer=True)
        tables = self._tables()
        if not tables or not all(isinstance(t, pd.DataFrame) for t in tables):
            raise InputError(
                "The 'repeat' parameter of ICCFilter must be a DataFrame (or a list of them) of repeat-"
                f"segmentation features indexed by case id. Got {type(self.repeat).__name__} instead."
            )

    def __repr__(self, N_CHAR_MAX: int = 700) -> str:  # scikit-learn's signature
        tables = self._tables() if isinstance(self.repeat, (pd.DataFrame, list, tuple)) else []
        shapes = ", ".join(f"<DataFrame {t.shape[0]}x{t.shape[1]}>" for t in tables if isinstance(t, pd.DataFrame))
        return (f"ICCFilter(repeat=[{shapes}], threshold={self.threshold!r}, form={self.form!r}, "
                f"missing={self.missing!r}, min_cases={self.min_cases!r})")

    def _tables(self) -> list[pd.DataFrame]:
        if self.repeat is None:
            return []
        return [self.repeat] if isinstance(self.repeat, pd.DataFrame) else list(self.repeat)

    def fit(self, X: pd.DataFrame, y: object = None) -> ICCFilter:
        """Compute the ICC of each feature over the training cases of ``X`` that have repeats.

        Parameters
        ----------
        X : DataFrame of shape (n_cases, n_features)
            Indexed by case id (the ids of the repeat tables).
        y : ignored
        """
        if not isinstance(X, pd.DataFrame):
            raise InputError(
                "ICCFilter.fit needs X as a DataFrame indexed by case id, to pair cases with the repeat "
                f"table; got {type(X).__name__}."
            )
        self._X_frame = X
        try:
            return super().fit(X, y)
        finally:
            del self._X_frame

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        frame = self._X_frame
        tables = self._tables()
        columns = [str(c) for c in frame.columns]
        present = np.ones(len(columns), dtype=bool)
        for t in tables:
            present &= np.isin(columns, [str(c) for c in t.columns])
        if not present.all() and self.missing == "error":
            raise InputError(
                f"ICCFilter: {int((~present).sum())} feature(s) are missing from the repeat table(s): "
                f"{feature_label(columns, np.flatnonzero(~present))}. Extract the repeat segmentations "
                "with the same params, or set missing='drop' / 'keep'."
            )
        cases = frame.index
        for t in tables:
            cases = cases.intersection(t.index)
        if len(cases) < self.min_cases:
            raise InputError(
                f"ICCFilter: only {len(cases)} training case(s) have a repeat segmentation "
                f"(min_cases = {self.min_cases}); check that the repeat table is indexed by case id."
            )
        self.n_cases_ = len(cases)
        cols = frame.columns[present]
        pos = np.flatnonzero(present)
        rows = frame.index.get_indexer(cases)
        stack = [X[rows][:, pos]] + [
            t.rename(columns=str).loc[cases, [str(c) for c in cols]].to_numpy(dtype=np.float64) for t in tables
        ]
        ratings = np.stack(stack, axis=1)  # (n_cases, k, n_present)
        icc = np.full(len(columns), np.nan)
        complete = np.isfinite(ratings).all(axis=(0, 1))
        icc[pos[complete]] = intraclass_correlation(ratings[:, :, complete], self.form)
        for j in np.flatnonzero(~complete):  # features with gaps: complete cases only
            Yj = ratings[:, :, j]
            Yj = Yj[np.isfinite(Yj).all(axis=1)]
            if len(Yj) >= self.min_cases:
                icc[pos[j]] = intraclass_correlation(Yj, self.form)
        self.icc_ = icc
        support = np.nan_to_num(icc, nan=-np.inf) > self.threshold
        if self.missing == "keep":
            support |= ~present
        return support

    def _validate_fit(self, X: object) -> np.ndarray:
        from sklearn.utils.validation import validate_data

        return validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan", reset=True)
