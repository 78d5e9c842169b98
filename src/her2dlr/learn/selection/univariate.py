"""Univariate filters: t-test / Mann-Whitney (ANOVA / Kruskal-Wallis) p-value filter, chi-square and mutual
information top-k. Every filter here accepts more than two classes."""

from __future__ import annotations

import numpy as np
from sklearn.feature_selection import chi2, mutual_info_classif

from her2dlr.checks import check_choice, check_number
from her2dlr.learn._univariate import (
    anova_pvalues,
    column_auc,
    kruskal_pvalues,
    mannwhitney_pvalues,
    ovr_auc_spread,
    ttest_pvalues,
)
from her2dlr.learn.selection._base import BaseSelector

__all__ = ["ChiSquareSelector", "MutualInfoSelector", "TopKSelector", "UnivariateFilter"]

_TESTS = {"ttest", "mannwhitney", "anova", "kruskal"}
#: The k-sample test used in place of a two-sample one when the label has more than two classes.
MULTICLASS_TEST = {"ttest": "anova", "mannwhitney": "kruskal", "anova": "anova", "kruskal": "kruskal"}


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Mask of the ``k`` largest scores (stable: earlier columns win ties)."""
    order = np.argsort(-scores, kind="stable")
    mask = np.zeros(len(scores), dtype=bool)
    mask[order[: min(k, len(scores))]] = True
    return mask


class UnivariateFilter(BaseSelector):
    """Keep features whose test p-value in the training fold is below ``alpha``.

    ``test="ttest"`` is :func:`scipy.stats.ttest_ind` (Student's t-test by default, as seed 002;
    Welch's with ``equal_var=False``); ``test="mannwhitney"`` is :func:`scipy.stats.mannwhitneyu`
    (two-sided); ``"anova"`` is the one-way ANOVA F test (:func:`scipy.stats.f_oneway`) and
    ``"kruskal"`` the Kruskal-Wallis H test (:func:`scipy.stats.kruskal`). With more than two
    classes (e.g. HER2-zero / low / positive) a two-sample test is replaced by its k-sample
    counterpart (t-test -> ANOVA, Mann-Whitney -> Kruskal-Wallis; ``test_used_`` says which ran).
    No multiple-testing correction is applied: this is a screening step.

    **Fallback**: when no feature reaches ``p < alpha`` (pure-noise data, tiny folds), the
    ``k_fallback`` features with the smallest p-values are kept instead, so the pipeline can
    still fit; ``fallback_used_`` records it (and it shows in the selection funnel). Set
    ``k_fallback=0`` to keep nothing instead, which makes the next step fail loudly.

    Parameters
    ----------
    test : {"ttest", "mannwhitney", "anova", "kruskal"}, default="ttest"
    alpha : float, default=0.05
        Keep features with ``p < alpha``.
    k_fallback : int, default=10
        Features kept (smallest p) when none passes.
    equal_var : bool, default=True
        Student's (True) or Welch's (False) t-test.

    Attributes
    ----------
    statistics_ : ndarray of shape (n_features_in_,)
    pvalues_ : ndarray of shape (n_features_in_,)
        P-values, 1 for features constant in the training fold.
    auc_ : ndarray of shape (n_features_in_,)
        Univariate AUC of each feature (for reports); with more than two classes, 0.5 plus the
        mean one-vs-rest ``|AUC - 0.5|`` (:func:`her2dlr.learn._univariate.ovr_auc_spread`).
    test_used_ : str
        The test that ran (differs from ``test`` for a multi-class label).
    fallback_used_ : bool

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 30)
    >>> X = np.c_[y + rng.normal(0, 0.5, 60), rng.normal(size=(60, 3))]
    >>> UnivariateFilter(alpha=0.01).fit(X, y).get_support()[0]
    np.True_
    """

    _multiclass = True

    def __init__(self, *, test: str = "ttest", alpha: float = 0.05, k_fallback: int = 10,
                 equal_var: bool = True) -> None:
        self.test = test
        self.alpha = alpha
        self.k_fallback = k_fallback
        self.equal_var = equal_var

    def _check_params(self) -> None:
        check_choice(self, "test", self.test, sorted(_TESTS))
        check_number(self, "alpha", self.alpha, low=0.0, high=1.0, low_open=True)
        check_number(self, "k_fallback", self.k_fallback, low=0, integer=True)

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        multi = len(np.unique(y)) > 2
        self.test_used_ = MULTICLASS_TEST[self.test] if multi else self.test
        if self.test_used_ == "ttest":
            self.statistics_, self.pvalues_ = ttest_pvalues(X, y, equal_var=self.equal_var)
        elif self.test_used_ == "mannwhitney":
            self.statistics_, self.pvalues_ = mannwhitney_pvalues(X, y)
        elif self.test_used_ == "anova":
            self.statistics_, self.pvalues_ = anova_pvalues(X, y)
        else:
            self.statistics_, self.pvalues_ = kruskal_pvalues(X, y)
        self.auc_ = 0.5 + ovr_auc_spread(X, y) if multi else column_auc(X, y)
        support = self.pvalues_ < self.alpha
        self.fallback_used_ = not support.any()
        if self.fallback_used_:
            support = _top_k(-self.pvalues_, self.k_fallback)
        return support


class TopKSelector(BaseSelector):
    """Keep the ``k`` features with the largest score; subclasses override :meth:`_scores`.

    ``k`` larger than the number of features keeps them all.
    """

    _multiclass = True

    def __init__(self, *, k: int = 20) -> None:
        self.k = k

    def _check_params(self) -> None:
        check_number(self, "k", self.k, low=1, integer=True)

    def _scores(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        self.scores_ = np.nan_to_num(self._scores(X, y), nan=-np.inf)
        return _top_k(self.scores_, self.k)


class ChiSquareSelector(TopKSelector):
    """Chi-square top-k on features min-max scaled to [0, 1] in the training fold.

    Chi-square needs non-negative features; radiomics features are not, so each feature is
    min-max scaled with the training minimum and range first (only for scoring; ``transform``
    returns the values unchanged). See :func:`sklearn.feature_selection.chi2`.

    Attributes
    ----------
    scores_, pvalues_ : ndarray of shape (n_features_in_,)
    """

    def _scores(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        low = X.min(axis=0)
        span = X.max(axis=0) - low
        scaled = (X - low) / np.where(span > 0, span, 1.0)
        with np.errstate(all="ignore"):
            scores, self.pvalues_ = chi2(scaled, y)
        return scores


class MutualInfoSelector(TopKSelector):
    """Mutual information top-k (:func:`sklearn.feature_selection.mutual_info_classif`, k-NN estimate).

    Parameters
    ----------
    k : int, default=20
    n_neighbors : int, default=3
    random_state : int, default=0
        Seeds the small noise the estimator adds to break ties.
    """

    def __init__(self, *, k: int = 20, n_neighbors: int = 3, random_state: int = 0) -> None:
        super().__init__(k=k)
        self.n_neighbors = n_neighbors
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_number(self, "n_neighbors", self.n_neighbors, low=1, integer=True)

    def _scores(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        return mutual_info_classif(X, y, n_neighbors=self.n_neighbors, random_state=self.random_state)
