"""Nested cross-validation of a multi-class label (HER2-zero / HER2-low / HER2-positive).

The same procedure as the binary path (:mod:`her2dlr.learn.cv`, :mod:`her2dlr.learn.tuning`),
with the label's class numbers 0 .. k-1 kept as they are:

* the same outer folds (the manifest's ``split`` / ``fold_r*`` columns) and the same inner
  :class:`~sklearn.model_selection.StratifiedGroupKFold` on the patient / near-duplicate
  groups, lowered when a class has fewer groups, refused when a class has fewer than two;
* the selection steps are fitted inside every inner and outer training part; each step must
  accept several classes (``_multiclass``: t-test -> one-way ANOVA, Mann-Whitney ->
  Kruskal-Wallis, LASSO -> multinomial L1 logistic regression, see
  :mod:`her2dlr.learn.selection`); any other step is refused with its name;
* hyper-parameters are chosen by the median over the inner splits of the **macro one-vs-rest
  AUC** (the unweighted mean of the classes' one-vs-rest AUCs; ties as in
  :func:`~her2dlr.learn.tuning.median_auc_refit`), then the pipeline is refitted on all
  training rows.

There is no operating threshold: the predicted class is the one with the largest probability
(``argmax``), so nothing is chosen on training predictions and the ``threshold`` column is
empty (NaN); the model card's threshold says ``method: "argmax"``.

Predictions carry the DESIGN contract's columns plus ``prob_<k>``, the probability of class
``k`` for every class (they sum to 1). ``class`` is the argmax and ``prob`` is the probability
**of the predicted class** (the model's confidence in its answer): it is not a score to rank
cases by, so binary readers (ROC curves, calibration, ``metrics_table``) must not read it; they
recognise multi-class rows by their ``prob_<k>`` columns (:func:`is_multiclass_predictions`).
Use ``prob_<k>`` for one-vs-rest analyses (:mod:`her2dlr.evaluate.multiclass`).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from her2dlr.checks import class_target
from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.learn._univariate import column_auc
from her2dlr.learn.cv import (
    PREDICTION_COLUMNS,
    CVResult,
    FoldFit,
    fitted_outer_folds,
    learning_data,
    outer_cv_predictions,
    outer_folds,
)
from her2dlr.learn.fold_cache import FoldCache
from her2dlr.learn.selection import selection_funnel
from her2dlr.learn.thresholds import Threshold, ThresholdRule
from her2dlr.learn.tuning import (
    SearchSettings,
    Steps,
    TunedModel,
    _split_key,
    build_pipeline,
    candidate_settings,
    tuned_model,
)
from her2dlr.learn.zoo import get_model, model_grid
from her2dlr.radiomics.parallel import CLUSTER_BACKENDS, check_backend

__all__ = [
    "MULTICLASS_METHOD",
    "argmax_threshold",
    "check_multiclass_steps",
    "class_probability_rows",
    "fit_fold_multiclass",
    "is_multiclass_predictions",
    "label_classes",
    "macro_ovr_auc",
    "multiclass_inner_splitter",
    "multiclass_prediction_rows",
    "probability_columns",
    "run_multiclass_cv",
    "tune_multiclass",
]

log = logging.getLogger(__name__)

#: How a multi-class model turns probabilities into a class (recorded as the threshold's method).
MULTICLASS_METHOD = "argmax"


def argmax_threshold(n: int, source: str = "none") -> Threshold:
    """The "threshold" of a multi-class model: none, the class is the argmax; ``n`` training rows from ``source``."""
    return Threshold(float("nan"), MULTICLASS_METHOD, None, float("nan"), float("nan"), n, source)


def probability_columns(n_classes: int) -> list[str]:
    """``["prob_0", ..., "prob_<n-1>"]``."""
    return [f"prob_{k}" for k in range(n_classes)]


def is_multiclass_predictions(predictions: pd.DataFrame) -> bool:
    """Whether prediction rows come from a model of more than two classes (they have ``prob_2``)."""
    return "prob_2" in predictions.columns and bool(predictions["prob_2"].notna().any())


def label_classes(manifest: Manifest | pd.DataFrame, label: str = "label") -> int:
    """Number of distinct values of ``label`` among the included, labelled rows (0 when no such column)."""
    table = manifest.included if isinstance(manifest, Manifest) else manifest
    if isinstance(manifest, pd.DataFrame) and "include" in table.columns:
        table = table[table["include"].fillna(True).astype(bool)]
    if label not in table.columns:
        return 0
    return int(table[label].dropna().nunique())


def macro_ovr_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes that have both outcomes in ``y`` (NaN when none).

    Parameters
    ----------
    y : ndarray of shape (n_cases,)
        Class numbers 0 .. n_classes - 1.
    proba : ndarray of shape (n_cases, n_classes)

    Notes
    -----
    With every class present this is scikit-learn's
    ``roc_auc_score(y, proba, multi_class="ovr", average="macro")``; an inner validation part
    missing a class is scored on the classes it has instead of failing.
    """
    aucs = [column_auc(proba[:, [c]], (y == c).astype(int))[0] for c in range(proba.shape[1])
            if 0 < int((y == c).sum()) < len(y)]
    return float(np.mean(aucs)) if aucs else float("nan")


