"""Confidence intervals of threshold metrics and comparisons of two models.

* :func:`wilson_ci` - Wilson score interval of a proportion ``k / n`` (Wilson 1927; what
  R's ``prop.test(k, n, correct = FALSE)$conf.int`` and ``binom::binom.wilson`` give);
* :func:`threshold_metrics_ci` - sensitivity, specificity, PPV, NPV and accuracy at a
  threshold with Wilson intervals, and the Youden index with the Wald interval of
  Youden (1950): ``var J = sens (1 - sens) / n_pos + spec (1 - spec) / n_neg``;
* :func:`bootstrap_compare` - paired case bootstrap of AUC, accuracy and Youden index of two
  models on the same cases: percentile CI and two-sided p-value of the difference;
* :func:`delong_unpaired` - two AUCs from two independent cohorts (pROC's
  ``roc.test(roc1, roc2, method = "delong", paired = FALSE)``). The paired DeLong test of two
  models on the same cases is :func:`her2dlr.evaluate.delong.delong_test`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.checks import check_choice, param_error
from her2dlr.errors import InputError
from her2dlr.evaluate.delong import delong_covariance
from her2dlr.evaluate.metrics import (
    bootstrap_indices,
    check_binary_probs,
    resampled_aucs,
    threshold_metrics,
)

__all__ = ["COMPARE_METRICS", "bootstrap_compare", "delong_unpaired", "threshold_metrics_ci", "wilson_ci"]

#: Metrics :func:`bootstrap_compare` can compare.
COMPARE_METRICS = ("auc", "accuracy", "youden", "sensitivity", "specificity", "ppv", "npv", "brier")


def _z(level: float, where: str) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float, np.number)) or not 0 < level < 1:
        raise param_error(where, "level", "a float in (0, 1)", level)
    return float(stats.norm.ppf(0.5 + level / 2.0))


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score confidence interval of the proportion ``k / n``.

    Parameters
    ----------
    k : int
        Number of successes, ``0 <= k <= n``.
    n : int
        Number of trials; ``n = 0`` gives ``(nan, nan)``.
    level : float, default=0.95

    Returns
    -------
    (ci_low, ci_high) : tuple of float

    Examples
    --------
    >>> lo, hi = wilson_ci(8, 10)
    >>> round(lo, 3), round(hi, 3)
    (0.49, 0.943)
    """
    z = _z(level, "wilson_ci")
    for name, value in (("k", k), ("n", n)):
        if (isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not float(value).is_integer()
                or value < 0):
            raise param_error("wilson_ci", name, "an int >= 0", value)
    if k > n:
        raise InputError(f"wilson_ci: k ({k}) is larger than n ({n}).")
    if n == 0:
        return float("nan"), float("nan")
    phat = k / n
    denom = 1.0 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z / denom * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def threshold_metrics_ci(y: Any, p: Any, threshold: float, *, level: float = 0.95,
                         clusters: Any | None = None) -> pd.DataFrame:
    """Threshold metrics with confidence intervals; positive when ``p >= threshold``.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
        0/1 labels.
    p : array-like of shape (n_cases,)
        Scores or probabilities (higher = more likely positive).
    threshold : float
        Operating threshold, chosen on training data.
    level : float, default=0.95
    clusters : array-like of shape (n_cases,), optional
        Patient of each case. When some patient has several cases, proportions get the
        patient-clustered Wilson interval (:func:`her2dlr.evaluate.clustered.clustered_proportion_ci`)
        and the Youden index the cluster-robust Wald interval (covariance of sensitivity and
        specificity within patients included); ``method`` says so.

    Returns
    -------
    DataFrame indexed by ``metric``
        Rows ``sensitivity, specificity, ppv, npv, accuracy, youden``; columns ``value, k, n,
        ci_low, ci_high, method``. Proportions get Wilson intervals (``k`` of ``n``; an empty
        denominator gives NaN); the Youden index the Wald interval of Youden (1950), clipped
        to [-1, 1], with ``k`` missing and ``n`` the number of cases.
    """
    from her2dlr.evaluate.clustered import has_clusters

    if has_clusters(clusters):
        return _clustered_threshold_metrics_ci(y, p, threshold, level, clusters)
    yy, pp = check_binary_probs(y, p, where="threshold_metrics_ci", probabilities=False)
    z = _z(level, "threshold_metrics_ci")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not np.isfinite(threshold):
        raise param_error("threshold_metrics_ci", "threshold", "a finite number", threshold)
    m = threshold_metrics(yy, pp, float(threshold))
    tp, fp, tn, fn = m["tp"], m["fp"], m["tn"], m["fn"]
    counts = {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp), "ppv": (tp, tp + fp),
              "npv": (tn, tn + fn), "accuracy": (tp + tn, len(yy))}
    rows = []
    for metric, (k, n) in counts.items():
        lo, hi = wilson_ci(k, n, level)
        rows.append({"metric": metric, "value": k / n if n else np.nan, "k": k, "n": n, "ci_low": lo, "ci_high": hi,
                     "method": "wilson"})
    sens, spec = m["sensitivity"], m["specificity"]
    se = np.sqrt(sens * (1 - sens) / (tp + fn) + spec * (1 - spec) / (tn + fp))
    j = sens + spec - 1.0
    rows.append({"metric": "youden", "value": j, "k": pd.NA, "n": len(yy), "ci_low": max(-1.0, j - z * se),
                 "ci_high": min(1.0, j + z * se), "method": "wald (Youden 1950)"})
    return _metric_frame(rows)


