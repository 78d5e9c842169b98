"""Unsupervised steps: the missing/variance filter (with median imputation) and the z-score."""

from __future__ import annotations

import warnings

import numpy as np

from her2dlr.checks import check_number
from her2dlr.learn.selection._base import BaseSelector

__all__ = ["MissingVarianceFilter", "ZScore"]


class MissingVarianceFilter(BaseSelector):
    """Drop all-missing and constant features; impute the remaining gaps with the training median.

    Fitted on the training fold only: a feature that is constant (or all-missing) *in that fold*
    is dropped even if it varies elsewhere, and the medians used to fill gaps in test rows are
    the training medians. Infinite values count as missing.

    Parameters
    ----------
    max_missing : float, default=1.0
        Drop a feature whose fraction of missing values in the training fold exceeds this.
        The default keeps every feature with at least one observed value; all-missing
        features are always dropped.
    threshold : float, default=0.0
        Drop a feature whose variance (of the observed values) is ``<= threshold``. A
        feature whose observed values are all equal is dropped whatever the threshold.

    Attributes
    ----------
    support_ : ndarray of shape (n_features_in_,)
        Kept features.
    missing_fraction_ : ndarray of shape (n_features_in_,)
    variances_ : ndarray of shape (n_features_in_,)
        Variance of the observed training values (NaN when all missing).
    medians_ : ndarray of shape (n_selected,)
        Training median of each kept feature, used to fill missing values in ``transform``.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> X = pd.DataFrame({"a (x)": [1.0, 2.0, np.nan, 4.0], "b": [3.0] * 4, "c": [np.nan] * 4})
    >>> MissingVarianceFilter().fit(X).transform(X)["a (x)"].tolist()
    [1.0, 2.0, 2.0, 4.0]
    """

    _accepts_missing = True
    _needs_y = False

    def __init__(self, *, max_missing: float = 1.0, threshold: float = 0.0) -> None:
        self.max_missing = max_missing
        self.threshold = threshold

    def _check_params(self) -> None:
        check_number(self, "max_missing", self.max_missing, low=0.0, high=1.0)
        check_number(self, "threshold", self.threshold, low=0.0)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        X = np.where(np.isfinite(X), X, np.nan)
        observed = ~np.isnan(X)
        n_obs = observed.sum(axis=0)
        self.missing_fraction_ = 1.0 - n_obs / X.shape[0]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
            self.variances_ = np.nanvar(X, axis=0)
            spread = np.nanmax(X, axis=0) - np.nanmin(X, axis=0)
            medians = np.nanmedian(X, axis=0)
        varying = (spread > 0) & (self.variances_ > self.threshold)
        support = (n_obs > 0) & (self.missing_fraction_ <= self.max_missing) & varying
        self.medians_ = medians[support]
        return support

    def _values_out(self, X: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(X)
        if bad.any():
            X[bad] = np.broadcast_to(self.medians_, X.shape)[bad]
        return X


class ZScore(BaseSelector):
    """Centre and scale each feature by the training mean and standard deviation (keeps all).

    Parameters are learnt on the training fold only (``mean_``, ``scale_``; population SD,
    ``ddof=0``, as :class:`sklearn.preprocessing.StandardScaler`); a zero SD is replaced by 1.

    Attributes
    ----------
    mean_ : ndarray of shape (n_features_in_,)
    scale_ : ndarray of shape (n_features_in_,)
    """

    _needs_y = False

    def __init__(self) -> None:
        pass

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        self.mean_ = X.mean(axis=0)
        scale = X.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return np.ones(X.shape[1], dtype=bool)

    def _values_out(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean_) / self.scale_
