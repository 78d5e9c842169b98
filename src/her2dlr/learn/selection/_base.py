"""Base class of the feature selectors: DataFrame in, DataFrame out, names kept as given."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from her2dlr.checks import binary_target, check_no_missing, class_target

__all__ = ["BaseSelector"]


class BaseSelector(SelectorMixin, BaseEstimator):
    """Shared plumbing of every selector in :mod:`her2dlr.learn.selection`.

    A subclass implements ``_fit(X, y) -> support`` (a boolean mask over the input features,
    ``X`` a float array already checked) and, when it changes values (imputation, z-score),
    overrides the ``_values_out`` hook. The base class gives:

    * ``fit`` that records ``n_features_in_`` / ``feature_names_in_`` and ``support_``;
    * ``transform`` that returns a DataFrame with the kept columns (names and index kept as
      given, any characters) when given a DataFrame, an ndarray when given an array;
    * ``get_support`` / ``get_feature_names_out`` from :class:`~sklearn.feature_selection.SelectorMixin`.

    Every data-dependent quantity is computed in ``fit`` from the rows it is given, so inside a
    :class:`~sklearn.pipeline.Pipeline` in a CV loop a selector only ever sees the training fold.
    """

    #: Whether ``fit`` accepts missing values (only the missing/variance filter does).
    _accepts_missing: bool = False
    #: Whether ``fit`` needs labels.
    _needs_y: bool = True
    #: Whether ``fit`` accepts more than two classes (labels 0 .. k-1, e.g. HER2-zero / low / positive).
    _multiclass: bool = False

    # -------------------------------------------------------------- hooks
    def _check_params(self) -> None:
        """Validate the constructor arguments (raises InputError naming the parameter)."""

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _values_out(self, X: np.ndarray) -> np.ndarray:
        """Values of the kept columns as returned by ``transform`` (default: unchanged)."""
        return X

    # -------------------------------------------------------------- API
    def fit(self, X: Any, y: Any = None) -> BaseSelector:
        """Learn which features to keep from the training rows ``X`` and labels ``y``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_cases, n_features)
        y : array-like of shape (n_cases,)
            Binary labels, or class numbers 0 .. k-1 for selectors with ``_multiclass``
            (ignored by unsupervised selectors).

        Returns
        -------
        self
        """
        self._check_params()
        Xa = self._validate_fit(X)
        ya = self._target(y) if self._needs_y else None
        support = np.asarray(self._fit(Xa, ya), dtype=bool)
        self.support_ = support
        return self

    def _target(self, y: Any) -> np.ndarray:
        where = f"{type(self).__name__}.fit"
        if self._multiclass and len(np.unique(np.asarray(y))) > 2:
            return class_target(y, where=where)
        return binary_target(y, where=where)

    def _validate_fit(self, X: Any) -> np.ndarray:
        if self._accepts_missing:  # infinite values count as missing
            if isinstance(X, pd.DataFrame):
                X = X.replace([np.inf, -np.inf], np.nan)
            else:
                X = np.asarray(X, dtype=np.float64)
                X = np.where(np.isinf(X), np.nan, X)
        Xa = validate_data(
            self, X, dtype=np.float64, ensure_all_finite="allow-nan" if self._accepts_missing else False,
            reset=True, ensure_min_samples=2,
        )
        if not self._accepts_missing:
            check_no_missing(self, Xa, self._names())
        return Xa

    def _names(self) -> list[str] | None:
        names = getattr(self, "feature_names_in_", None)
        return None if names is None else [str(n) for n in names]

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "support_")
        return self.support_

    def transform(self, X: Any) -> Any:
        """Keep the selected columns of ``X``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_cases, n_features_in_)

        Returns
        -------
        DataFrame or ndarray of shape (n_cases, n_selected)
            A DataFrame (same index, kept column names) when ``X`` is one, else an ndarray.
        """
        check_is_fitted(self, "support_")
        mask = self.support_
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=False, skip_check_array=True)
            values = X.iloc[:, mask].to_numpy(dtype=np.float64, copy=True)
            return pd.DataFrame(self._values_out(values), index=X.index, columns=X.columns[mask])
        Xa = validate_data(self, X, dtype=np.float64, ensure_all_finite=False, reset=False)
        return self._values_out(Xa[:, mask].copy())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._accepts_missing
        tags.target_tags.required = self._needs_y
        return tags
