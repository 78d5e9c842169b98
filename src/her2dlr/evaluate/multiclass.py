"""Metrics of a multi-class model (HER2-zero / HER2-low / HER2-positive): one-vs-rest AUCs with DeLong
intervals, the macro AUC with a stratified bootstrap interval, and the confusion matrix.

The macro AUC is the unweighted mean of the one-vs-rest AUCs (scikit-learn's
``roc_auc_score(..., multi_class="ovr", average="macro")``). Its interval comes from resampling
cases within each true class (the class counts stay fixed), every class's AUC recomputed on the
same resample, so the correlation between the one-vs-rest AUCs is kept.

With ``clusters`` (the patient of each case) where some patient has several cases, both
intervals account for it, as the binary metrics do: the one-vs-rest AUCs get Obuchowski's
clustered interval (:func:`her2dlr.evaluate.clustered.auc_interval`) and the bootstrap resamples
whole patients within the strata of their (first case's) class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.evaluate.delong import delong_auc_ci
from her2dlr.evaluate.metrics import resampled_aucs

__all__ = ["MulticlassResult", "multiclass_metrics"]


@dataclass(frozen=True)
class MulticlassResult:
    """Outcome of :func:`multiclass_metrics`.

    Attributes
    ----------
    per_class : DataFrame of shape (n_classes, 8)
        ``class, name, n_pos, n_neg, auc, se, ci_low, ci_high`` (one-vs-rest, DeLong).
    macro_auc, macro_ci_low, macro_ci_high : float
        Mean one-vs-rest AUC and its stratified bootstrap interval.
    confusion : DataFrame of shape (n_classes, n_classes)
        Counts; rows the true class, columns the predicted class (largest probability).
    accuracy, balanced_accuracy : float
    level : float
    n_boot : int
    ci_method : str
        ``"delong / stratified bootstrap"``, or ``"obuchowski / patient bootstrap"`` with clusters.
    """

    per_class: pd.DataFrame
    macro_auc: float
    macro_ci_low: float
    macro_ci_high: float
    confusion: pd.DataFrame
    accuracy: float
    balanced_accuracy: float
    level: float
    n_boot: int
    ci_method: str = "delong / stratified bootstrap"

    @property
    def summary(self) -> pd.DataFrame:
        """One row per class plus a ``macro`` row: AUC and interval."""
        macro = pd.DataFrame([{"class": "macro", "name": "macro (mean one-vs-rest)",
                               "n_pos": int(self.per_class["n_pos"].sum()), "n_neg": np.nan,
                               "auc": self.macro_auc, "se": np.nan, "ci_low": self.macro_ci_low,
                               "ci_high": self.macro_ci_high}])
        return pd.concat([self.per_class.astype({"class": object}), macro], ignore_index=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "per_class": self.per_class.to_dict(orient="records"), "macro_auc": self.macro_auc,
            "macro_ci_low": self.macro_ci_low, "macro_ci_high": self.macro_ci_high,
            "confusion": self.confusion.to_numpy().tolist(), "classes": list(map(str, self.confusion.index)),
            "accuracy": self.accuracy, "balanced_accuracy": self.balanced_accuracy, "level": self.level,
            "n_boot": self.n_boot, "ci_method": self.ci_method,
        }


def _check(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 3:
        raise InputError(f"multiclass_metrics: proba must have shape (n_cases, n_classes >= 3); got {p.shape}. "
                         "For two classes use metrics_table / auc_ci.")
    if p.shape[0] != y.size:
        raise InputError(f"multiclass_metrics: proba has {p.shape[0]} rows but y_true has {y.size} values.")
    if not np.isfinite(p).all():
        raise InputError(f"multiclass_metrics: proba holds {int((~np.isfinite(p)).sum())} missing or infinite value(s).")
    try:
        yi = y.astype(np.int64)
    except (TypeError, ValueError):
        raise InputError("multiclass_metrics: y_true must hold class numbers 0 .. n_classes - 1.") from None
    if not np.array_equal(yi, y.astype(np.float64)) or yi.min() < 0 or yi.max() >= p.shape[1]:
        raise InputError(f"multiclass_metrics: y_true must hold class numbers 0 .. {p.shape[1] - 1} "
                         f"(one per proba column); got values {sorted(set(y.tolist()))[:8]}.")
    counts = np.bincount(yi, minlength=p.shape[1])
    if (counts == 0).any():
        missing = [int(k) for k in np.flatnonzero(counts == 0)]
        raise InputError(f"multiclass_metrics: class(es) {missing} have no case; a one-vs-rest AUC needs every class.")
    return yi, p


def _weighted_aucs(pos: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``score`` for ``pos`` under each row of case weights (n_boot, n_cases); ties count one half."""
    order = np.argsort(score, kind="stable")
    s, pos, w = score[order], pos[order], weights[:, order]
    neg_cum = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w * ~pos, axis=1)], axis=1)
    left = np.searchsorted(s, s, side="left")  # first case with an equal score
    right = np.searchsorted(s, s, side="right")  # one past the last
    below = neg_cum[:, left] + 0.5 * (neg_cum[:, right] - neg_cum[:, left])
    w_pos = (w * pos).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w * pos * below).sum(axis=1) / (w_pos * neg_cum[:, -1])