def _clustered_threshold_metrics_ci(y: Any, p: Any, threshold: float, level: float, clusters: Any) -> pd.DataFrame:
    """:func:`threshold_metrics_ci` with patient-clustered intervals."""
    from her2dlr.evaluate.clustered import clustered_proportion_ci

    yy, pp = check_binary_probs(y, p, where="threshold_metrics_ci", probabilities=False)
    z = _z(level, "threshold_metrics_ci")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not np.isfinite(threshold):
        raise param_error("threshold_metrics_ci", "threshold", "a finite number", threshold)
    c = np.asarray(clusters)
    if len(c) != len(yy):
        raise InputError(f"threshold_metrics_ci: clusters has {len(c)} values but y has {len(yy)}.")
    codes = pd.factorize(pd.Series(c).astype(str))[0]
    pred = (pp >= float(threshold)).astype(int)
    parts = {"sensitivity": (yy == 1, pred == 1), "specificity": (yy == 0, pred == 0),
             "ppv": (pred == 1, yy == 1), "npv": (pred == 0, yy == 0), "accuracy": (np.ones_like(yy, bool), pred == yy)}
    rows = []
    for metric, (among, hit) in parts.items():
        r = clustered_proportion_ci(hit[among].astype(int), codes[among], level=level)
        rows.append({"metric": metric, **{k: r[k] for k in ("value", "k", "n", "ci_low", "ci_high", "method")}})
    # Youden J = sens + spec - 1: ratio-estimator variances plus their covariance within patients
    n_c = int(codes.max()) + 1
    pos, neg = yy == 1, yy == 0
    big_m, big_n = pos.sum(), neg.sum()
    sens, spec = rows[0]["value"], rows[1]["value"]
    d_pos = np.bincount(codes[pos], weights=(pred[pos] == 1) - sens, minlength=n_c)
    d_neg = np.bincount(codes[neg], weights=(pred[neg] == 0) - spec, minlength=n_c)
    var = (d_pos ** 2).sum() / big_m ** 2 + (d_neg ** 2).sum() / big_n ** 2 + 2 * (d_pos * d_neg).sum() / (big_m * big_n)
    j = sens + spec - 1.0
    se = float(np.sqrt(max(var, 0.0)))
    rows.append({"metric": "youden", "value": j, "k": pd.NA, "n": len(yy), "ci_low": max(-1.0, j - z * se),
                 "ci_high": min(1.0, j + z * se), "method": "wald (patient-clustered)"})
    return _metric_frame(rows)


