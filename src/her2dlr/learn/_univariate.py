"""Vectorised univariate statistics of every feature against a binary or multi-class label.

Used by the p-value filter and as the relevance of the redundancy filters. SciPy does the
tests; only the per-column AUC is written here (a rank formula, one ``rankdata`` call). With
more than two classes (labels 0 .. k-1) the two-sample tests have their k-sample counterparts:
one-way ANOVA F for the t-test, Kruskal-Wallis H for Mann-Whitney U, and the AUC relevance is
the mean one-vs-rest ``|AUC - 0.5|``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["anova_pvalues", "column_auc", "kruskal_pvalues", "mannwhitney_pvalues", "ovr_auc_spread", "relevance",
           "ttest_pvalues"]


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


def _samples(X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    return [X[y == c] for c in np.unique(y)]


def anova_pvalues(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F statistic and p-value of every column across the classes (``scipy.stats.f_oneway``).

    Constant columns give statistic 0 and p = 1. With two classes F is the square of Student's t.
    """
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.f_oneway(*_samples(X, y), axis=0)
    return np.nan_to_num(res.statistic, nan=0.0, posinf=0.0), np.nan_to_num(res.pvalue, nan=1.0)


def kruskal_pvalues(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kruskal-Wallis H statistic and p-value of every column across the classes (``scipy.stats.kruskal``).

    Columns constant over all cases give statistic 0 and p = 1.
    """
    samples = _samples(X, y)
    h = np.zeros(X.shape[1])
    p = np.ones(X.shape[1])
    varying = np.ptp(X, axis=0) > 0
    if varying.any():
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            res = stats.kruskal(*[s[:, varying] for s in samples], axis=0)
        h[varying] = np.nan_to_num(res.statistic, nan=0.0)
        p[varying] = np.nan_to_num(res.pvalue, nan=1.0)
    return h, p


def ovr_auc_spread(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mean over the classes of each column's one-vs-rest ``|AUC - 0.5|`` (0: no information, 0.5: perfect)."""
    return np.mean([np.abs(column_auc(X, (y == c).astype(int)) - 0.5) for c in np.unique(y)], axis=0)


def relevance(X: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Relevance of each column, larger = more relevant.

    ``"auc"``: ``|AUC - 0.5|`` (more than two classes: :func:`ovr_auc_spread`); ``"pvalue"``:
    ``-log10`` of the t-test p-value (more than two classes: the one-way ANOVA p-value).
    """
    multi = len(np.unique(y)) > 2
    if kind == "auc":
        return ovr_auc_spread(X, y) if multi else np.abs(column_auc(X, y) - 0.5)
    _, p = anova_pvalues(X, y) if multi else ttest_pvalues(X, y)
    return -np.log10(np.clip(p, 1e-300, 1.0))
