"""Deep models on the study's outer folds, and prediction with a saved checkpoint.

:func:`run_deep_cv` trains one network per outer fold of the manifest - the same ``fold_r<k>``
columns (repeated group k-fold) or ``split`` column (hold-out) the radiomics models use, see
:func:`her2dlr.learn.cv.outer_folds` - and returns predictions in the learning contract
(:data:`her2dlr.learn.cv.PREDICTION_COLUMNS`):

* ``split="test"``: the fold's held-out rows, predicted once by the fold's network;
* ``split="train_oof"``: the fold's inner validation rows (held out from the gradient steps,
  used for early stopping), from which the Youden threshold is chosen
  (:func:`her2dlr.learn.thresholds.choose_threshold`); unlike the radiomics models' inner
  out-of-fold rows they cover only the validation share of the training rows;
* ``split="train"``: the network's apparent predictions on all of its training rows.

When a fold has no inner validation (too few cases of a class, see
:mod:`her2dlr.deep.train`) the threshold comes from the training predictions and the fold's
notes say so. The threshold is applied unchanged to the test rows (``class``).

A label of more than two classes (``label.rule: her2_three_class``) trains networks with one
output per class (``n_classes``; the weighted loss weights every class by its inverse
frequency) kept by the inner validation's macro one-vs-rest AUC, and follows the learning
stage's multi-class contract (:mod:`her2dlr.learn.multiclass_cv`): rows also carry
``prob_0 .. prob_<k-1>``, ``class`` is the most probable class, ``prob`` its probability and
``threshold`` NaN (the checkpoints' threshold says ``method: "argmax"``); ``metrics.csv`` holds
the macro AUC with its interval and ``multiclass.csv`` / ``confusion.csv`` the per-class AUCs and
confusion matrices (:func:`her2dlr.evaluate.multiclass_tables.multiclass_tables`).

Output folder (``RUN/deep/<arch>/`` for a study)::

    <fold>/best.pt, <fold>/last.pt   checkpoints of every fold (``r0f0`` .. , ``holdout``, ``final``);
                                     ``best.pt`` carries in ``extra`` the ROI settings (``roi``), the
                                     fold's ``threshold``, ``train_cases`` and ``val_cases``
    predictions.parquet              the rows above, all folds
    metrics.csv                      :func:`her2dlr.evaluate.metrics.metrics_table` of them
    folds.csv                        per fold: best epoch, epochs run, validation AUC, threshold, seconds,
                                     views added by multi-view balancing
    history.csv                      per fold and epoch: losses, validation AUC, learning rate
    settings.json                    training and ROI settings, scheme

:func:`predict_images` turns a checkpoint and new images (with their masks or boxes) into
probabilities, preparing the ROIs exactly as in training (the ROI settings travel in the
checkpoint).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from her2dlr.cohort.manifest import Manifest
from her2dlr.deep.data import RoiInput, load_rois, manifest_clinical, manifest_rois, torch_threads
from her2dlr.deep.recipes import Recipe, RecipeChoice, choose_recipe
from her2dlr.deep.train import (
    TrainResult,
    TrainSettings,
    default_threads,
    load_checkpoint,
    model_from_checkpoint,
    predict_proba,
    resolve_device,
    save_checkpoint,
    train_network,
)
from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec
from her2dlr.learn.cv import PREDICTION_COLUMNS, outer_folds
from her2dlr.learn.multiclass_cv import argmax_threshold, class_probability_rows, probability_columns
from her2dlr.learn.multiclass_stage import remove_class_tables
from her2dlr.learn.thresholds import Threshold, ThresholdRule, apply_threshold, choose_threshold
from her2dlr.runfolder import CONFUSION, FOLDS, HISTORY, METRICS, MULTICLASS, PREDICTIONS, SETTINGS

__all__ = [
    "DeepCVResult",
    "DeepFold",
    "clinical_columns_of",
    "deep_table",
    "load_deep_model",
    "predict_images",
    "roi_spec_of",
    "run_deep_cv",
    "write_deep_outputs",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


@dataclass
class DeepFold:
    """One trained fold.

    Attributes
    ----------
    fold : str
        ``"r<rep>f<k>"``, ``"holdout"`` or ``"final"``.
    repeat : int or None
    threshold : Threshold
    best_epoch, epochs_run : int
    val_auc : float
        Inner validation AUC of the kept weights (NaN without validation).
    checkpoint : Path or None
        ``best.pt`` of the fold.
    train_cases, test_cases : list of str
    seconds : float
    history : DataFrame
    notes : list of str
    recipe : str or None
        The training recipe chosen on the inner validation split (None: no recipes given).
    recipe_scores : dict
        Inner validation AUC of every candidate recipe.
    views_added : int
        Multi-view inputs added to balance the fold's inner training part (``multi_view``).
    """

    fold: str
    repeat: int | None
    threshold: Threshold
    best_epoch: int
    epochs_run: int
    val_auc: float
    checkpoint: Path | None
    train_cases: list[str]
    test_cases: list[str]
    seconds: float
    history: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    recipe: str | None = None
    recipe_scores: dict[str, float] = field(default_factory=dict)
    views_added: int = 0


@dataclass
class DeepCVResult:
    """All folds of one network.

    Attributes
    ----------
    model : str
        Value of the ``model`` column, e.g. ``"deep-densenet3block"``.
    scheme : str
    predictions : DataFrame
        Columns :data:`her2dlr.learn.cv.PREDICTION_COLUMNS`.
    folds : list of DeepFold
    metrics : DataFrame
        :func:`her2dlr.evaluate.metrics.metrics_table` of ``predictions``.
    out_dir : Path or None
    artefact : Path or None
        The deployable model artefact written by the study's deep stage, if any.
    classes : list of str or None
        Class names of a label of more than two classes (None: binary).
    per_class, confusion : DataFrame or None
        Multi-class only: per-class one-vs-rest AUCs and confusion matrices
        (:func:`her2dlr.evaluate.multiclass_tables.multiclass_tables`).
    """

    model: str
    scheme: str
    predictions: pd.DataFrame
    folds: list[DeepFold]
    metrics: pd.DataFrame
    out_dir: Path | None = None
    artefact: Path | None = None
    classes: list[str] | None = None
    per_class: pd.DataFrame | None = None
    confusion: pd.DataFrame | None = None

    def thresholds(self) -> dict[tuple[str, str], float]:
        """``(model, fold) -> threshold`` (for :func:`her2dlr.evaluate.metrics.metrics_table`)."""
        return {(self.model, f.fold): f.threshold.value for f in self.folds}

    def fold_table(self) -> pd.DataFrame:
        """One row per fold: best epoch, epochs run, validation AUC, threshold and its source, seconds."""
        return pd.DataFrame([{
            "fold": f.fold, "repeat": f.repeat, "n_train": len(f.train_cases), "n_test": len(f.test_cases),
            "best_epoch": f.best_epoch, "epochs_run": f.epochs_run, "val_auc": f.val_auc,
            "threshold": f.threshold.value, "threshold_source": f.threshold.source, "seconds": f.seconds,
            "checkpoint": str(f.checkpoint) if f.checkpoint else None, "notes": " | ".join(f.notes),
            "recipe": f.recipe, "recipe_scores": json.dumps(f.recipe_scores) if f.recipe_scores else None,
            "views_added": f.views_added,
        } for f in self.folds])

    def history(self) -> pd.DataFrame:
        """Per fold and epoch: losses, validation AUC, learning rate, seconds."""
        parts = [f.history.assign(fold=f.fold) for f in self.folds if len(f.history)]
        if not parts:
            return pd.DataFrame(columns=["fold", "epoch", "train_loss", "val_loss", "val_auc", "lr", "seconds"])
        frame = pd.concat(parts, ignore_index=True)
        return frame[["fold"] + [c for c in frame.columns if c != "fold"]]


def _group_ids(table: pd.DataFrame) -> pd.Series:
    if "group" in table.columns and table["group"].notna().all():
        return table["group"].astype(str)
    return table["patient_id"].astype(str)


def deep_table(manifest: Manifest | pd.DataFrame, *, label: str = "label") -> pd.DataFrame:
    """The included, labelled manifest rows the deep models use (same rows as the learning stage), reindexed.

    ``_y`` holds the target: 0/1 for a two-class label, the class numbers 0 .. k-1 of a label
    rule with more classes (``her2_three_class``); ``_group`` the patient or near-duplicate group.
    """
    from her2dlr.checks import binary_target, class_target

    table = manifest.included if isinstance(manifest, Manifest) else manifest
    if isinstance(manifest, pd.DataFrame) and "include" in table.columns:
        table = table[table["include"].fillna(True).astype(bool)]
    for col in ("case_id", "patient_id", "image", label):
        if col not in table.columns:
            raise InputError(f"The manifest has no '{col}' column; build the cohort (label rule, splits) first.")
    table = table[table[label].notna()].reset_index(drop=True).copy()
    table["case_id"] = table["case_id"].astype(str)
    values = table[label].to_numpy()
    multiclass = table[label].nunique() > 2  # class numbers 0 .. k-1 kept as the label rule wrote them
    table["_y"] = class_target(values, where="the cohort") if multiclass else binary_target(values, where="the cohort")
    table["_group"] = _group_ids(table).to_numpy()
    return table


def run_deep_cv(manifest: Manifest | pd.DataFrame, *, settings: TrainSettings | None = None,
                roi: RoiSpec | None = None, scheme: str | Sequence[str] = "kfold", out_dir: PathLike | None = None,
                model_name: str | None = None, keep_train: bool = True, resume: bool = False,
                rois: np.ndarray | None = None, repeats: Sequence[int] | None = None, final: bool = False,
                threshold: ThresholdRule | None = None, label: str = "label", n_jobs: int = 1,
                progress: bool = True, recipes: Sequence[Recipe] | None = None,
                recipe_rois: Mapping[RoiSpec, np.ndarray] | None = None) -> DeepCVResult:
    """Train and evaluate a network on every outer fold of the manifest.

    Parameters
    ----------
    manifest : Manifest or DataFrame
        With ``image`` and ``mask`` / ``bbox``, ``label``, ``patient_id`` (and ``group``), and the
        ``fold_r<k>`` (``scheme="kfold"``) or ``split`` (``scheme="holdout"``) columns.
    settings : TrainSettings, default=TrainSettings()
        With ``clinical_columns``, their values are read from the manifest
        (:func:`her2dlr.deep.data.manifest_clinical`) and fused at the network's head.
    roi : RoiSpec, optional
        Default: ``RoiSpec(size=settings.image_size, channels=settings.in_channels)``.
    scheme : {"kfold", "holdout"} or a sequence of both
    out_dir : path, optional
        Checkpoints and tables (see the module docstring); nothing written when None.
    model_name : str, optional
        Default ``"deep-<arch>"``.
    keep_train : bool, default=True
        Also return ``train`` rows (apparent predictions).
    resume : bool, default=False
        Continue interrupted folds from their ``last.pt``; finished folds are only reloaded.
    rois : ndarray of shape (n_cases, C, S, S), optional
        Prepared ROIs of :func:`deep_table` rows (in its order), to share them between calls.
    repeats : sequence of int, optional
        Only these repetitions of the k-fold (e.g. ``[0]`` for a quick run).
    final : bool, default=False
        Also train the model to deploy (fold ``"final"``) on the hold-out's training rows (all rows
        without a hold-out).
    threshold : ThresholdRule, default=Youden
        Binary labels only; a label of more than two classes has none (the class is the argmax).
    label : str, default="label"
        Two classes, or the class numbers 0 .. k-1 of a multi-class rule: the network then gets
        ``k`` outputs (``settings.n_classes``) and the rows ``prob_0 .. prob_<k-1>`` (module docstring).
    n_jobs : int, default=1
        Threads reading images.
    progress : bool, default=True
    recipes : sequence of Recipe, optional
        Candidate training recipes (:mod:`her2dlr.deep.recipes`), changes to ``settings`` and
        ``roi``. In every fold each is trained on the same inner training part and scored on the
        same inner validation split; the best by inner validation AUC (ties: the first listed)
        is the fold's network, kept as trained (``<fold>/best.pt``; every candidate under
        ``<fold>/recipes/<name>/``). The fold table names the winner (``recipe``) and every
        candidate's inner score (``recipe_scores``). The outer test rows are not read before
        the choice is made.
    recipe_rois : mapping, optional
        RoiSpec -> prepared ROIs of :func:`deep_table` rows, for recipes with other ROI settings
        (made from the images when absent).

    Returns
    -------
    DeepCVResult

    Raises
    ------
    InputError
        Missing columns or split columns, ROI settings that do not fit the network, a training
        fold of one class, unreadable images (named), a ``threshold`` rule or ``settings.n_classes``
        that does not fit the label's classes.
    """
    from her2dlr.learn.multiclass_stage import class_names

    settings = settings or TrainSettings()
    settings = replace(settings, progress=progress and settings.progress)
    roi = roi or RoiSpec(size=settings.image_size, channels=settings.in_channels, spatial_dims=settings.spatial_dims)
    if roi.size != settings.image_size or roi.in_channels != settings.in_channels:
        raise InputError(f"ROI settings give {roi.in_channels}-channel {roi.size} px inputs but the network is set up "
                         f"for {settings.in_channels}-channel {settings.image_size} px inputs.")
    if roi.spatial_dims != settings.spatial_dims:
        raise InputError(f"ROI settings give {roi.spatial_dims}D inputs but the network is set up for "
                         f"{settings.spatial_dims}D inputs (deep.spatial_dims).")
    table = deep_table(manifest, label=label)
    n_classes = int(table["_y"].max()) + 1 if table["_y"].nunique() > 2 else 2
    settings = _class_settings(settings, n_classes, threshold)
    if rois is None:
        rois = manifest_rois(table, roi, n_jobs=n_jobs, progress=progress)
    elif len(rois) != len(table):
        raise InputError(f"Got {len(rois)} prepared ROIs for {len(table)} included, labelled cases.")
    y = table["_y"].to_numpy()
    groups = table["_group"].to_numpy()
    schemes = [scheme] if isinstance(scheme, str) else list(scheme)
    folds = [f for s in schemes for f in outer_folds(table, s)
             if repeats is None or f[1] is None or f[1] in set(repeats)]
    if not folds:
        raise InputError(f"No outer fold left for scheme '{scheme}' and repeats {list(repeats or [])}.")
    if final:
        has_holdout = "split" in table.columns and table["split"].notna().any()
        rows = ((table["split"] == "train").fillna(False).to_numpy() if has_holdout  # no hold-out: every row
                else np.ones(len(table), dtype=bool))
        folds.append(("final", None, rows, np.zeros(len(table), dtype=bool)))
    name = model_name or f"deep-{settings.arch}"
    out = Path(out_dir) if out_dir is not None else None
    prepared: dict[RoiSpec, np.ndarray] = {roi: rois, **dict(recipe_rois or {})}

    def rois_for(spec: RoiSpec) -> np.ndarray:
        if spec not in prepared:
            prepared[spec] = manifest_rois(table, spec, n_jobs=n_jobs, progress=progress)
        if len(prepared[spec]) != len(table):
            raise InputError(f"Got {len(prepared[spec])} prepared ROIs for {len(table)} included, labelled cases.")
        return prepared[spec]

    def clinical_for(columns: Sequence[str]) -> np.ndarray | None:  # raw values; each fold's network scales them
        return _clinical_values(table, columns)

    clinical = clinical_for(settings.clinical_columns)
    names = class_names(manifest, n_classes) if n_classes > 2 else None

    frames: list[pd.DataFrame] = []
    results: list[DeepFold] = []
    scheme_name = "+".join(schemes)
    cases = table["case_id"].to_numpy()
    patients = table["patient_id"].astype(str).to_numpy()
    extra_base = {"roi": roi.to_dict(), "model": name, "scheme": scheme_name, "label": label}
    for fold, rep, train, test in folds:
        t0 = time.perf_counter()
        train_idx = np.flatnonzero(train)
        fold_dir = out / fold if out is not None else None
        choice = None
        if recipes:
            res, fold_settings, fold_roi, choice = _train_recipes(
                recipes, settings, roi, rois_for, train_idx, y, groups, fold_dir, resume, extra_base, fold,
                clinical_for)
            fold_rois = rois_for(fold_roi)
        else:
            res = train_network(rois[train_idx], y[train_idx], groups[train_idx], settings=settings,
                                out_dir=fold_dir, resume=resume, extra={**extra_base, "fold": fold},
                                name=f"fold {fold}", clinical=_rows(clinical, train_idx))
            fold_settings, fold_rois = settings, rois
        flips = fold_settings.tta_flips
        fold_clinical = clinical_for(fold_settings.clinical_columns)
        threads = settings.num_threads or default_threads(settings.num_workers)
        with torch_threads(threads):
            thr, notes = (_fold_threshold(res, fold_rois[train_idx], y[train_idx], threshold, fold, flips,
                                          _rows(fold_clinical, train_idx)) if names is None
                          else (argmax_threshold(len(train_idx)), []))
        seconds = time.perf_counter() - t0
        if res.best_path is not None and _is_main_process():
            _stamp(res.best_path, threshold=thr.to_dict(), train_cases=cases[train_idx].tolist(),
                   val_cases=cases[train_idx[res.val_index]].tolist())

        def rows_of(idx: np.ndarray, proba: np.ndarray, split: str, fold: str = fold,
                    thr: Threshold = thr) -> pd.DataFrame:
            ids = {"case_id": cases[idx], "patient_id": patients[idx], "model": name, "fold": fold, "split": split}
            if names is not None:
                return class_probability_rows(proba, **ids, label=y[idx])
            prob = proba[:, 1]
            return pd.DataFrame({**ids, "prob": prob, "class": apply_threshold(prob, thr), "label": y[idx],
                                 "threshold": thr.value})

        test_idx = np.flatnonzero(test)
        with torch_threads(threads):
            if len(test_idx):
                frames.append(rows_of(test_idx, predict_proba(res.model, fold_rois[test_idx], flips=flips,
                                                              clinical=_rows(fold_clinical, test_idx)), "test"))
            if len(res.val_index):
                frames.append(rows_of(train_idx[res.val_index], res.val_prob, "train_oof"))
            if keep_train or fold == "final":
                frames.append(rows_of(train_idx, predict_proba(res.model, fold_rois[train_idx], flips=flips,
                                                               clinical=_rows(fold_clinical, train_idx)), "train"))
        val_auc = float(res.history.loc[res.history["epoch"] == res.best_epoch, "val_auc"].iloc[0]) \
            if len(res.history) and (res.history["epoch"] == res.best_epoch).any() else float("nan")
        results.append(DeepFold(
            fold=fold, repeat=rep, threshold=thr, best_epoch=res.best_epoch, epochs_run=res.epochs_run,
            val_auc=val_auc, checkpoint=res.best_path, train_cases=cases[train_idx].tolist(),
            test_cases=cases[test_idx].tolist(), seconds=seconds, history=res.history, notes=res.notes + notes,
            recipe=choice.name if choice is not None else None,
            recipe_scores=dict(choice.scores) if choice is not None else {}, views_added=res.views_added,
        ))
        log.info("%s %s: best epoch %d/%d, val AUC %.3f, %.1fs", name, fold, res.best_epoch, res.epochs_run,
                 val_auc, seconds)
    columns = PREDICTION_COLUMNS + (probability_columns(n_classes) if names is not None else [])
    predictions = (pd.concat(frames, ignore_index=True)[columns] if frames
                   else pd.DataFrame(columns=columns))
    result = _with_metrics(DeepCVResult(name, scheme_name, predictions, results, pd.DataFrame(), out, classes=names))
    if out is not None and _is_main_process():
        write_deep_outputs(result, out, settings=settings, roi=roi, recipes=recipes)
    return result


def _with_metrics(result: DeepCVResult) -> DeepCVResult:
    """The metrics of the evaluated rows (all but the ``final`` fold's): binary, or multi-class with its tables."""
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.evaluate.multiclass_tables import multiclass_tables

    evaluated = result.predictions[result.predictions["fold"] != "final"]
    if len(evaluated) and result.classes is not None:
        tables = multiclass_tables(evaluated, class_names=result.classes)
        result.metrics, result.per_class, result.confusion = tables.metrics, tables.per_class, tables.confusion
    elif len(evaluated):
        result.metrics = metrics_table(evaluated)
    return result


def _class_settings(settings: TrainSettings, n_classes: int, threshold: ThresholdRule | None) -> TrainSettings:
    """The training settings for the label's number of classes (a label of k > 2 classes trains k outputs)."""
    if n_classes == 2:
        if settings.n_classes != 2:
            raise InputError(f"The label has two classes but the network is set up for {settings.n_classes} "
                             "(n_classes).")
        return settings
    if settings.n_classes not in (2, n_classes):
        raise InputError(f"The label has {n_classes} classes but the network is set up for {settings.n_classes} "
                         "(n_classes).")
    if threshold is not None and threshold != ThresholdRule():
        raise InputError(f"threshold: method {threshold.method!r} sets a binary operating threshold, but the label "
                         f"has {n_classes} classes: the predicted class is the most probable one.")
    return replace(settings, n_classes=n_classes)


def _clinical_values(table: pd.DataFrame, columns: Sequence[str]) -> np.ndarray | None:
    """Raw clinical values of the rows for a network with clinical fusion (None without clinical columns)."""
    return manifest_clinical(table, columns, key="deep.clinical_columns") if columns else None


def _rows(values: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if values is None else values[idx]


def _train_recipes(recipes: Sequence[Recipe], settings: TrainSettings, roi: RoiSpec,
                   rois_for: Callable[[RoiSpec], np.ndarray], train_idx: np.ndarray, y: np.ndarray,
                   groups: np.ndarray, fold_dir: Path | None, resume: bool, extra_base: dict[str, Any],
                   fold: str, clinical_for: Callable[[Sequence[str]], np.ndarray | None] = lambda c: None
                   ) -> tuple[TrainResult, TrainSettings, RoiSpec, RecipeChoice]:
    """Train every candidate on the fold's training rows only; keep the best by inner validation AUC."""
    results: dict[str, tuple[TrainResult, TrainSettings, RoiSpec]] = {}
    scores: dict[str, float] = {}
    for recipe in recipes:
        cand_settings, cand_roi = recipe.apply(settings, roi)
        cand_dir = fold_dir / "recipes" / recipe.name if fold_dir is not None else None
        extra = {**extra_base, "roi": cand_roi.to_dict(), "fold": fold, "recipe_candidate": recipe.name}
        res = train_network(rois_for(cand_roi)[train_idx], y[train_idx], groups[train_idx], settings=cand_settings,
                            out_dir=cand_dir, resume=resume, extra=extra, name=f"fold {fold} {recipe.name}",
                            clinical=_rows(clinical_for(cand_settings.clinical_columns), train_idx))
        results[recipe.name] = (res, cand_settings, cand_roi)
        scores[recipe.name] = _kept_val_auc(res)
    choice = choose_recipe(scores)
    res, chosen_settings, chosen_roi = results[choice.name]
    log.info("fold %s: recipe %s (inner validation AUC %s)", fold, choice.name,
             ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    if fold_dir is not None and res.best_path is not None and _is_main_process():
        ckpt = load_checkpoint(res.best_path)
        extra = {k: v for k, v in dict(ckpt.get("extra") or {}).items() if k != "recipe_candidate"}
        ckpt["extra"] = {**extra, "recipe": choice.name, "recipe_scores": choice.scores}
        res.best_path = save_checkpoint(ckpt, fold_dir / res.best_path.name)
    return res, chosen_settings, chosen_roi, choice


def _kept_val_auc(res: TrainResult) -> float:
    """Inner validation AUC of the weights a training run kept (NaN without a validation split)."""
    hist = res.history
    rows = hist.loc[hist["epoch"] == res.best_epoch, "val_auc"] if len(hist) else pd.Series(dtype=float)
    return float(rows.iloc[0]) if len(rows) else float("nan")


def _is_main_process() -> bool:
    """False in the other processes of a distributed launch (only rank 0 writes)."""
    return int(os.environ.get("RANK", "0")) == 0


def _fold_threshold(res: TrainResult, rois: np.ndarray, y: np.ndarray, rule: ThresholdRule | None,
                    fold: str, flips: bool = False, clinical: np.ndarray | None = None) -> tuple[Threshold, list[str]]:
    """Youden (or ``rule``) threshold on the inner validation predictions, else on the training fit."""
    if len(res.val_index) and len(np.unique(y[res.val_index])) == 2:
        return choose_threshold(y[res.val_index], res.val_prob[:, 1], rule, source="inner_val"), []
    prob = predict_proba(res.model, rois, flips=flips, clinical=clinical)[:, 1]
    return (choose_threshold(y, prob, rule, source="train_fit"),
            [f"fold {fold}: threshold chosen on the training predictions (no inner validation split)"])


def _stamp(path: Path, **items: Any) -> None:
    """Record the fold's operating threshold and its cases in its ``best.pt`` (``extra``)."""
    ckpt = load_checkpoint(path)
    ckpt["extra"] = {**dict(ckpt.get("extra") or {}), **items}
    save_checkpoint(ckpt, path)


def write_deep_outputs(result: DeepCVResult, out_dir: PathLike, *, settings: TrainSettings,
                       roi: RoiSpec, recipes: Sequence[Recipe] | None = None) -> list[Path]:
    """Write predictions, metrics, fold and history tables and the settings (and recipes) atomically."""
    from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic

    out = Path(out_dir)
    files = [
        write_parquet_atomic(result.predictions, out / PREDICTIONS, index=False),
        write_csv_atomic(result.metrics, out / METRICS),
        write_csv_atomic(result.fold_table(), out / FOLDS),
        write_csv_atomic(result.history(), out / HISTORY),
        write_text_atomic(out / SETTINGS, json.dumps(
            {"model": result.model, "scheme": result.scheme, "train": settings.to_dict(), "roi": roi.to_dict(),
             "recipes": [r.to_dict() for r in recipes or []], "torch": torch.__version__}, indent=2, default=str)),
    ]
    if result.per_class is not None and result.confusion is not None:
        files += [write_csv_atomic(result.per_class, out / MULTICLASS), write_csv_atomic(result.confusion, out / CONFUSION)]
    else:
        remove_class_tables(out)
    return files


# --------------------------------------------------------------------------- inference
def roi_spec_of(checkpoint: dict[str, Any]) -> RoiSpec:
    """The ROI settings a checkpoint was trained with (default ROI settings at its input size if absent)."""
    saved = (checkpoint.get("extra") or {}).get("roi")
    if saved:
        return RoiSpec.from_dict(dict(saved))
    return RoiSpec(size=int(checkpoint["image_size"]), channels=int(checkpoint["in_channels"]),
                   spatial_dims=int(checkpoint.get("spatial_dims", 2)))


def clinical_columns_of(info: Mapping[str, Any]) -> list[str]:
    """The clinical columns a checkpoint's network fuses at its head (empty for an image-only network)."""
    return [str(c) for c in dict(info.get("settings") or {}).get("clinical_columns") or []]


def load_deep_model(checkpoint: PathLike, *, arch: str | None = None) -> tuple[nn.Module, RoiSpec, dict[str, Any]]:
    """A checkpoint's network (eval mode, CPU), its ROI settings and the checkpoint's metadata.

    Parameters
    ----------
    checkpoint : path
        ``best.pt`` (or ``last.pt``) written by training.
    arch : str, optional
        Refuse a checkpoint of another architecture.

    Returns
    -------
    (model, roi_spec, info)
        ``info`` holds ``arch``, ``image_size``, ``in_channels``, ``epoch``, ``seed``, ``extra``
        (fold, threshold, ...), without the weights.
    """
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt, arch=arch)
    info = {k: v for k, v in ckpt.items() if k not in ("model_state", "optimizer_state", "scheduler_state",
                                                        "scaler_state")}
    return model, roi_spec_of(ckpt), info


def predict_images(checkpoint: PathLike, images: Sequence[PathLike | np.ndarray],
                   rois: Sequence[RoiInput] | None = None, *, batch_size: int = 64, device: str = "cpu",
                   n_jobs: int = 1, clinical: pd.DataFrame | None = None) -> np.ndarray:
    """Probabilities of new images from a saved network.

    Parameters
    ----------
    checkpoint : path
        A ``best.pt`` of :func:`run_deep_cv` / ``her2dlr train deep`` (or any her2dlr checkpoint).
    images : sequence of path or ndarray
        Image files, or arrays ``(H, W)`` / ``(H, W, 3)``.
    rois : sequence, optional
        Per image: mask file, mask array, box ``(x, y, w, h)`` or None (whole image). The ROI is
        cropped, padded, resized and normalised with the checkpoint's ROI settings.
    batch_size : int, default=64
    device : str, default="cpu"
        ``"auto"`` uses CUDA when present.
    n_jobs : int, default=1
        Threads reading images.
    clinical : DataFrame, optional
        One row per image with the clinical columns a network with clinical fusion reads
        (``settings.clinical_columns`` of the checkpoint); missing values get the training median.

    Returns
    -------
    ndarray
        Shape (n_images,): probability of class 1, for a two-class network; (n_images, n_classes)
        otherwise.

    Raises
    ------
    InputError
        Not a checkpoint, unreadable images, bad masks (the message names the image).
    """
    model, spec, info = load_deep_model(checkpoint)
    columns = clinical_columns_of(info)
    values = None
    if columns:
        if clinical is None or len(clinical) != len(images):
            raise InputError(f"{checkpoint} fuses clinical columns {columns}: give a table of them, one row per image.")
        values = manifest_clinical(clinical, columns, key=f"clinical values of {checkpoint}")
    arrays = load_rois(images, rois, spec=spec, n_jobs=n_jobs)
    dev = resolve_device(device)
    model.to(dev)
    flips = bool(dict(info.get("settings") or {}).get("tta_flips", False))
    prob = predict_proba(model, arrays, batch_size=batch_size, device=dev, flips=flips, clinical=values)
    return prob[:, 1] if int(info["n_classes"]) == 2 else prob