def _resampled_metric(metric: str, yb: np.ndarray, pb: np.ndarray, threshold: float) -> np.ndarray:
    """One metric per bootstrap resample (rows of ``yb`` / ``pb``); NaN for an empty denominator."""
    if metric == "auc":
        return resampled_aucs(yb, pb)
    if metric == "brier":
        return ((pb - yb) ** 2).mean(axis=1)
    pred = pb >= threshold
    pos = yb == 1
    tp = (pred & pos).sum(axis=1)
    fp = (pred & ~pos).sum(axis=1)
    tn = (~pred & ~pos).sum(axis=1)
    fn = (~pred & pos).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        return {"accuracy": (tp + tn) / yb.shape[1], "youden": sens + spec - 1.0, "sensitivity": sens,
                "specificity": spec, "ppv": tp / (tp + fp), "npv": tn / (tn + fn)}[metric]


def bootstrap_compare(
    y: Any,
    p_a: Any,
    p_b: Any,
    threshold_a: float = 0.5,
    threshold_b: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    stratified: bool = True,
    *,
    metrics: Sequence[str] = ("auc", "accuracy", "youden"),
    level: float = 0.95,
) -> pd.DataFrame:
    """Paired bootstrap comparison of two models scored on the same cases.

    Each resample draws cases with replacement (``stratified`` keeps the class counts) and
    computes every metric for both models on the same cases; the difference ``a - b`` is
    summarised by its percentile interval and a two-sided p-value
    ``min(1, 2 * (min(#{d* <= 0}, #{d* >= 0}) + 1) / (n_boot + 1))`` (the share of the
    bootstrap distribution on the far side of zero, doubled; never 0).

    Parameters
    ----------
    y : array-like of shape (n_cases,)
        0/1 labels.
    p_a, p_b : array-like of shape (n_cases,)
        Scores of the two models (probabilities for ``"brier"``).
    threshold_a, threshold_b : float, default=0.5
        Operating thresholds (positive when ``p >= threshold``), chosen on training data.
    n_boot : int, default=1000
    seed : int, default=0
    stratified : bool, default=True
    metrics : sequence of str, default=("auc", "accuracy", "youden")
        Any of :data:`COMPARE_METRICS`.
    level : float, default=0.95

    Returns
    -------
    DataFrame indexed by ``metric``
        Columns ``a, b, diff, ci_low, ci_high, p_value, se, n_boot``: the metrics on all cases,
        their difference, the percentile CI and p-value of the difference, the bootstrap SD of
        the difference and the number of resamples where it was defined.
    """
    yy, pa = check_binary_probs(y, p_a, where="bootstrap_compare", probabilities=False, name="p_a")
    _, pb = check_binary_probs(yy, p_b, where="bootstrap_compare", probabilities=False, name="p_b")
    _z(level, "bootstrap_compare")
    metrics = list(metrics)
    if not metrics:
        raise param_error("bootstrap_compare", "metrics", "a non-empty list of " + ", ".join(COMPARE_METRICS), metrics)
    for metric in metrics:
        check_choice("bootstrap_compare", "metrics", metric, COMPARE_METRICS)
    rng = np.random.default_rng(seed)
    idx = bootstrap_indices(yy, n_boot, rng, stratified=stratified)
    yb = yy[idx]
    alpha = (1 - level) / 2
    rows = []
    for metric in metrics:
        full_a = _resampled_metric(metric, yy[None, :], pa[None, :], threshold_a)[0]
        full_b = _resampled_metric(metric, yy[None, :], pb[None, :], threshold_b)[0]
        d = _resampled_metric(metric, yb, pa[idx], threshold_a) - _resampled_metric(metric, yb, pb[idx], threshold_b)
        d = d[np.isfinite(d)]
        if len(d) == 0:
            lo = hi = p = se = np.nan
        else:
            lo, hi = np.quantile(d, [alpha, 1 - alpha])
            far = min(int((d <= 0).sum()), int((d >= 0).sum()))
            p = min(1.0, 2.0 * (far + 1) / (len(d) + 1))
            se = float(d.std(ddof=1)) if len(d) > 1 else np.nan
        rows.append({"metric": metric, "a": float(full_a), "b": float(full_b), "diff": float(full_a - full_b),
                     "ci_low": float(lo), "ci_high": float(hi), "p_value": float(p), "se": se, "n_boot": len(d)})
    return pd.DataFrame(rows).set_index("metric")