def _cluster_boot_macro(y: np.ndarray, p: np.ndarray, codes: np.ndarray, n_boot: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Macro AUC of ``n_boot`` resamples of whole clusters, drawn within the strata of their first case's class.

    A resample is a count per cluster (how often it was drawn); every case of a cluster carries
    that count as its weight, so the AUCs of all resamples are computed at once.
    """
    ids, first, case_cluster = np.unique(codes, return_index=True, return_inverse=True)
    stratum = y[first]
    counts = np.zeros((n_boot, len(ids)))
    for c in np.unique(stratum):
        members = np.flatnonzero(stratum == c)
        counts[:, members] = rng.multinomial(len(members), np.full(len(members), 1.0 / len(members)), size=n_boot)
    weights = counts[:, case_cluster]
    macro = np.mean([_weighted_aucs(y == c, p[:, c], weights) for c in range(p.shape[1])], axis=0)
    return macro[np.isfinite(macro)]


def multiclass_metrics(
    y_true: Any, proba: Any, *, class_names: list[str] | None = None, level: float = 0.95, n_boot: int = 2000,
    seed: int = 0, clusters: Any | None = None,
) -> MulticlassResult:
    """One-vs-rest AUCs, macro AUC with interval, confusion matrix, accuracy of a multi-class model.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
        True class numbers 0 .. n_classes - 1 (every class present).
    proba : array-like of shape (n_cases, n_classes)
        Predicted probability (or any score) of each class; the predicted class is the largest.
    class_names : list of str, optional
        Names of the classes (e.g. ``HER2_CLASSES["her2_three_class"]``).
    level : float, default 0.95
    n_boot : int, default 2000
        Bootstrap resamples of the macro AUC interval.
    seed : int, default 0
    clusters : array-like of shape (n_cases,), optional
        Patient of each case: when a patient has several cases the intervals are clustered (see
        the module docstring).

    Returns
    -------
    MulticlassResult

    Examples
    --------
    >>> r = multiclass_metrics([0, 1, 2, 0, 1, 2], [[.8, .1, .1], [.2, .7, .1], [.1, .2, .7],
    ...                                             [.5, .4, .1], [.3, .3, .4], [.2, .2, .6]], n_boot=200)
    >>> round(r.macro_auc, 3), int(np.trace(r.confusion.to_numpy()))
    (0.958, 5)
    """
    y, p = _check(y_true, proba)
    k = p.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    if len(names) != k:
        raise InputError(f"multiclass_metrics: {len(names)} class_names for {k} proba columns.")
    from her2dlr.evaluate.clustered import auc_interval, has_clusters

    clustered = has_clusters(clusters)
    if clustered and len(np.asarray(clusters).ravel()) != len(y):
        raise InputError(f"multiclass_metrics: {len(np.asarray(clusters).ravel())} clusters for {len(y)} cases.")
    rows = []
    for c in range(k):
        r = (auc_interval((y == c).astype(int), p[:, c], clusters, level=level) if clustered
             else delong_auc_ci((y == c).astype(int), p[:, c], level=level))
        rows.append({"class": c, "name": names[c], "n_pos": r.n_pos, "n_neg": r.n_neg, "auc": r.auc, "se": r.se,
                     "ci_low": r.ci_low, "ci_high": r.ci_high})
    per_class = pd.DataFrame(rows)
    rng = np.random.default_rng(seed)
    if clustered:
        codes = pd.Series(np.asarray(clusters).ravel()).astype(str).to_numpy()
        macro_boot = _cluster_boot_macro(y, p, codes, n_boot, rng)
    else:
        idx = np.concatenate([rng.choice(np.flatnonzero(y == c), (n_boot, int((y == c).sum()))) for c in range(k)],
                             axis=1)
        yb = y[idx]
        macro_boot = np.mean([resampled_aucs((yb == c).astype(int), p[idx, c]) for c in range(k)], axis=0)
    lo, hi = np.quantile(macro_boot, [(1 - level) / 2, (1 + level) / 2])
    predicted = p.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y, predicted), 1)
    recall = np.diag(confusion) / confusion.sum(axis=1)
    return MulticlassResult(
        per_class=per_class, macro_auc=float(per_class["auc"].mean()), macro_ci_low=float(lo), macro_ci_high=float(hi),
        confusion=pd.DataFrame(confusion, index=pd.Index(names, name="true"), columns=pd.Index(names, name="predicted")),
        accuracy=float(np.trace(confusion) / len(y)), balanced_accuracy=float(recall.mean()), level=level, n_boot=n_boot,
        ci_method="obuchowski / patient bootstrap" if clustered else "delong / stratified bootstrap",
    )
