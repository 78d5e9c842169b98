"""Outer loop from the manifest: hold-out or repeated group k-fold, nested search in every fold.

For each outer fold the training rows alone go through :func:`her2dlr.learn.tuning.tune`
(selection + model, inner StratifiedGroupKFold, pick by median AUC, refit), the operating
threshold is chosen on training predictions only, and the fold's test rows are predicted
once. Nothing about the test rows - values, labels, count - reaches any fitted step.

Predictions follow the DESIGN contract ``case_id, patient_id, model, fold, split, prob, class``
plus ``label`` and ``threshold``:

* ``fold`` is ``"holdout"`` or ``"r{rep}f{k}"`` (repetition ``rep`` of the repeated k-fold,
  outer fold ``k``); :func:`fit_final` uses ``"final"``;
* ``split`` is ``"test"`` for the held-out / out-of-fold rows, ``"train_oof"`` for the inner
  out-of-fold predictions of the chosen setting on the training rows (what the threshold is
  chosen from), and ``"train"`` for the final model's apparent predictions on its own
  training rows (kept when ``keep_train=True``, as papers report a "training cohort" AUC).

Outer folds run in parallel on any joblib backend, a Dask or Ray cluster included
(``backend``, ``scheduler``), and with a fold cache (:mod:`her2dlr.learn.fold_cache`) each
finished fold is kept on disk, so a run killed half-way resumes from the folds it finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.pipeline import Pipeline

from her2dlr.checks import binary_target, check_choice, class_target
from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.learn.fold_cache import FoldCache, fold_key
from her2dlr.learn.selection import build_selection, selection_funnel
from her2dlr.learn.thresholds import (
    Threshold,
    ThresholdRule,
    apply_threshold,
    choose_threshold,
)
from her2dlr.learn.tuning import SearchSettings, Steps, tune
from her2dlr.learn.zoo import get_model
from her2dlr.radiomics.parallel import CLUSTER_BACKENDS, check_backend, cluster_session

__all__ = [
    "PREDICTION_COLUMNS",
    "CVResult",
    "FoldFit",
    "LearningData",
    "RowBuilder",
    "binary_prediction_rows",
    "fit_final",
    "fit_fold",
    "fitted_outer_folds",
    "learning_data",
    "outer_cv_predictions",
    "outer_folds",
    "run_outer_cv",
]

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["case_id", "patient_id", "model", "fold", "split", "prob", "class", "label", "threshold"]


@dataclass
class LearningData:
    """Feature rows aligned with the manifest rows that take part.

    Attributes
    ----------
    X : DataFrame of shape (n_cases, n_features)
        Indexed by case id, columns as in the feature table.
    y : ndarray of shape (n_cases,)
        0/1 labels.
    patient : ndarray of shape (n_cases,)
    groups : ndarray of shape (n_cases,)
        Near-duplicate group (``group`` column) or, when QC has not run, the patient.
    table : DataFrame
        The manifest rows (same order), with ``split`` and ``fold_r*`` columns when present.
    """

    X: pd.DataFrame
    y: np.ndarray
    patient: np.ndarray
    groups: np.ndarray
    table: pd.DataFrame


@dataclass
class FoldFit:
    """One outer fold: the fitted pipeline and everything chosen inside it.

    Attributes
    ----------
    fold : str
    repeat : int or None
    pipeline : Pipeline
    params : dict
    inner_median_auc, inner_mean_auc : float
    inner_results : DataFrame
        Per-setting inner AUCs (see :class:`~her2dlr.learn.tuning.TunedModel`).
    threshold : Threshold
    funnel : DataFrame
        ``step, n_in, n_out`` of the fitted selection.
    train_cases, test_cases : list of str
    features : list of str
        Features reaching the model.
    notes : list of str
    seconds : float
    """

    fold: str
    repeat: int | None
    pipeline: Pipeline
    params: dict[str, Any]
    inner_median_auc: float
    inner_mean_auc: float
    inner_results: pd.DataFrame
    threshold: Threshold
    funnel: pd.DataFrame
    train_cases: list[str]
    test_cases: list[str]
    features: list[str]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class CVResult:
    """All outer folds of one model.

    Attributes
    ----------
    model : str
    scheme : str
        ``"kfold"`` or ``"holdout"``.
    predictions : DataFrame
        Columns :data:`PREDICTION_COLUMNS`.
    fits : list of FoldFit
    n_cached : int
        Outer folds read from the fold cache instead of being fitted.
    """

    model: str
    scheme: str
    predictions: pd.DataFrame
    fits: list[FoldFit]
    n_cached: int = 0

    def thresholds(self) -> dict[tuple[str, str], float]:
        """``(model, fold) -> threshold value`` (for :func:`her2dlr.evaluate.metrics.metrics_table`)."""
        return {(self.model, f.fold): f.threshold.value for f in self.fits}

    def funnel(self) -> pd.DataFrame:
        """Selection funnel of every fold: ``fold, step, n_in, n_out``."""
        parts = [f.funnel.assign(fold=f.fold) for f in self.fits]
        if not parts:
            return pd.DataFrame(columns=["fold", "step", "n_in", "n_out"])
        return pd.concat(parts, ignore_index=True)[["fold", "step", "n_in", "n_out"]]

    def params(self) -> pd.DataFrame:
        """Chosen hyper-parameters and inner AUCs, one row per fold."""
        rows = [{"fold": f.fold, **f.params, "inner_median_auc": f.inner_median_auc,
                 "inner_mean_auc": f.inner_mean_auc, "n_features": len(f.features),
                 "threshold": f.threshold.value} for f in self.fits]
        return pd.DataFrame(rows)

    def feature_frequency(self) -> pd.Series:
        """How often each feature reached the model, over the folds (stability of the selection)."""
        counts = pd.Series([c for f in self.fits for c in f.features], dtype=object).value_counts()
        return (counts / max(len(self.fits), 1)).rename("frequency")


def _group_ids(table: pd.DataFrame) -> pd.Series:
    if "group" in table.columns and table["group"].notna().all():
        return table["group"].astype(str)
    return table["patient_id"].astype(str)


def learning_data(features: pd.DataFrame, manifest: Manifest | pd.DataFrame, *, label: str = "label",
                  numeric_only: bool = True, multiclass: bool = False) -> LearningData:
    """Align a feature table with the manifest's included, labelled rows.

    Parameters
    ----------
    features : DataFrame
        Indexed by case id (or with a ``case_id`` column).
    manifest : Manifest or DataFrame
        Needs ``case_id``, ``patient_id``, ``label``; ``include``, ``group``, ``split``,
        ``fold_r*`` are used when present.
    label : str, default="label"
    numeric_only : bool, default=True
        Refuse non-numeric columns (radiomics tables). ``False`` keeps raw columns (text,
        mixed, missing) as they are, for pipelines that encode them in-fold (the clinical
        model, :mod:`her2dlr.learn.fusion`); numeric columns are still cast to float.
    multiclass : bool, default=False
        Keep the label's class numbers 0 .. k-1 (:func:`her2dlr.checks.class_target`) instead
        of requiring two classes (:mod:`her2dlr.learn.multiclass_cv`).

    Raises
    ------
    InputError
        No label column, or included cases without a feature row (lists them).
    """
    table = manifest.included if isinstance(manifest, Manifest) else manifest
    if isinstance(manifest, pd.DataFrame) and "include" in table.columns:
        table = table[table["include"].fillna(True).astype(bool)]
    for col in ("case_id", "patient_id", label):
        if col not in table.columns:
            raise InputError(f"The manifest has no '{col}' column; apply the label rule and splits first.")
    table = table[table[label].notna()].copy()
    table["case_id"] = table["case_id"].astype(str)
    feats = features.set_index("case_id") if "case_id" in features.columns else features
    feats = feats.copy()
    feats.index = feats.index.astype(str)
    missing = table.loc[~table["case_id"].isin(feats.index), "case_id"].tolist()
    if missing:
        raise InputError(
            f"{len(missing)} included case(s) have no row in the feature table: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}. Re-run extraction or exclude them in QC."
        )
    X = feats.loc[table["case_id"].to_numpy()]
    numeric = X.select_dtypes(include=[np.number, "bool"])
    if numeric.shape[1] != X.shape[1]:
        bad = [c for c in X.columns if c not in numeric.columns]
        if numeric_only:
            raise InputError(f"Feature table has non-numeric column(s) {bad[:5]}: encode them first (clinical module).")
        X = X.astype(dict.fromkeys(numeric.columns, np.float64))
    else:
        X = X.astype(np.float64)
    y = (class_target if multiclass else binary_target)(table[label].to_numpy(), where="the cohort")
    return LearningData(X, y, table["patient_id"].astype(str).to_numpy(),
                        _group_ids(table).to_numpy(), table.reset_index(drop=True))


def outer_folds(table: pd.DataFrame, scheme: str) -> Iterator[tuple[str, int | None, np.ndarray, np.ndarray]]:
    """``(fold name, repetition, train mask, test mask)`` of each outer fold.

    ``scheme="holdout"``: the ``split`` column (train / test). ``scheme="kfold"``: every
    ``fold_r<rep>`` column, rows with fold -1 out of that repetition. ``scheme="final"``: one
    fold, all rows training, none test (the model to deploy when there is no hold-out).
    """
    check_choice("outer_folds", "scheme", scheme, ("holdout", "kfold", "final"))
    if scheme == "final":  # the deployable model: every row trains, none is tested
        yield "final", None, np.ones(len(table), dtype=bool), np.zeros(len(table), dtype=bool)
        return
    if scheme == "holdout":
        if "split" not in table.columns:
            raise InputError("The manifest has no 'split' column: run `her2dlr cohort build STUDY` first "
                             "(it writes the hold-out split of the study's `split:` section).")
        split = table["split"].astype("string")
        yield "holdout", None, (split == "train").fillna(False).to_numpy(), (split == "test").fillna(False).to_numpy()
        return
    cols = sorted((c for c in table.columns if str(c).startswith("fold_r")), key=lambda c: int(str(c)[6:]))
    if not cols:
        raise InputError("The manifest has no fold_r* columns: set `split.kfold` in the study file and run "
                         "`her2dlr cohort build STUDY`.")
    for col in cols:
        rep = int(str(col)[6:])
        fold = table[col].fillna(-1).astype(int).to_numpy()
        for k in sorted(set(fold[fold >= 0])):
            yield f"r{rep}f{k}", rep, (fold >= 0) & (fold != k), fold == k


def fit_fold(X_train: pd.DataFrame, y_train: np.ndarray, groups_train: np.ndarray, *, model: str,
             selection: Steps, grid: Mapping[str, list[Any]] | None = None,
             params: Mapping[str, Any] | None = None, search: SearchSettings | None = None,
             threshold: ThresholdRule | None = None, threshold_source: str = "inner_oof",
             fold: str = "final", workflows: Any = None) -> tuple[FoldFit, np.ndarray]:
    """Tune, refit and choose the threshold on one training set.

    Parameters
    ----------
    X_train : DataFrame of shape (n_train, n_features)
    y_train : ndarray of shape (n_train,)
    groups_train : ndarray of shape (n_train,)
    model, selection, grid, params, search
        See :func:`her2dlr.learn.tuning.tune`.
    threshold : ThresholdRule, default=Youden
    threshold_source : {"inner_oof", "train_fit"}
        ``inner_oof``: the chosen setting's out-of-fold predictions over the inner splits
        (honest for trees, which fit training rows almost perfectly); ``train_fit``: the
        final model's predictions on its own training rows.
    fold : str
        Name used in messages and results.
    workflows : WorkflowSpace, optional
        Search this space (:func:`her2dlr.learn.workflows.search_workflows`) instead of tuning
        ``model`` after ``selection``: the fold's model is the top-k ensemble, its inner
        out-of-fold predictions the mean of its members', ``inner_results`` every tried workflow.

    Returns
    -------
    (FoldFit, ndarray of shape (n_train,))
        The fold fit and the inner out-of-fold predictions of the chosen setting.
    """
    check_choice("fit_fold", "threshold_source", threshold_source, ("inner_oof", "train_fit"))
    where = f"Training fold '{fold}'"
    start = time.perf_counter()
    y_train = binary_target(y_train, where=where)
    if workflows is not None:
        from her2dlr.learn.workflows import search_workflows

        tuned = search_workflows(X_train, y_train, groups_train, space=workflows, settings=search, where=where)
    else:
        tuned = tune(X_train, y_train, groups_train, selection=selection, model=model, grid=grid, params=params,
                     settings=search, where=where)
    notes = list(tuned.notes)
    oof = tuned.oof
    if threshold_source == "inner_oof" and np.isfinite(oof).all():
        thr = choose_threshold(y_train, oof, threshold, source="inner_oof")
    else:
        if threshold_source == "inner_oof":
            notes.append(f"{where}: some inner predictions failed; threshold chosen on the training fit")
        thr = choose_threshold(y_train, tuned.pipeline.predict_proba(X_train)[:, 1], threshold, source="train_fit")
    if workflows is not None:
        names = tuned.pipeline[-1].used_features_
    else:
        names = tuned.pipeline[:-1].get_feature_names_out() if len(tuned.pipeline) > 1 else X_train.columns
    fit = FoldFit(
        fold=fold, repeat=None, pipeline=tuned.pipeline, params=tuned.params,
        inner_median_auc=tuned.inner_median_auc, inner_mean_auc=tuned.inner_mean_auc,
        inner_results=tuned.results, threshold=thr, funnel=selection_funnel(tuned.pipeline),
        train_cases=[str(c) for c in X_train.index], test_cases=[], features=[str(n) for n in names],
        notes=notes, seconds=time.perf_counter() - start,
    )
    return fit, oof


def fit_final(data: LearningData, *, model: str, selection: Steps, rows: np.ndarray | None = None,
              **kwargs: Any) -> FoldFit:
    """Fit the model to deploy: the same procedure as one outer fold, on all (or ``rows``) training cases.

    Parameters
    ----------
    data : LearningData
    model, selection
    rows : bool ndarray of shape (n_cases,), optional
        Training rows (default: the hold-out's ``split == "train"`` when present, else all).
    **kwargs
        Passed to :func:`fit_fold`.
    """
    if rows is None:
        rows = ((data.table["split"] == "train").fillna(False).to_numpy() if "split" in data.table.columns
                else np.ones(len(data.y), dtype=bool))
    fit, _ = fit_fold(data.X[rows], data.y[rows], data.groups[rows], model=model, selection=selection,
                      fold="final", **kwargs)
    return fit


def _fit_indexed(index: int, *args: Any, **kwargs: Any) -> tuple[int, tuple[FoldFit, np.ndarray]]:
    return index, fit_fold(*args, **kwargs)


def _fitted_folds(jobs: list[Any], n_jobs: int, backend: str | None,
                  scheduler: str | None) -> Iterable[tuple[int, tuple[FoldFit, np.ndarray]]]:
    """``(fold index, fit_fold output)`` of each job, as they finish."""
    if not jobs:
        return
    if backend not in CLUSTER_BACKENDS:  # None: joblib's current backend (loky, or the caller's parallel_config)
        yield from Parallel(n_jobs=n_jobs, backend=backend, return_as="generator_unordered")(jobs)
        return
    with cluster_session(backend, scheduler, n_workers=n_jobs if n_jobs > 0 else None):
        try:
            outputs = Parallel(return_as="generator_unordered")(jobs)
        except ValueError as exc:  # ray's backend cannot stream results back
            if "return_as" not in str(exc):
                raise
            outputs = Parallel(return_as="list")(jobs)
        yield from outputs


def fitted_outer_folds(fit: Callable[..., tuple[int, Any]], data: LearningData, folds: list[Any],
                       settings: dict[str, Any], *, cache: FoldCache | str | os.PathLike[str] | None, n_jobs: int,
                       backend: str | None, scheduler: str | None, progress: str | None,
                       key: Mapping[str, Any] | None = None) -> tuple[dict[int, Any], int]:
    """Every outer fold's training fit, read from the fold cache when there, else fitted and cached as it finishes.

    Parameters
    ----------
    fit : callable
        ``fit(index, X_train, y_train, groups_train, fold=name, **settings) -> (index, output)``.
    data : LearningData
    folds : list
        :func:`outer_folds` of ``data.table``.
    settings : dict
        Keyword settings of ``fit``; with ``key``, they make the fold cache key.
    cache : FoldCache or path, optional
    n_jobs, backend, scheduler
        See :func:`run_outer_cv`.
    progress : str, optional
        Progress bar title (``None``: no bar).
    key : dict, optional
        Extra fold-cache key items (e.g. the task).

    Returns
    -------
    (dict, int)
        Fold index -> ``fit``'s output, and how many came from the cache.
    """
    store = FoldCache(cache) if cache is not None and not isinstance(cache, FoldCache) else cache
    done: dict[int, Any] = {}
    keys: dict[int, str] = {}
    if store is not None:
        search = settings.get("search")
        for i, (fold, _, train, _) in enumerate(folds):
            keys[i] = fold_key(data.X[train], data.y[train], data.groups[train], fold=fold, **dict(key or {}),
                               **{**settings, "search": replace(search, n_jobs=1) if search is not None else None})
            hit = store.get(keys[i])
            if hit is not None:
                done[i] = hit
    n_cached = len(done)
    if n_cached:
        log.info("%s: %d of %d outer folds from the fold cache", progress or "outer CV", n_cached, len(folds))
    jobs = [delayed(fit)(i, data.X[train], data.y[train], data.groups[train], fold=fold, **settings)
            for i, (fold, _, train, _) in enumerate(folds) if i not in done]
    outputs: Iterable[Any] = _fitted_folds(jobs, n_jobs, backend, scheduler)
    if progress:
        from rich.progress import track

        cached = f", {n_cached} from cache" if n_cached else ""
        outputs = track(outputs, total=len(jobs), description=f"{progress}{cached})")
    for i, out in outputs:
        if store is not None:
            store.put(keys[i], out)
        done[i] = out
    return done, n_cached


#: ``build_rows(fit, X_rows, given, ids) -> DataFrame``: the prediction rows of one fold's split.
#: ``given`` is the inner out-of-fold output for ``train_oof`` rows (None: predict ``X_rows``
#: with ``fit.pipeline``); ``ids`` holds the columns ``case_id, patient_id, model, fold, split, label``.
RowBuilder = Callable[[FoldFit, pd.DataFrame, np.ndarray | None, dict[str, Any]], pd.DataFrame]


def binary_prediction_rows(fit: FoldFit, X: pd.DataFrame, given: np.ndarray | None,
                           ids: dict[str, Any]) -> pd.DataFrame:
    """Rows of a two-class fit: ``prob`` of the positive class, ``class`` from the fold's threshold."""
    prob = given if given is not None else fit.pipeline.predict_proba(X)[:, 1]
    return pd.DataFrame({**ids, "prob": prob, "class": apply_threshold(prob, fit.threshold),
                         "threshold": fit.threshold.value})


def outer_cv_predictions(data: LearningData, folds: list[Any], done: Mapping[int, tuple[FoldFit, np.ndarray]], *,
                         model_name: str, keep_train: bool, build_rows: RowBuilder, columns: list[str],
                         score: str = "inner median AUC") -> tuple[pd.DataFrame, list[FoldFit]]:
    """Prediction rows and fits of every outer fold, from the folds' training fits.

    Parameters
    ----------
    data : LearningData
    folds : list
        :func:`outer_folds` of ``data.table``.
    done : dict
        Fold index -> ``(FoldFit, inner out-of-fold output)`` (:func:`fitted_outer_folds`).
    model_name : str
        Value of the ``model`` column.
    keep_train : bool
        Also the ``train`` (apparent) and ``train_oof`` (inner out-of-fold) rows.
    build_rows : callable
        The task's rows (:data:`RowBuilder`): :func:`binary_prediction_rows`, or the
        multi-class one of :mod:`her2dlr.learn.multiclass_cv`.
    columns : list of str
        Columns of the result, in order.
    score : str
        Name of ``inner_median_auc`` in the log.

    Returns
    -------
    (DataFrame, list of FoldFit)
        Test rows of every fold (then its training rows when kept), and the fits with their
        repetition and test cases filled in.
    """
    frames: list[pd.DataFrame] = []
    fits: list[FoldFit] = []
    for i, (fold, rep, train, test) in enumerate(folds):
        fit, oof = done[i]
        fit.repeat = rep
        fit.test_cases = data.X.index[test].tolist()
        fits.append(fit)
        parts = [("test", test, None)]
        if keep_train:
            parts += [("train", train, None), ("train_oof", train, oof)]
        for split, rows, given in parts:
            if not rows.any():
                continue
            ids = {"case_id": data.X.index[rows], "patient_id": data.patient[rows], "model": model_name,
                   "fold": fold, "split": split, "label": data.y[rows]}
            frames.append(build_rows(fit, data.X[rows], given, ids))
        log.info("%s %s: %s %.3f, %d features, %.1fs", model_name, fold, score, fit.inner_median_auc,
                 len(fit.features), fit.seconds)
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return predictions[columns], fits


def _multiclass_cv(features: pd.DataFrame, manifest: Manifest | pd.DataFrame, workflows: Any, *, label: str,
                   **kwargs: Any) -> CVResult | None:
    """The multi-class outer CV (:mod:`her2dlr.learn.multiclass_cv`) when the label has more than two classes."""
    from her2dlr.learn.multiclass_cv import label_classes, run_multiclass_cv

    n_classes = label_classes(manifest, label)
    if n_classes <= 2:
        return None
    if workflows is not None:
        raise InputError(f"learn.search.search: 'workflows' ranks workflows by a two-class AUC, but the label has "
                         f"{n_classes} classes. Use search 'grid' or 'random' for a multi-class label.")
    return run_multiclass_cv(features, manifest, label=label, **kwargs)


def run_outer_cv(features: pd.DataFrame, manifest: Manifest | pd.DataFrame, *, model: str, selection: Steps,
                 scheme: str = "kfold", grid: Mapping[str, list[Any]] | None = None,
                 params: Mapping[str, Any] | None = None, search: SearchSettings | None = None,
                 threshold: ThresholdRule | None = None, threshold_source: str = "inner_oof",
                 keep_train: bool = True, label: str = "label", model_name: str | None = None,
                 n_jobs: int = 1, progress: bool = False, numeric_only: bool = True,
                 backend: str | None = None, scheduler: str | None = None,
                 cache: FoldCache | str | os.PathLike[str] | None = None, workflows: Any = None) -> CVResult:
    """Nested evaluation of one model over the manifest's outer folds.

    Parameters
    ----------
    features : DataFrame
        Feature table indexed by case id (any column names).
    manifest : Manifest or DataFrame
    model : str
        Zoo name.
    selection : list of dict or list of (name, transformer)
        Fresh copies are fitted in every fold.
    scheme : {"kfold", "holdout"}, default="kfold"
    grid, params, search, threshold, threshold_source
        See :func:`fit_fold`.
    keep_train : bool, default=True
        Also return ``train`` and ``train_oof`` prediction rows.
    label : str, default="label"
    model_name : str, optional
        Value of the ``model`` column (default: the zoo name), e.g. ``"radiomics-lr"``.
    n_jobs : int, default=1
        Outer folds fitted in parallel (joblib processes). When > 1 the inner search runs
        sequentially inside each worker, so ``n_jobs=2`` keeps 2 cores busy without
        oversubscribing them. Results do not depend on ``n_jobs``.
    progress : bool, default=False
        Show a progress bar (rich).
    numeric_only : bool, default=True
        ``False`` lets raw (text) columns through to ``selection``, whose first steps must then
        encode them in-fold (see :func:`learning_data` and :mod:`her2dlr.learn.fusion`).
    backend : {"loky", "threading", "dask", "ray"}, optional
        joblib backend of the outer folds (default: joblib's, loky unless a
        ``joblib.parallel_config`` says otherwise). ``dask`` / ``ray`` send every fold to the
        cluster of ``scheduler`` (see :func:`her2dlr.radiomics.parallel.cluster_session`).
        Results do not depend on the backend.
    scheduler : str, optional
        Address of the Dask scheduler or Ray cluster.
    cache : FoldCache or path, optional
        Fold cache: finished folds are read from it and new ones written to it as they finish
        (see :mod:`her2dlr.learn.fold_cache`), so an interrupted run resumes.
    workflows : WorkflowSpace, optional
        Workflow search in every training fold instead of ``model`` after ``selection`` (see
        :func:`fit_fold`); ``model`` is then only a name (default ``"workflows"``).

    Returns
    -------
    CVResult

    Raises
    ------
    InputError
        A training fold with one class (names the fold), cases without features, no split columns,
        an unknown backend or an unreachable scheduler.
    StudyFileError
        Unknown model name, selection step or hyper-parameter.
    """
    multiclass = _multiclass_cv(
        features, manifest, workflows, model=model, selection=selection, scheme=scheme, grid=grid, params=params,
        search=search, threshold=threshold, threshold_source=threshold_source, keep_train=keep_train,
        label=label, model_name=model_name, n_jobs=n_jobs, progress=progress, numeric_only=numeric_only,
        backend=backend, scheduler=scheduler, cache=cache)
    if multiclass is not None:  # HER2-zero / low / positive: same folds, macro AUC, argmax
        return multiclass
    if workflows is None:
        spec_name = get_model(model).name  # fail fast on a bad name, before any fitting
        if selection and isinstance(next(iter(selection)), Mapping):
            build_selection(selection)  # type: ignore[arg-type]  # fail fast on a bad step
    else:
        spec_name, selection = str(model), []
    if backend is not None:
        check_backend(backend, ("loky", "threading", "sequential", *CLUSTER_BACKENDS), where="run_outer_cv")
    name = model_name or spec_name
    data = learning_data(features, manifest, label=label, numeric_only=numeric_only)
    folds = list(outer_folds(data.table, scheme))
    for fold, _, train, _ in folds:
        if not train.any():
            raise InputError(f"Outer fold '{fold}' has no training rows.")
        binary_target(data.y[train], where=f"Training fold '{fold}'")
    search = search or SearchSettings()
    if (n_jobs != 1 or backend in CLUSTER_BACKENDS) and search.n_jobs != 1:
        search = replace(search, n_jobs=1)
    settings = {"model": spec_name, "selection": selection, "grid": grid, "params": params, "search": search,
                "threshold": threshold, "threshold_source": threshold_source}
    if workflows is not None:
        settings["workflows"] = workflows
    done, n_cached = fitted_outer_folds(_fit_indexed, data, folds, settings, cache=cache, n_jobs=n_jobs,
                                        backend=backend, scheduler=scheduler,
                                        progress=f"{name} ({scheme}" if progress else None)
    predictions, fits = outer_cv_predictions(data, folds, done, model_name=name, keep_train=keep_train,
                                             build_rows=binary_prediction_rows, columns=PREDICTION_COLUMNS)
    return CVResult(name, scheme, predictions, fits, n_cached=n_cached)
