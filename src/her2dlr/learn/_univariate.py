"""Vectorised univariate statistics of every feature against a binary label.

Used by the p-value filter and as the relevance of the redundancy filters. SciPy does the
tests; only the per-column AUC is written here (a rank formula, one ``rankdata`` call).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["column_auc", "mannwhitney_pvalues", "relevance", "ttest_pvalues"]


def column_auc(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of each column used as a score for ``y == 1`` (ties count one half).

    Parameters
    ----------
    X : ndarray of shape (n_cases, n_features)
    y : ndarray of shape (n_cases,)
        0/1 labels.

    Returns
    -------
    ndarray of shape (n_features,)
        Mann-Whitney U of the positives divided by ``n_pos * n_neg``.
    """
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = stats.rankdata(X, axis=0)
    u = ranks[pos].sum(axis=0) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def ttest_pvalues(X: np.ndarray, y: np.ndarray, *, equal_var: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two-sample t statistic and two-sided p-value of every column (``scipy.stats.ttest_ind``).

    Constant columns give NaN in SciPy; they are returned with statistic 0 and p = 1.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(X[y == 1], X[y == 0], axis=0, equal_var=equal_var)
    return np.nan_to_num(res.statistic, nan=0.0), np.nan_to_num(res.pvalue, nan=1.0)


def mannwhitney_pvalues(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mann-Whitney U statistic and two-sided p-value of every column (``scipy.stats.mannwhitneyu``)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.mannwhitneyu(X[y == 1], X[y == 0], axis=0, alternative="two-sided")
    return np.nan_to_num(res.statistic, nan=0.0), np.nan_to_num(res.pvalue, nan=1.0)


def relevance(X: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Relevance of each column, larger = more relevant.

    ``"auc"``: ``|AUC - 0.5|``; ``"pvalue"``: ``-log10`` of the t-test p-value.
    """
    if kind == "auc":
        return np.abs(column_auc(X, y) - 0.5)
    _, p = ttest_pvalues(X, y)
    return -np.log10(np.clip(p, 1e-300, 1.0))
