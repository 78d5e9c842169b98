"""Confidence intervals that respect patients: clustered AUC variance and clustered proportions.

When a patient contributes several images, the images are not independent and intervals
that treat them as such (DeLong, Wilson) are too narrow. Here the patient is the unit of
resampling / variance:

* :func:`clustered_auc_ci` - the AUC variance of Obuchowski (1997, Biometrics 53: 567-578),
  written with DeLong's structural components. For a positive image ``x`` let ``V10(x)`` be
  the fraction of all negatives scored lower (ties 1/2), for a negative ``y`` let ``V01(y)``
  be the fraction of all positives scored higher. Per patient ``i`` with ``m_i`` positive
  and ``n_i`` negative images, sum them: ``V10_i``, ``V01_i``. With ``M``, ``N`` the numbers
  of positive and negative images, ``I10`` / ``I01`` the patients with at least one positive
  / negative image and ``I`` all patients::

      S10 = I10 / ((I10 - 1) M) * sum_i (V10_i - m_i AUC)^2
      S01 = I01 / ((I01 - 1) N) * sum_i (V01_i - n_i AUC)^2
      S11 = I / (I - 1) * sum_i (V10_i - m_i AUC) (V01_i - n_i AUC)
      var(AUC) = S10 / M + S01 / N + 2 S11 / (M N)

  With one image per patient ``S11 = 0`` and the variance is DeLong's exactly.
* :func:`clustered_proportion_ci` - a proportion ``sum a_i / sum m_i`` over patients (e.g.
  sensitivity: true positives over positive images) with the cluster-robust variance of a
  ratio estimator, turned into a design effect ``deff = sum_i (a_i - p m_i)^2 / (M p (1 - p))``
  and a Wilson interval on the effective sample size ``M / deff`` (Rao & Scott 1992). With
  one image per patient ``deff = 1`` and the interval is Wilson's.
* :func:`cluster_bootstrap_auc_ci` - percentile interval of the AUC over resampled patients
  (all images of a drawn patient come along); the reference the two above are checked against.
* :func:`auc_interval` - the interval :func:`her2dlr.evaluate.metrics.metrics_table` uses:
  Obuchowski when some patient has several images, DeLong otherwise.

Obuchowski's estimator is written by hand here because no maintained Python library offers
it (R's ``pROC`` has no clustered AUC; the SAS macro of the paper is the usual reference).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.checks import binary_target
from her2dlr.errors import InputError
from her2dlr.evaluate.delong import AUCResult, delong_auc_ci, placement_values
from her2dlr.evaluate.metrics import resampled_aucs

__all__ = [
    "CLUSTERED_METHOD",
    "auc_interval",
    "cluster_bootstrap_auc_ci",
    "clustered_auc_ci",
    "clustered_proportion_ci",
    "has_clusters",
]

#: ``AUCResult.method`` of :func:`clustered_auc_ci`.
CLUSTERED_METHOD = "obuchowski"


def _clusters(clusters: Any, n: int, where: str) -> np.ndarray:
    c = np.asarray(clusters)
    if c.ndim != 1 or len(c) != n:
        raise InputError(f"{where}: clusters has {c.size} values but y_true has {n}.")
    if pd.isna(pd.Series(c)).any():
        raise InputError(f"{where}: clusters (patient ids) has missing values.")
    return pd.factorize(pd.Series(c).astype(str))[0]


def has_clusters(clusters: Any) -> bool:
    """True when some cluster (patient) holds more than one case."""
    if clusters is None:
        return False
    ids = pd.Series(np.asarray(clusters)).astype(str)
    return bool(ids.duplicated().any())


def _z(level: float, where: str) -> float:
    if not 0 < level < 1:
        raise InputError(f"The 'level' parameter of {where} must be in (0, 1). Got {level!r} instead.")
    return float(stats.norm.ppf(0.5 + level / 2.0))


def clustered_auc_ci(y_true: Any, score: Any, clusters: Any, *, level: float = 0.95) -> AUCResult:
    """AUC with the patient-clustered confidence interval of Obuchowski (1997).

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
        0/1 labels (per image).
    score : array-like of shape (n_cases,)
        Higher = more likely positive.
    clusters : array-like of shape (n_cases,)
        Patient (or other cluster) of each case.
    level : float, default=0.95

    Returns
    -------
    AUCResult
        ``method="obuchowski"``; ``ci = AUC +/- z * SE`` clipped to [0, 1].

    Raises
    ------
    InputError
        One class, mismatched lengths, missing values, or fewer than 2 patients with
        positive (or negative) cases.

    Examples
    --------
    >>> r = clustered_auc_ci([1, 1, 1, 0, 0], [0.9, 0.8, 0.4, 0.7, 0.3], ["a", "b", "c", "d", "e"])
    >>> round(r.se ** 2, 4)  # one case per patient: DeLong's 1/18
    0.0556
    """
    z = _z(level, "clustered_auc_ci")
    y = binary_target(y_true, where="clustered_auc_ci")
    codes = _clusters(clusters, len(y), "clustered_auc_ci")
    aucs, v10, v01 = placement_values(y, score)
    auc = float(aucs[0])
    n_clusters = int(codes.max()) + 1
    m_i = np.bincount(codes[y == 1], minlength=n_clusters).astype(float)
    n_i = np.bincount(codes[y == 0], minlength=n_clusters).astype(float)
    v10_i = np.bincount(codes[y == 1], weights=v10[0], minlength=n_clusters)
    v01_i = np.bincount(codes[y == 0], weights=v01[0], minlength=n_clusters)
    big_m, big_n = m_i.sum(), n_i.sum()
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        raise InputError(f"clustered_auc_ci needs at least 2 patients with positive and 2 with negative cases; "
                         f"got {i10} and {i01}.")
    d10 = v10_i - m_i * auc
    d01 = v01_i - n_i * auc
    s10 = i10 / ((i10 - 1) * big_m) * float((d10 ** 2).sum())
    s01 = i01 / ((i01 - 1) * big_n) * float((d01 ** 2).sum())
    s11 = n_clusters / (n_clusters - 1) * float((d10 * d01).sum())
    var = s10 / big_m + s01 / big_n + 2.0 * s11 / (big_m * big_n)
    se = float(np.sqrt(max(var, 0.0)))
    return AUCResult(auc, se, float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se)), level,
                     int(big_m), int(big_n), CLUSTERED_METHOD)


def cluster_bootstrap_auc_ci(y_true: Any, score: Any, clusters: Any, *, n_boot: int = 2000, level: float = 0.95,
                             seed: int = 0) -> AUCResult:
    """AUC with a percentile bootstrap CI that resamples patients (all their cases come along).

    Resamples with a single class are drawn again. ``se`` is the SD of the bootstrap AUCs;
    ``method="patient-bootstrap"``.

    Parameters
    ----------
    y_true, score, clusters : array-like of shape (n_cases,)
    n_boot : int, default=2000
    level : float, default=0.95
    seed : int, default=0

    Returns
    -------
    AUCResult
    """
    _z(level, "cluster_bootstrap_auc_ci")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"The 'n_boot' parameter of cluster_bootstrap_auc_ci must be an int >= 1. Got {n_boot!r}.")
    y = binary_target(y_true, where="cluster_bootstrap_auc_ci")
    s = np.asarray(score, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise InputError(f"cluster_bootstrap_auc_ci: score has {s.size} values but y_true has {len(y)}.")
    codes = _clusters(clusters, len(y), "cluster_bootstrap_auc_ci")
    n_clusters = int(codes.max()) + 1
    members = [np.flatnonzero(codes == k) for k in range(n_clusters)]
    rng = np.random.default_rng(seed)
    aucs = np.empty(n_boot)
    done = 0
    while done < n_boot:
        drawn = rng.integers(0, n_clusters, n_clusters)
        idx = np.concatenate([members[k] for k in drawn])
        yb = y[idx]
        if 0 < yb.sum() < len(yb):
            aucs[done] = resampled_aucs(yb[None, :], s[idx][None, :])[0]
            done += 1
    auc = float(placement_values(y, s)[0][0])
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return AUCResult(auc, float(aucs.std(ddof=1)), float(lo), float(hi), level, int(y.sum()), int((1 - y).sum()),
                     "patient-bootstrap")


def clustered_proportion_ci(successes: Any, clusters: Any, *, level: float = 0.95) -> dict[str, Any]:
    """A proportion over cases grouped in patients, with a patient-clustered Wilson interval.

    Parameters
    ----------
    successes : array-like of shape (n_cases,)
        0/1 per case among the denominator's cases (e.g. "classified positive" among the
        positive cases for sensitivity).
    clusters : array-like of shape (n_cases,)
        Patient of each case.
    level : float, default=0.95

    Returns
    -------
    dict
        ``value, k, n, ci_low, ci_high, deff, n_effective, method``; ``deff`` is the design
        effect (1 with one case per patient, and when the proportion is 0 or 1);
        ``n = 0`` gives NaN limits.
    """
    z = _z(level, "clustered_proportion_ci")
    a = np.asarray(successes, dtype=np.float64).ravel()
    codes = _clusters(clusters, len(a), "clustered_proportion_ci")
    n = len(a)
    k = float(a.sum())
    if n == 0:
        return {"value": np.nan, "k": 0, "n": 0, "ci_low": np.nan, "ci_high": np.nan, "deff": np.nan,
                "n_effective": np.nan, "method": "wilson (patient-clustered)"}
    p = k / n
    a_i = np.bincount(codes, weights=a)
    m_i = np.bincount(codes).astype(float)
    keep = m_i > 0
    spread = float(((a_i[keep] - p * m_i[keep]) ** 2).sum())
    deff = spread / (n * p * (1 - p)) if 0 < p < 1 else 1.0
    deff = max(deff, 1e-12)
    n_eff = n / deff
    denom = 1.0 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z / denom * np.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff))
    return {"value": p, "k": round(k), "n": n, "ci_low": float(max(0.0, centre - half)),
            "ci_high": float(min(1.0, centre + half)), "deff": float(deff), "n_effective": float(n_eff),
            "method": "wilson (patient-clustered)"}


def auc_interval(y_true: Any, score: Any, clusters: Any | None = None, *, level: float = 0.95) -> AUCResult:
    """AUC and its interval: Obuchowski's when some patient has several cases, DeLong's otherwise.

    The returned ``method`` says which was used (``"obuchowski"`` or ``"delong"``).
    """
    if has_clusters(clusters):
        y = binary_target(y_true, where="auc_interval")
        codes = _clusters(clusters, len(y), "auc_interval")
        if len(np.unique(codes[y == 1])) >= 2 and len(np.unique(codes[y == 0])) >= 2:
            return clustered_auc_ci(y, score, codes, level=level)
    return delong_auc_ci(y_true, score, level=level)
