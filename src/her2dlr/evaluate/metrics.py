"""Classification metrics with confidence intervals, and the per-model, per-split results table.

Threshold metrics (accuracy, sensitivity, specificity, PPV, NPV, Youden index) use a threshold
chosen on training predictions (:mod:`her2dlr.learn.thresholds`) and applied unchanged.

**Repeated cross-validation.** Out-of-fold predictions of one repetition cover every case once,
so they are pooled per repetition: one AUC (with its DeLong CI) and one set of threshold metrics
per repetition, each case classified with the threshold of the fold that predicted it. The
summary row (``scope="mean"``) gives the mean over repetitions of each metric; its ``ci_low`` /
``ci_high`` are the means of the per-repetition DeLong limits (a CI of the width one repetition
supports, centred near the mean), and ``auc_min`` / ``auc_max`` give the range over repetitions.
Pooled out-of-fold predictions of different folds come from different models, so that CI is
approximate; it is what the CV literature reports (e.g. pROC on pooled OOF predictions).

**Patients with several cases.** When the predictions carry ``patient_id`` and some patient
has several rows, the AUC interval is Obuchowski's patient-clustered one
(:mod:`her2dlr.evaluate.clustered`), otherwise DeLong's; ``ci_method`` records which
(``"obuchowski"`` / ``"delong"``; on ``mean`` rows the methods of the repetitions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from her2dlr.checks import binary_target
from her2dlr.errors import InputError
from her2dlr.evaluate.delong import AUCResult, delong_auc_ci, placement_values

__all__ = [
    "METRIC_COLUMNS",
    "auc_ci",
    "bootstrap_auc_ci",
    "bootstrap_indices",
    "check_binary_probs",
    "metrics_table",
    "resampled_aucs",
    "threshold_metrics",
]

METRIC_COLUMNS = [
    "model", "split", "scope", "n", "n_pos", "auc", "ci_low", "ci_high", "ci_method", "auc_min", "auc_max",
    "accuracy", "sensitivity", "specificity", "ppv", "npv", "youden", "threshold",
]


def auc_ci(y_true: Any, score: Any, *, level: float = 0.95) -> AUCResult:
    """AUC with its DeLong confidence interval (see :func:`her2dlr.evaluate.delong.delong_auc_ci`)."""
    return delong_auc_ci(y_true, score, level=level)


def bootstrap_auc_ci(y_true: Any, score: Any, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                     stratified: bool = True) -> AUCResult:
    """AUC with a percentile bootstrap CI (resampling cases; stratified keeps the class counts).

    Use it to check DeLong or for statistics with no closed form. Resamples with a single
    class (unstratified only) are drawn again. Vectorised: all resamples are ranked at once.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
    score : array-like of shape (n_cases,)
    n_boot : int, default=2000
    level : float, default=0.95
    seed : int, default=0
    stratified : bool, default=True

    Returns
    -------
    AUCResult
        ``se`` is the SD of the bootstrap AUCs; ``method="bootstrap"``.
    """
    y = binary_target(y_true, where="bootstrap_auc_ci")
    s = np.asarray(score, dtype=np.float64).ravel()
    if s.shape != y.shape:
        raise InputError(f"bootstrap_auc_ci: score has {s.size} values but y_true has {len(y)}.")
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    idx = bootstrap_indices(y, n_boot, rng, stratified=stratified)
    aucs = resampled_aucs(y[idx], s[idx])
    auc = float(placement_values(y, s)[0][0])
    lo, hi = np.quantile(aucs, [(1 - level) / 2, (1 + level) / 2])
    return AUCResult(auc, float(aucs.std(ddof=1)), float(lo), float(hi), level, len(pos), len(neg), "bootstrap")


def check_binary_probs(y: Any, p: Any, *, where: str, probabilities: bool = True,
                       name: str = "p") -> tuple[np.ndarray, np.ndarray]:
    """Check 0/1 labels and matching predictions; return them as int and float arrays.

    Parameters
    ----------
    y : array-like of shape (n_cases,)
        0/1 (or boolean) labels with both classes present.
    p : array-like of shape (n_cases,)
        Predictions; finite, and in [0, 1] when ``probabilities``.
    where : str
        Name of the calling function, for messages.
    probabilities : bool, default=True
    name : str, default="p"
        Name of the prediction argument, for messages.

    Raises
    ------
    InputError
        Labels not 0/1, missing, a single class, a length mismatch, or bad predictions.
    """
    yy = np.asarray(y)
    if yy.ndim != 1:
        raise InputError(f"{where}: y must be one-dimensional; got shape {yy.shape}.")
    if yy.dtype == bool:
        yy = yy.astype(np.int64)
    try:
        yf = yy.astype(np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: y must hold 0/1 labels; got values {pd.unique(yy.ravel()).tolist()[:5]}.") from None
    if np.isnan(yf).any():
        raise InputError(f"{where}: y has {int(np.isnan(yf).sum())} missing label(s).")
    if not np.isin(yf, (0.0, 1.0)).all():
        bad = sorted(set(yf[~np.isin(yf, (0.0, 1.0))].tolist()))[:5]
        raise InputError(f"{where}: y must be binary (0/1); got value(s) {bad}.")
    yi = yf.astype(np.int64)
    try:
        pp = p.to_numpy(dtype=np.float64) if isinstance(p, pd.Series) else np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        values = pd.unique(np.asarray(p).ravel()).tolist()[:5]
        raise InputError(f"{where}: {name} must be numbers; got {values}.") from None
    if pp.ndim != 1:
        raise InputError(f"{where}: {name} must be one-dimensional; got shape {pp.shape}.")
    if len(pp) != len(yi):
        raise InputError(f"{where}: length mismatch, y has {len(yi)} values but {name} has {len(pp)}.")
    if not np.isfinite(pp).all():
        raise InputError(f"{where}: {name} has {int((~np.isfinite(pp)).sum())} missing or infinite value(s).")
    if probabilities and ((pp < 0) | (pp > 1)).any():
        raise InputError(f"{where}: {name} must be probabilities in [0, 1]; got range "
                         f"[{pp.min():.4g}, {pp.max():.4g}].")
    n1 = int(yi.sum())
    if n1 == 0 or n1 == len(yi):
        raise InputError(f"{where}: y holds a single class ({n1} positive of {len(yi)}); both classes are needed.")
    return yi, pp


def bootstrap_indices(y: np.ndarray, n_boot: int, rng: np.random.Generator, *, stratified: bool = True) -> np.ndarray:
    """Case indices of ``n_boot`` bootstrap resamples, shape (n_boot, n_cases).

    Stratified resamples keep the class counts (positives first, then negatives); otherwise
    resamples with a single class are drawn again.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise InputError(f"The 'n_boot' parameter must be an int >= 1. Got {n_boot!r} instead.")
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if stratified:
        return np.concatenate([rng.choice(pos, (n_boot, len(pos))), rng.choice(neg, (n_boot, len(neg)))], axis=1)
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    m = y[idx].sum(axis=1)
    while ((m == 0) | (m == len(y))).any():
        bad = (m == 0) | (m == len(y))
        idx[bad] = rng.integers(0, len(y), (int(bad.sum()), len(y)))
        m = y[idx].sum(axis=1)
    return idx