def check_multiclass_steps(selection: Steps, *, where: str = "learn.selection") -> None:
    """Refuse selection steps that only know two classes, naming them.

    Raises
    ------
    InputError
        A supervised step without a multi-class form (``_multiclass``).
    """
    from her2dlr.learn.tuning import as_steps

    for i, (name, step) in enumerate(as_steps(selection), start=1):
        if not _handles_classes(step):
            raise InputError(
                f"{where} step {i} ('{name}', {type(step).__name__}) only handles two classes; the label has more. "
                "Use a step with a multi-class form: variance, zscore, ttest (runs one-way ANOVA), mannwhitney "
                "(runs Kruskal-Wallis), anova, kruskal, pearson, greedy, mrmr, lasso (multinomial), rfe, chi2, "
                "mutual_info, icc."
            )


def _handles_classes(step: Any) -> bool:
    """Whether a step works with several classes: it ignores the label, has a multi-class form, or is a
    pipeline / column transformer (early fusion) of such steps."""
    from sklearn.compose import ColumnTransformer

    if isinstance(step, Pipeline):
        return all(_handles_classes(s) for _, s in step.steps)
    if isinstance(step, ColumnTransformer):
        return all(_handles_classes(t) for _, t, _ in step.transformers if not isinstance(t, str))
    return not getattr(step, "_needs_y", True) or bool(getattr(step, "_multiclass", False))


def multiclass_inner_splitter(y: np.ndarray, groups: np.ndarray, n_splits: int, random_state: int,
                              where: str = "the training fold") -> tuple[StratifiedGroupKFold, list[str]]:
    """StratifiedGroupKFold with ``n_splits`` lowered to the groups available in the rarest class."""
    notes: list[str] = []
    per_class = {int(c): len(np.unique(groups[y == c])) for c in np.unique(y)}
    rarest = min(per_class, key=per_class.get)
    n_groups = per_class[rarest]
    k = min(n_splits, n_groups)
    if k < 2:
        raise InputError(f"{where}: class {rarest} has only {n_groups} patient group(s); the inner search needs at "
                         "least 2 per class.")
    if k < n_splits:
        notes.append(f"{where}: inner CV lowered from {n_splits} to {k} splits (class {rarest} has {n_groups} groups)")
    return StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state), notes


