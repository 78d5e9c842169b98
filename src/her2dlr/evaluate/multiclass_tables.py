"""Run-folder tables of multi-class models, from their prediction rows (``prob_0 .. prob_<k-1>``).

:func:`multiclass_tables` is the multi-class twin of :func:`her2dlr.evaluate.metrics.metrics_table`,
with the same scopes (``holdout`` / ``final`` for single fits; ``r<k>`` for the pooled
out-of-fold rows of repetition k and ``mean`` for their mean; ``fold-mean`` for the cross-validated
``train`` / ``train_oof`` rows) and every number from :func:`her2dlr.evaluate.multiclass.multiclass_metrics`:

``metrics``    rows in :data:`~her2dlr.evaluate.metrics.METRIC_COLUMNS` (``metrics.csv``): ``auc``,
               ``ci_low``, ``ci_high`` hold the macro one-vs-rest AUC and its stratified bootstrap
               interval (``ci_method`` says so), ``accuracy`` the share of cases whose most probable
               class is the true one, and an extra last column ``balanced_accuracy`` the mean of the
               classes' recalls; the binary columns (sensitivity, threshold ...) stay empty;
``per_class``  (``multiclass.csv``) per scope, one row per class (one-vs-rest AUC with DeLong CI)
               and a ``macro`` row, with accuracy and balanced accuracy;
``confusion``  (``confusion.csv``) per scope, long form: ``true``, ``predicted`` (class names), ``n``.

When a patient has several cases (``patient_id``) the intervals are patient-clustered, as in the
binary table: Obuchowski's for the one-vs-rest AUCs and a bootstrap of whole patients for the
macro AUC; ``ci_method`` says which were used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError
from her2dlr.evaluate.metrics import METRIC_COLUMNS
from her2dlr.evaluate.multiclass import multiclass_metrics

__all__ = ["CI_METHOD", "CONFUSION_COLUMNS", "PER_CLASS_COLUMNS", "MulticlassTables", "multiclass_tables"]

#: Start of ``ci_method`` of the macro AUC rows (then the per-class / macro interval methods).
CI_METHOD = "macro one-vs-rest"
PER_CLASS_COLUMNS = ["model", "split", "scope", "class", "name", "n_pos", "n_neg", "auc", "se", "ci_low", "ci_high",
                     "accuracy", "balanced_accuracy"]
CONFUSION_COLUMNS = ["model", "split", "scope", "true", "predicted", "n"]
_CV_FOLD = re.compile(r"^r(\d+)f(\d+)$")


@dataclass(frozen=True)
class MulticlassTables:
    """Outcome of :func:`multiclass_tables` (see the module docstring)."""

    metrics: pd.DataFrame
    per_class: pd.DataFrame
    confusion: pd.DataFrame


def _proba_columns(predictions: pd.DataFrame) -> list[str]:
    cols = sorted((c for c in predictions.columns if re.fullmatch(r"prob_\d+", str(c))), key=lambda c: int(c[5:]))
    if len(cols) < 3 or cols != [f"prob_{k}" for k in range(len(cols))]:
        raise InputError(f"multiclass_tables: predictions need columns prob_0 .. prob_<k-1> (k >= 3); got {cols}.")
    return cols


def _scope(frame: pd.DataFrame, cols: list[str], names: list[str], key: dict[str, str], level: float, n_boot: int,
           seed: int) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    y = frame["label"].astype(int).to_numpy()
    proba = frame[cols].to_numpy(dtype=float)
    row: dict[str, Any] = {**key, "n": len(y), "n_pos": np.nan, "threshold": np.nan}
    try:
        clusters = frame["patient_id"].to_numpy() if "patient_id" in frame.columns else None
        r = multiclass_metrics(y, proba, class_names=names, level=level, n_boot=n_boot, seed=seed, clusters=clusters)
    except InputError:  # a class absent from this subset (a small training fold): accuracy only
        row.update(accuracy=float((proba.argmax(axis=1) == y).mean()))  # balanced: a class's recall is undefined
        return row, [], []
    row.update(auc=r.macro_auc, ci_low=r.macro_ci_low, ci_high=r.macro_ci_high, ci_method=f"{CI_METHOD}: {r.ci_method}",
               accuracy=r.accuracy, balanced_accuracy=r.balanced_accuracy)
    per = [{**key, **rec, "accuracy": r.accuracy, "balanced_accuracy": r.balanced_accuracy}
           for rec in r.summary.to_dict("records")]
    conf = [{**key, "true": t, "predicted": p, "n": int(r.confusion.loc[t, p])}
            for t in r.confusion.index for p in r.confusion.columns]
    return row, per, conf


def _mean(rows: list[dict[str, Any]], key: dict[str, str]) -> dict[str, Any]:
    frame = pd.DataFrame(rows)
    out: dict[str, Any] = {**key, "n": round(float(frame["n"].mean())), "n_pos": np.nan, "threshold": np.nan}
    for col in ("auc", "ci_low", "ci_high", "accuracy", "balanced_accuracy"):
        if col in frame.columns:
            out[col] = float(frame[col].mean())
    if "auc" in frame.columns:
        out["auc_min"], out["auc_max"] = float(frame["auc"].min()), float(frame["auc"].max())
        out["ci_method"] = "/".join(sorted(set(frame["ci_method"].dropna().astype(str)))) or None
    return out


def multiclass_tables(predictions: pd.DataFrame, *, class_names: list[str] | None = None, level: float = 0.95,
                      n_boot: int = 2000, seed: int = 0) -> MulticlassTables:
    """Metrics, per-class AUCs and confusion matrices of multi-class models, per model, split and scope.

    Parameters
    ----------
    predictions : DataFrame
        Columns ``model, fold, split, label`` and ``prob_0 .. prob_<k-1>`` (k >= 3), as written by
        :mod:`her2dlr.learn.multiclass_cv`.
    class_names : list of str, optional
        Names of the classes in class order (default ``"0"``, ``"1"`` ...).
    level : float, default=0.95
    n_boot : int, default=2000
        Bootstrap resamples of each macro AUC interval.
    seed : int, default=0

    Returns
    -------
    MulticlassTables
    """
    need = {"model", "fold", "split", "label"}
    if not need.issubset(predictions.columns):
        raise InputError(f"multiclass_tables: predictions lack column(s) {sorted(need - set(predictions.columns))}.")
    cols = _proba_columns(predictions)
    names = list(class_names) if class_names is not None else [str(k) for k in range(len(cols))]
    if len(names) != len(cols):
        raise InputError(f"multiclass_tables: {len(names)} class names for {len(cols)} probability columns.")
    rows: list[dict[str, Any]] = []
    per_class: list[dict[str, Any]] = []
    confusion: list[dict[str, Any]] = []

    def add(frame: pd.DataFrame, key: dict[str, str]) -> dict[str, Any]:
        row, per, conf = _scope(frame, cols, names, key, level, n_boot, seed)
        per_class.extend(per)
        confusion.extend(conf)
        return row

    for (model, split), frame in predictions.groupby(["model", "split"], sort=True):
        frame = frame.dropna(subset=cols)
        folds = frame["fold"].astype(str)
        is_cv = folds.str.match(_CV_FOLD.pattern)
        for fold in sorted(set(folds[~is_cv])):
            rows.append(add(frame[folds == fold], {"model": model, "split": split, "scope": fold}))
        if not is_cv.any():
            continue
        cv = frame[is_cv]
        if split == "test":
            reps = folds[is_cv].str.extract(_CV_FOLD.pattern)[0].astype(int)
            per_rep = [add(cv[reps == rep], {"model": model, "split": split, "scope": f"r{rep}"})
                       for rep in sorted(reps.unique())]
            rows.extend(per_rep)
            rows.append(_mean(per_rep, {"model": model, "split": split, "scope": "mean"}))
        else:
            per_fold = [_scope(cv[folds[is_cv] == f], cols, names, {}, level, n_boot, seed)[0]
                        for f in sorted(folds[is_cv].unique())]
            rows.append(_mean(per_fold, {"model": model, "split": split, "scope": "fold-mean"}))
    metrics = pd.DataFrame(rows).reindex(columns=[*METRIC_COLUMNS, "balanced_accuracy"])
    return MulticlassTables(metrics, pd.DataFrame(per_class, columns=PER_CLASS_COLUMNS),
                            pd.DataFrame(confusion, columns=CONFUSION_COLUMNS))