def resampled_aucs(yb: np.ndarray, sb: np.ndarray) -> np.ndarray:
    """AUC of each row of resampled labels ``yb`` and scores ``sb`` (midranks, ties count 1/2)."""
    ranks = stats.rankdata(sb, axis=1)
    m = yb.sum(axis=1)
    return ((ranks * yb).sum(axis=1) - m * (m + 1) / 2.0) / (m * (yb.shape[1] - m))


def threshold_metrics(y_true: Any, prob: Any | None = None, threshold: float | None = None, *,
                      predicted: Any | None = None) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, PPV, NPV and Youden index at a threshold.

    Parameters
    ----------
    y_true : array-like of shape (n_cases,)
        0/1 labels.
    prob : array-like of shape (n_cases,), optional
    threshold : float, optional
        Positive when ``prob >= threshold``.
    predicted : array-like of shape (n_cases,), optional
        Classes already decided (instead of ``prob`` and ``threshold``).

    Returns
    -------
    dict
        ``tp, fp, tn, fn, accuracy, sensitivity, specificity, ppv, npv, youden``; a ratio with
        an empty denominator is NaN.
    """
    y = np.asarray(y_true).astype(int)
    if predicted is None:
        if prob is None or threshold is None:
            raise InputError("threshold_metrics needs either prob and threshold, or predicted classes.")
        pred = (np.asarray(prob, dtype=np.float64) >= threshold).astype(int)
    else:
        pred = np.asarray(predicted).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    sens, spec = ratio(tp, tp + fn), ratio(tn, tn + fp)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "accuracy": ratio(tp + tn, len(y)),
            "sensitivity": sens, "specificity": spec, "ppv": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "youden": sens + spec - 1.0}


def _classes(frame: pd.DataFrame, thresholds: Any) -> tuple[np.ndarray, float]:
    """Predicted classes of ``frame`` rows and the (mean) threshold used."""
    if thresholds is None:
        if "class" in frame.columns and frame["class"].notna().all():
            thr = frame["threshold"].mean() if "threshold" in frame.columns else float("nan")
            return frame["class"].astype(int).to_numpy(), float(thr)
        raise InputError("Predictions have no 'class' column: pass thresholds (chosen on training predictions).")
    if isinstance(thresholds, Mapping):
        keys = list(zip(frame["model"], frame["fold"]))
        try:
            values = np.array([thresholds[k] if k in thresholds else thresholds[k[1]] for k in keys], dtype=float)
        except KeyError as exc:
            raise InputError(f"No threshold for (model, fold) {exc.args[0]!r}; give one per (model, fold).") from None
    else:
        values = np.full(len(frame), float(thresholds))
    return (frame["prob"].to_numpy(dtype=float) >= values).astype(int), float(values.mean())


def _row(frame: pd.DataFrame, thresholds: Any, level: float) -> dict[str, Any]:
    y = frame["label"].astype(int).to_numpy()
    prob = frame["prob"].to_numpy(dtype=float)
    row: dict[str, Any] = {"n": len(y), "n_pos": int(y.sum())}
    if 0 < y.sum() < len(y):
        if min(y.sum(), len(y) - y.sum()) >= 2:
            from her2dlr.evaluate.clustered import auc_interval

            patients = frame["patient_id"].to_numpy() if "patient_id" in frame.columns else None
            res = auc_interval(y, prob, patients, level=level)
            row.update(auc=res.auc, ci_low=res.ci_low, ci_high=res.ci_high, ci_method=res.method)
        else:
            from sklearn.metrics import roc_auc_score

            row.update(auc=float(roc_auc_score(y, prob)), ci_low=np.nan, ci_high=np.nan)
    pred, thr = _classes(frame, thresholds)
    met = threshold_metrics(y, predicted=pred)
    row.update({k: met[k] for k in ("accuracy", "sensitivity", "specificity", "ppv", "npv", "youden")})
    row["threshold"] = thr
    return row


def metrics_table(predictions: pd.DataFrame, thresholds: Any = None, *, level: float = 0.95) -> pd.DataFrame:
    """Metrics per model and split (and per repetition for repeated CV).

    Parameters
    ----------
    predictions : DataFrame
        Columns ``model, fold, split, prob, label`` and ``class`` (or pass ``thresholds``).
    thresholds : None, float or dict, optional
        ``None``: use the ``class`` column (each row classified with its own fold's training
        threshold). A float: one threshold for all rows. A dict ``(model, fold) -> value`` (or
        ``fold -> value``), e.g. :meth:`her2dlr.learn.cv.CVResult.thresholds`.
    level : float, default=0.95

    Returns
    -------
    DataFrame with columns :data:`METRIC_COLUMNS`
        ``scope``: ``"holdout"`` / ``"final"`` for single fits; ``"r<k>"`` for the pooled
        out-of-fold rows of repetition k and ``"mean"`` for their mean (see the module notes);
        for CV ``train`` / ``train_oof`` rows (a case appears in several folds) ``"fold-mean"``:
        the mean of per-fold metrics.
    """
    need = {"model", "fold", "split", "prob", "label"}
    if not need.issubset(predictions.columns):
        raise InputError(f"metrics_table: predictions lack column(s) {sorted(need - set(predictions.columns))}.")
    if "prob_2" in predictions.columns and predictions["prob_2"].notna().any():
        raise InputError("metrics_table: these predictions are of a multi-class model (prob_0 .. prob_<k-1>), whose "
                         "'prob' is the predicted class's probability; use "
                         "her2dlr.evaluate.multiclass_tables.multiclass_tables.")
    rows: list[dict[str, Any]] = []
    for (model, split), frame in predictions.groupby(["model", "split"], sort=True):
        folds = frame["fold"].astype(str)
        is_cv = folds.str.match(r"^r\d+f\d+$")
        for fold in sorted(set(folds[~is_cv])):
            rows.append({"model": model, "split": split, "scope": fold,
                         **_row(frame[folds == fold], thresholds, level)})
        if not is_cv.any():
            continue
        cv = frame[is_cv]
        reps = folds[is_cv].str.extract(r"^r(\d+)f")[0].astype(int)
        if split == "test":
            per_rep = []
            for rep in sorted(reps.unique()):
                r = {"model": model, "split": split, "scope": f"r{rep}", **_row(cv[reps == rep], thresholds, level)}
                per_rep.append(r)
            rows.extend(per_rep)
            rows.append(_mean_row(model, split, "mean", per_rep))
        else:
            per_fold = [_row(cv[folds[is_cv] == f], thresholds, level) for f in sorted(folds[is_cv].unique())]
            rows.append(_mean_row(model, split, "fold-mean", per_fold))
    table = pd.DataFrame(rows)
    for col in METRIC_COLUMNS:
        if col not in table.columns:
            table[col] = np.nan
    return table[METRIC_COLUMNS]


def _mean_row(model: str, split: str, scope: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    frame = pd.DataFrame(rows)
    # per repetition every case appears once (n is the cohort); per fold, n is the mean fold size
    out: dict[str, Any] = {"model": model, "split": split, "scope": scope,
                           "n": round(float(frame["n"].mean())), "n_pos": round(float(frame["n_pos"].mean()))}
    for col in ("auc", "ci_low", "ci_high", "accuracy", "sensitivity", "specificity", "ppv", "npv", "youden",
                "threshold"):
        if col in frame.columns:
            out[col] = float(frame[col].mean())
    if "auc" in frame.columns:
        out["auc_min"], out["auc_max"] = float(frame["auc"].min()), float(frame["auc"].max())
    if "ci_method" in frame.columns:
        out["ci_method"] = "/".join(sorted(set(frame["ci_method"].dropna().astype(str)))) or None
    return out