def delong_unpaired(y1: Any, p1: Any, y2: Any, p2: Any, *, level: float = 0.95,
                    distribution: str = "normal") -> dict[str, float]:
    """Compare the AUCs of two independent cohorts (unpaired DeLong test, two-sided).

    The statistic is ``D = (AUC1 - AUC2) / sqrt(var1 + var2)`` with DeLong variances. With
    ``distribution="normal"`` (default) it is referred to the standard normal (a z-test);
    with ``"t"`` to Student's t with the Welch-Satterthwaite degrees of freedom
    ``(var1 + var2)^2 / (var1^2 / (n1 - 1) + var2^2 / (n2 - 1))``, which is what pROC's
    ``roc.test(roc1, roc2, method = "delong", paired = FALSE)`` reports (its ``roc`` with
    ``direction = "<"``). The two p-values differ little unless a cohort is small.

    Parameters
    ----------
    y1, p1 : array-like of shape (n_cases_1,)
        Labels and scores of cohort 1.
    y2, p2 : array-like of shape (n_cases_2,)
        Labels and scores of cohort 2.
    level : float, default=0.95
        Level of the CI of the difference (normal, ``difference +/- z * se``).
    distribution : {"normal", "t"}, default="normal"
        Reference distribution of the p-value.

    Returns
    -------
    dict
        ``auc_1, auc_2, var_1, var_2, n_1, n_2, difference, se, z, df, p_value, ci_low,
        ci_high, distribution``.
    """
    z_crit = _z(level, "delong_unpaired")
    check_choice("delong_unpaired", "distribution", distribution, ("normal", "t"))
    out: dict[str, Any] = {}
    for i, (yy, pp) in enumerate(((y1, p1), (y2, p2)), start=1):
        yi, pi = check_binary_probs(yy, pp, where=f"delong_unpaired (cohort {i})", probabilities=False,
                                    name=f"p{i}")
        aucs, cov = delong_covariance(yi, pi)
        out[f"auc_{i}"], out[f"var_{i}"], out[f"n_{i}"] = float(aucs[0]), float(cov[0, 0]), len(yi)
    diff = out["auc_1"] - out["auc_2"]
    var = out["var_1"] + out["var_2"]
    se = float(np.sqrt(var))
    df = var**2 / (out["var_1"] ** 2 / (out["n_1"] - 1) + out["var_2"] ** 2 / (out["n_2"] - 1)) if var > 0 else np.nan
    if se == 0:
        z, p = (0.0, 1.0) if diff == 0 else (float(np.sign(diff) * np.inf), 0.0)
    else:
        z = diff / se
        p = float(2 * (stats.norm.sf(abs(z)) if distribution == "normal" else stats.t.sf(abs(z), df)))
    out.update(difference=diff, se=se, z=float(z), df=float(df), p_value=p, ci_low=diff - z_crit * se,
               ci_high=diff + z_crit * se, distribution=distribution)
    return out


def _metric_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """Threshold-metric rows as a table indexed by metric, counts as nullable integers."""
    out = pd.DataFrame(rows).set_index("metric")
    out["k"] = out["k"].astype("Int64")
    out["n"] = out["n"].astype("Int64")
    return out
