"""Redundancy filters: Pearson |r| pruning, greedy recursive elimination (seed 002), mRMR."""

from __future__ import annotations

import numpy as np
from sklearn.feature_selection import f_classif, mutual_info_classif

from her2dlr.checks import check_choice, check_number
from her2dlr.learn._univariate import relevance
from her2dlr.learn.selection._base import BaseSelector

__all__ = ["MRMR", "GreedyElimination", "PearsonRedundancy", "abs_correlation"]

_RELEVANCE = ("auc", "pvalue")


def _unit_columns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred columns scaled to unit norm (so ``Z.T @ Z`` is Pearson r) and which are constant."""
    Z = X - X.mean(axis=0)
    norm = np.sqrt((Z**2).sum(axis=0))
    constant = norm == 0
    return Z / np.where(constant, 1.0, norm), constant


def abs_correlation(X: np.ndarray) -> np.ndarray:
    """|Pearson r| between columns, shape (n_features, n_features); constant columns give 0."""
    Z, _ = _unit_columns(X)
    return np.clip(np.abs(Z.T @ Z), 0.0, 1.0)


def _redundant_pairs(X: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Boolean (n_features, n_features) matrix of ``|r| > threshold``, built in column blocks
    so memory stays at one byte per pair (20 000 deep features: 400 MB, not 3.2 GB)."""
    Z, _ = _unit_columns(X)
    p = X.shape[1]
    A = np.zeros((p, p), dtype=bool)
    for start in range(0, p, block):
        stop = min(start + block, p)
        A[:, start:stop] = np.abs(Z.T @ Z[:, start:stop]) > threshold
    np.fill_diagonal(A, False)
    return A


class _RedundancyBase(BaseSelector):
    _multiclass = True  # the relevance has a multi-class form (see relevance())

    def __init__(self, *, threshold: float = 0.9, relevance: str = "auc") -> None:
        self.threshold = threshold
        self.relevance = relevance

    def _check_params(self) -> None:
        check_number(self, "threshold", self.threshold, low=0.0, high=1.0, low_open=True)
        check_choice(self, "relevance", self.relevance, _RELEVANCE)