def _full_proba(model: Any, Z: Any, n_classes: int) -> np.ndarray:
    """``predict_proba`` as (n_cases, n_classes) columns in class order, whatever classes the model saw."""
    out = np.zeros((len(Z), n_classes))
    out[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(Z)
    return out


def _evaluate_split(template: Pipeline, candidates: list[dict[str, Any]], X: pd.DataFrame, y: np.ndarray,
                    n_classes: int, train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Macro AUCs (n_settings,) and validation probabilities (n_settings, n_val, n_classes) on one inner split."""
    scores = np.full(len(candidates), np.nan)
    probs = np.full((len(candidates), len(val), n_classes), np.nan)
    errors: list[str] = []
    Xtr, Xva = X.iloc[train], X.iloc[val]
    by_selection: dict[tuple, list[int]] = {}
    for i, p in enumerate(candidates):
        by_selection.setdefault(_split_key(p), []).append(i)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for idx in by_selection.values():
            pipe = clone(template).set_params(**{k: v for k, v in candidates[idx[0]].items()
                                                 if not k.startswith("model__")})
            try:
                selection = pipe[:-1]
                Ztr = selection.fit_transform(Xtr, y[train]) if len(selection) else Xtr
                Zva = selection.transform(Xva) if len(selection) else Xva
            except Exception as exc:
                errors.append(f"selection failed: {type(exc).__name__}: {exc}")
                continue
            for i in idx:
                model = clone(pipe[-1]).set_params(**{k[7:]: v for k, v in candidates[i].items()
                                                      if k.startswith("model__")})
                try:
                    model.fit(Ztr, y[train])
                    probs[i] = _full_proba(model, Zva, n_classes)
                except Exception as exc:
                    errors.append(f"setting {candidates[i]} failed: {type(exc).__name__}: {exc}")
                    continue
                scores[i] = macro_ovr_auc(y[val], probs[i])
    return scores, probs, errors


def tune_multiclass(X: pd.DataFrame, y: Any, groups: Any, *, selection: Steps, model: str,
                    grid: Mapping[str, list[Any]] | None = None, params: Mapping[str, Any] | None = None,
                    settings: SearchSettings | None = None, n_classes: int | None = None,
                    where: str = "the training fold") -> TunedModel:
    """Inner-CV search picking the setting with the best median macro one-vs-rest AUC, then refit.

    Parameters
    ----------
    X : DataFrame of shape (n_cases, n_features)
        Training rows only.
    y : array-like of shape (n_cases,)
        Class numbers 0 .. n_classes - 1.
    groups : array-like of shape (n_cases,)
    selection, model, grid, params, settings, where
        As :func:`her2dlr.learn.tuning.tune`.
    n_classes : int, optional
        Number of classes of the task (default: ``max(y) + 1``).

    Returns
    -------
    TunedModel
        ``oof`` has shape (n_cases, n_classes); ``median_auc`` / ``mean_auc`` of ``results``
        are macro one-vs-rest AUCs.
    """
    settings = settings or SearchSettings()
    y = class_target(y, where=where)
    k = int(n_classes or y.max() + 1)
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise InputError(f"{where}: {len(groups)} groups for {len(y)} cases.")
    cv, notes = multiclass_inner_splitter(y, groups, settings.inner_splits, settings.random_state, where)
    candidates = candidate_settings(model_grid(model, grid), settings)
    template = build_pipeline(selection, model, params=params, random_state=settings.random_state)
    splits = list(cv.split(np.zeros(len(y)), y, groups))
    runs = Parallel(n_jobs=settings.n_jobs)(
        delayed(_evaluate_split)(template, candidates, X, y, k, tr, va) for tr, va in splits)
    return tuned_model(template, candidates, X, y, cv, splits, runs, notes, where, oof_columns=k)


def fit_fold_multiclass(X_train: pd.DataFrame, y_train: np.ndarray, groups_train: np.ndarray, *, model: str,
                        selection: Steps, grid: Mapping[str, list[Any]] | None = None,
                        params: Mapping[str, Any] | None = None, search: SearchSettings | None = None,
                        n_classes: int | None = None, fold: str = "final") -> tuple[FoldFit, np.ndarray]:
    """Tune and refit on one training set (no threshold: the class is the argmax).

    Returns
    -------
    (FoldFit, ndarray of shape (n_train, n_classes))
        The fold fit (``threshold.method == "argmax"``, value NaN) and the inner out-of-fold
        probabilities of the chosen setting.
    """
    where = f"Training fold '{fold}'"
    start = time.perf_counter()
    tuned = tune_multiclass(X_train, y_train, groups_train, selection=selection, model=model, grid=grid,
                            params=params, settings=search, n_classes=n_classes, where=where)
    names = tuned.pipeline[:-1].get_feature_names_out() if len(tuned.pipeline) > 1 else X_train.columns
    fit = FoldFit(
        fold=fold, repeat=None, pipeline=tuned.pipeline, params=tuned.params,
        inner_median_auc=tuned.inner_median_auc, inner_mean_auc=tuned.inner_mean_auc,
        inner_results=tuned.results, threshold=argmax_threshold(len(y_train)), funnel=selection_funnel(tuned.pipeline),
        train_cases=[str(c) for c in X_train.index], test_cases=[], features=[str(n) for n in names],
        notes=list(tuned.notes), seconds=time.perf_counter() - start,
    )
    return fit, tuned.oof


def _fit_indexed(index: int, *args: Any, **kwargs: Any) -> tuple[int, tuple[FoldFit, np.ndarray]]:
    return index, fit_fold_multiclass(*args, **kwargs)


def multiclass_prediction_rows(fit: FoldFit, X: pd.DataFrame, given: np.ndarray | None, ids: dict[str, Any], *,
                               n_classes: int) -> pd.DataFrame:
    """Rows of a multi-class fit (a :data:`~her2dlr.learn.cv.RowBuilder`): the contract's columns, ``class``
    the argmax, ``prob`` its probability, no threshold, then ``prob_<k>``."""
    return class_probability_rows(given if given is not None else _full_proba(fit.pipeline, X, n_classes), **ids)


def class_probability_rows(proba: np.ndarray, **columns: Any) -> pd.DataFrame:
    """Multi-class prediction rows: ``columns``, ``class`` the argmax, ``prob`` its probability, no threshold,
    then ``prob_<k>`` for every class."""
    cls = proba.argmax(axis=1)
    frame = pd.DataFrame({**columns, "prob": proba[np.arange(len(proba)), cls], "class": cls,
                          "threshold": float("nan")})
    for k, col in enumerate(probability_columns(proba.shape[1])):
        frame[col] = proba[:, k]
    return frame


def run_multiclass_cv(features: pd.DataFrame, manifest: Manifest | pd.DataFrame, *, model: str, selection: Steps,
                      scheme: str = "kfold", grid: Mapping[str, list[Any]] | None = None,
                      params: Mapping[str, Any] | None = None, search: SearchSettings | None = None,
                      threshold: ThresholdRule | None = None, threshold_source: str = "inner_oof",
                      keep_train: bool = True, label: str = "label", model_name: str | None = None,
                      n_jobs: int = 1, progress: bool = False, numeric_only: bool = True,
                      backend: str | None = None, scheduler: str | None = None,
                      cache: FoldCache | str | os.PathLike[str] | None = None) -> CVResult:
    """Nested evaluation of one model of a multi-class label over the manifest's outer folds.

    Takes the arguments of :func:`her2dlr.learn.cv.run_outer_cv` (which hands a label with more
    than two classes to this function). ``threshold`` must be None or the default rule (there
    is no threshold to choose); ``threshold_source`` is ignored.

    Returns
    -------
    CVResult
        Predictions with :data:`~her2dlr.learn.cv.PREDICTION_COLUMNS` plus ``prob_0 ..
        prob_<k-1>`` (see the module docstring for ``prob`` and ``class``).

    Raises
    ------
    InputError
        A threshold rule other than the default, a selection step without a multi-class form,
        labels that are not class numbers, a training fold with a single class or a class with
        fewer than two patient groups.
    """
    if threshold is not None and threshold != ThresholdRule():
        raise InputError(f"learn.threshold: method {threshold.method!r} sets a binary operating threshold, but the "
                         "label has more than two classes (the predicted class is the most probable one). Remove "
                         "the 'threshold' key.")
    spec = get_model(model)
    check_multiclass_steps(selection)
    if backend is not None:
        check_backend(backend, ("loky", "threading", "sequential", *CLUSTER_BACKENDS), where="run_outer_cv")
    name = model_name or spec.name
    data = learning_data(features, manifest, label=label, numeric_only=numeric_only, multiclass=True)
    n_classes = int(data.y.max()) + 1
    folds = list(outer_folds(data.table, scheme))
    for fold, _, train, _ in folds:
        if not train.any():
            raise InputError(f"Outer fold '{fold}' has no training rows.")
        class_target(data.y[train], where=f"Training fold '{fold}'")
    search = search or SearchSettings()
    if (n_jobs != 1 or backend in CLUSTER_BACKENDS) and search.n_jobs != 1:
        search = replace(search, n_jobs=1)
    settings = {"model": spec.name, "selection": selection, "grid": grid, "params": params, "search": search,
                "n_classes": n_classes}
    done, n_cached = fitted_outer_folds(_fit_indexed, data, folds, settings, cache=cache, n_jobs=n_jobs,
                                        backend=backend, scheduler=scheduler, key={"task": "multiclass"},
                                        progress=f"{name} ({scheme}, {n_classes} classes" if progress else None)
    columns = PREDICTION_COLUMNS + probability_columns(n_classes)
    predictions, fits = outer_cv_predictions(data, folds, done, model_name=name, keep_train=keep_train,
                                             build_rows=partial(multiclass_prediction_rows, n_classes=n_classes),
                                             columns=columns, score="inner median macro AUC")
    return CVResult(name, scheme, predictions, fits, n_cached=n_cached)
