"""DeLong's AUC variance, confidence interval and paired test, by the fast algorithm of Sun & Xu.

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of correlated AUCs from
structural components (placement values). Sun & Xu (2014, IEEE Signal Processing Letters 21:
1389-1393) compute them with three midrank passes, O(n log n) instead of O(n_pos * n_neg):

* ``tz`` = midranks of all scores, ``tx`` = midranks within positives, ``ty`` within negatives;
* AUC = (sum of ``tz`` over positives - m(m+1)/2) / (m n);
* V10 (one per positive) = (``tz`` - ``tx``) / n   (fraction of negatives scored lower, ties 1/2);
* V01 (one per negative) = 1 - (``tz`` - ``ty``) / m   (fraction of positives scored higher);
* Cov = S10 / m + S01 / n with S the sample covariances (``ddof=1``) of V10 and V01.

Midranks come from :func:`scipy.stats.rankdata` (``method="average"``). Conventions match R's
pROC (``ci.auc(..., method="delong")``, ``roc.test(..., method="delong")``) with
``direction="<"`` (higher score = positive; no automatic flipping): the CI is
``AUC +/- z * SE`` clipped to [0, 1]; the paired test is ``z = (A1 - A2) / sqrt(var1 + var2 - 2 cov)``.
To check against pROC: ``r <- roc(y, s, direction="<", levels=c(0, 1)); var(r); ci.auc(r, method="delong")``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from her2dlr.checks import binary_target
from her2dlr.errors import InputError

__all__ = ["AUCResult", "DeLongTest", "delong_auc_ci", "delong_covariance", "delong_test", "placement_values"]


@dataclass(frozen=True)
class AUCResult:
    """An AUC with its DeLong standard error and confidence interval.

    Attributes
    ----------
    auc, se, ci_low, ci_high : float
    level : float
    n_pos, n_neg : int
    method : str
    """

    auc: float
    se: float
    ci_low: float
    ci_high: float
    level: float
    n_pos: int
    n_neg: int
    method: str = "delong"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class DeLongTest:
    """Paired DeLong test of two AUCs on the same cases (two-sided)."""

    auc_a: float
    auc_b: float
    difference: float
    se: float
    z: float
    p_value: float
    n_pos: int
    n_neg: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _prepare(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = binary_target(y_true, where="DeLong")
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[1] != len(y):
        raise InputError(f"DeLong: scores have {s.shape[1]} values per model but y_true has {len(y)}.")
    if not np.isfinite(s).all():
        raise InputError("DeLong: scores contain missing or infinite values.")
    return y, s


def placement_values(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components by midranks (Sun & Xu 2014).

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
    scores : array-like of shape (n_cases,) or (n_models, n_cases)

    Returns
    -------
    aucs : ndarray of shape (n_models,)
    v10 : ndarray of shape (n_models, n_pos)
        Per positive case: fraction of negatives scored lower (ties count 1/2).
    v01 : ndarray of shape (n_models, n_neg)
        Per negative case: fraction of positives scored higher (ties count 1/2).
    """
    y, s = _prepare(y_true, scores)
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their DeLong covariance matrix.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
    scores : array-like of shape (n_cases,) or (n_models, n_cases)
        Higher = more likely positive.

    Returns
    -------
    aucs : ndarray of shape (n_models,)
    cov : ndarray of shape (n_models, n_models)

    Raises
    ------
    InputError
        One class, mismatched lengths, missing scores, or fewer than 2 cases of a class.

    Examples
    --------
    >>> aucs, cov = delong_covariance([1, 1, 1, 0, 0], [0.9, 0.8, 0.4, 0.7, 0.3])
    >>> round(float(aucs[0]), 4), round(float(cov[0, 0]), 4)  # 5/6 and 1/18
    (0.8333, 0.0556)
    """
    aucs, v10, v01 = placement_values(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        raise InputError(f"DeLong needs at least 2 cases of each class; got {m} positive, {n} negative.")
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return aucs, s10 / m + s01 / n


def delong_auc_ci(y_true: Any, score: Any, *, level: float = 0.95) -> AUCResult:
    """AUC with the DeLong confidence interval (as pROC's ``ci.auc(method="delong")``).

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
    score : array-like of shape (n_cases,)
    level : float, default=0.95

    Returns
    -------
    AUCResult
    """
    if not 0 < level < 1:
        raise InputError(f"The 'level' parameter of delong_auc_ci must be in (0, 1). Got {level!r} instead.")
    y = binary_target(y_true, where="DeLong")
    aucs, cov = delong_covariance(y, score)
    auc = float(aucs[0])
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    z = stats.norm.ppf(0.5 + level / 2.0)
    return AUCResult(auc, se, float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se)), level,
                     int(y.sum()), int((1 - y).sum()))


def delong_test(y_true: Any, score_a: Any, score_b: Any) -> DeLongTest:
    """Two-sided paired DeLong test that two scores on the same cases have equal AUC.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
    score_a, score_b : array-like of shape (n_cases,)

    Returns
    -------
    DeLongTest
    """
    y = binary_target(y_true, where="DeLong")
    aucs, cov = delong_covariance(y, np.vstack([np.asarray(score_a, float), np.asarray(score_b, float)]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    return DeLongTest(float(aucs[0]), float(aucs[1]), diff, se, float(z), p, int(y.sum()), int((1 - y).sum()))