class PearsonRedundancy(_RedundancyBase):
    """Among features correlated with ``|r| > threshold``, keep the more relevant one.

    Features are visited from the most to the least relevant (relevance in the training fold:
    ``|AUC - 0.5|`` or the t-test p-value); a feature is kept unless its ``|r|`` with an
    already kept feature exceeds ``threshold``. So of two correlated features the more
    relevant survives, and the kept set has no pair above the threshold.

    Parameters
    ----------
    threshold : float, default=0.9
    relevance : {"auc", "pvalue"}, default="auc"

    Attributes
    ----------
    relevance_ : ndarray of shape (n_features_in_,)
        Larger = more relevant (``|AUC - 0.5|`` or ``-log10 p``).
    dropped_for_ : dict
        Dropped feature position -> position of the kept feature it correlated with.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        self.relevance_ = relevance(X, y, self.relevance)
        Z, _ = _unit_columns(X)
        order = np.argsort(-self.relevance_, kind="stable")
        kept: list[int] = []
        K = np.empty((X.shape[0], X.shape[1]))  # kept columns, filled in order: O(n * p) memory
        self.dropped_for_: dict[int, int] = {}
        for j in order:
            if kept:
                r = np.abs(K[:, : len(kept)].T @ Z[:, j])
                worst = int(np.argmax(r))
                if r[worst] > self.threshold:
                    self.dropped_for_[int(j)] = int(kept[worst])
                    continue
            K[:, len(kept)] = Z[:, j]
            kept.append(int(j))
        support = np.zeros(X.shape[1], dtype=bool)
        support[kept] = True
        return support


class GreedyElimination(_RedundancyBase):
    """Greedy recursive elimination of redundant features (seed 002, Fig. 6D).

    While some pair of remaining features has ``|r| > threshold``, delete the feature that is
    redundant with the most other remaining features (ties: the less relevant one, then the
    later column), and recount. Unlike :class:`PearsonRedundancy`, which walks by relevance,
    this removes hubs of correlated features first and so tends to keep more features.

    Parameters
    ----------
    threshold : float, default=0.9
    relevance : {"auc", "pvalue"}, default="auc"
        Tie-break between equally redundant features.

    Attributes
    ----------
    relevance_ : ndarray of shape (n_features_in_,)
    elimination_order_ : list of int
        Positions of the deleted features, in deletion order.
    """

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        self.relevance_ = relevance(X, y, self.relevance)
        A = _redundant_pairs(X, self.threshold)
        alive = np.ones(X.shape[1], dtype=bool)
        counts = A.sum(axis=1).astype(np.int64)
        self.elimination_order_: list[int] = []
        # lexicographic key: most redundant, then least relevant, then the later column
        tie = np.argsort(np.lexsort((-np.arange(X.shape[1]), self.relevance_)))  # rank: low relevance first
        while True:
            live_counts = np.where(alive, counts, -1)
            top = live_counts.max(initial=-1)
            if top <= 0:
                break
            candidates = np.flatnonzero(live_counts == top)
            j = int(candidates[np.argmin(tie[candidates])])
            alive[j] = False
            counts -= A[:, j]
            self.elimination_order_.append(j)
        return alive


class MRMR(BaseSelector):
    """Minimum redundancy - maximum relevance: pick ``n_features`` greedily.

    Relevance is the ANOVA F statistic (``relevance="f"``) or the mutual information
    (``"mi"``) with the label; redundancy is the mean ``|r|`` with the features already picked.
    ``scheme="quotient"`` maximises relevance / redundancy (FCQ), ``"difference"`` maximises
    relevance / max(relevance) - redundancy (Ding & Peng 2005; Zhao, Anand & Wang 2019).
    Written here because no maintained scikit-learn-compatible package covers it.

    Parameters
    ----------
    n_features : int, default=20
    relevance : {"f", "mi"}, default="f"
    scheme : {"quotient", "difference"}, default="quotient"
    random_state : int, default=0
        Only used by the mutual-information estimate.

    Attributes
    ----------
    relevance_ : ndarray of shape (n_features_in_,)
    order_ : list of int
        Positions of the picked features, in picking order.
    """

    _multiclass = True  # ANOVA F and mutual information take any number of classes

    def __init__(self, *, n_features: int = 20, relevance: str = "f", scheme: str = "quotient",
                 random_state: int = 0) -> None:
        self.n_features = n_features
        self.relevance = relevance
        self.scheme = scheme
        self.random_state = random_state

    def _check_params(self) -> None:
        check_number(self, "n_features", self.n_features, low=1, integer=True)
        check_choice(self, "relevance", self.relevance, ("f", "mi"))
        check_choice(self, "scheme", self.scheme, ("quotient", "difference"))

    def _fit(self, X: np.ndarray, y: np.ndarray | None) -> np.ndarray:
        p = X.shape[1]
        if self.relevance == "f":
            with np.errstate(all="ignore"):
                rel = np.nan_to_num(f_classif(X, y)[0], nan=0.0)
        else:
            rel = mutual_info_classif(X, y, random_state=self.random_state)
        self.relevance_ = rel
        Z, _ = _unit_columns(X)
        scale = rel.max() if rel.max() > 0 else 1.0
        chosen = [int(np.argmax(rel))]
        red_sum = np.abs(Z.T @ Z[:, chosen[0]])
        available = np.ones(p, dtype=bool)
        available[chosen[0]] = False
        while len(chosen) < min(self.n_features, p):
            red = red_sum / len(chosen)
            if self.scheme == "quotient":
                score = rel / np.maximum(red, 1e-12)
            else:
                score = rel / scale - red
            score = np.where(available, score, -np.inf)
            j = int(np.argmax(score))
            chosen.append(j)
            available[j] = False
            red_sum += np.abs(Z.T @ Z[:, j])
        self.order_ = chosen
        support = np.zeros(p, dtype=bool)
        support[chosen] = True
        return support
