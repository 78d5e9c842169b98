"""Deep learning radiomics (seed 002): deep features + radiomics, early and late fusion, same folds.

Three models and one fusion, all on the cohort's outer folds (:func:`her2dlr.learn.cv.outer_folds`):

``deep-<clf>`` (:func:`run_dlr_cv` without radiomics)
    The fold network's penultimate features (:mod:`her2dlr.deep.features`) -> z-score + PCA to
    64 components (:class:`~her2dlr.deep.features.DeepPCA`) -> the selection -> classifier.
``dlr-<clf>``, early fusion (:func:`run_dlr_cv` with radiomics)
    ``ColumnTransformer``: deep columns -> z-score + PCA 64, radiomics columns passed through;
    the 64 + n_radiomics columns concatenated, then seed 002's selection (variance, z-score,
    t-test, Pearson, greedy, LASSO) -> classifier.
``deep_signature`` (:func:`deep_signature`)
    The fold network's own positive-class probability (seed 002's "DL signature"): out-of-fold
    for the fold's test cases, apparent (in-sample) for its training cases.
``late(dlr)-<clf>`` / ``late(deep_signature,radiomics)`` (:func:`late_dlr`)
    Mean of the deep signature's and the radiomics model's probabilities, fold by fold
    (:func:`her2dlr.learn.fusion.late_fusion`).
``deep_<arch>+<radiomics>-fused`` (:func:`her2dlr.deep.dlr_fusion.choose_fusion`)
    The study's DLR model: in each outer fold early fusion, late fusion or stacking, whichever
    scores best on the network's inner validation cases (never the outer test rows); the
    choice of every fold is in ``fusion_choice.csv``.

Honesty: in outer fold ``r<rep>f<k>`` the deep columns of every case come from the network of
that fold, trained without the fold's test cases (checked by
:func:`~her2dlr.deep.features.check_out_of_fold`), and PCA, selection and classifier are fitted
by :func:`her2dlr.learn.cv.fit_fold` on the fold's training rows - including the inner
search, where PCA is refitted on every inner training part. This module is the outer loop of
:func:`her2dlr.learn.cv.run_outer_cv` with one table per fold; predictions follow the same
contract (``test``, ``train``, ``train_oof`` rows).

A limit worth knowing: the training rows' deep features are in-sample for the fold's network
(it was fitted on them), so they separate the classes better than the test rows' features do;
inner-CV scores and thresholds of the deep models are optimistic, the test predictions are not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from sklearn.compose import ColumnTransformer

from her2dlr.cohort.manifest import Manifest
from her2dlr.deep.features import DeepPCA, FoldFeatures, check_out_of_fold, deep_columns
from her2dlr.errors import InputError
from her2dlr.learn.cv import (
    PREDICTION_COLUMNS,
    CVResult,
    fit_fold,
    learning_data,
    outer_folds,
)
from her2dlr.learn.settings import DEFAULT_SELECTION
from her2dlr.learn.thresholds import ThresholdRule, apply_threshold, choose_threshold
from her2dlr.learn.tuning import SearchSettings, Steps, as_steps
from her2dlr.runfolder import FUNNEL, METRICS, PREDICTIONS, dlr_set_name

__all__ = ["DEEP_SIGNATURE", "DLR_SELECTION", "FUSION_CHOICE", "DLRModels", "FeatureBlock", "deep_block", "deep_signature", "dlr_steps",
           "fit_dlr_models", "late_dlr", "refuse_multiclass_dlr", "run_dlr_cv"]

log = logging.getLogger(__name__)

#: Per-fold fusion choice of the study's DLR model, in ``RUN/learn/dlr_<arch>/``.
FUSION_CHOICE = "fusion_choice.csv"

#: Selection after the fusion (seed 002: as for radiomics).
DLR_SELECTION: list[dict[str, Any]] = [dict(s) for s in DEFAULT_SELECTION]
#: Model name of the network's own probabilities.
DEEP_SIGNATURE = "deep_signature"


@dataclass(frozen=True)
class FeatureBlock:
    """Which columns of a fold network's table take part, and the in-fold transformer that reads them first.

    Attributes
    ----------
    name : str
        Block name: the prefix of its output columns (``<name>__<column>``) and of the
        default model name (``<name>-<clf>``).
    step : str
        Name of the first pipeline step (the funnel's first row).
    columns : callable
        ``columns(table.columns) -> list of str``: the block's columns of a fold table.
    transformer : sklearn transformer
        Fitted on the fold's training rows of the block (cloned in every fit).
    pattern : str
        The columns, in words, for error messages.
    """

    name: str
    step: str
    columns: Callable[[Iterable[Any]], list[str]]
    transformer: Any
    pattern: str


def deep_block(n_components: int = 64, random_state: int = 0) -> FeatureBlock:
    """The classification networks' block: ``deep_<j>`` columns -> z-score + PCA (:class:`DeepPCA`, seed 002)."""
    return FeatureBlock("deep", "deep_pca", deep_columns, DeepPCA(n_components, random_state=random_state),
                        "deep_0, deep_1, ...")


def dlr_steps(deep_cols: Sequence[str], radiomics_cols: Sequence[str], selection: Steps, *,
              n_components: int = 64, random_state: int = 0, block: FeatureBlock | None = None
              ) -> list[tuple[str, Any]]:
    """``[(block.step, ColumnTransformer), *selection]``: the network block transformed, radiomics kept, then selection.

    Parameters
    ----------
    deep_cols : list of str
        The network block's columns (``deep_0 ..``, or ``dsfr_<layer>_<c>`` for a DSFR block).
    radiomics_cols : list of str
        Radiomics columns (may be empty: network-features-only model).
    selection : list of dict or list of (name, transformer)
        Applied to the concatenation.
    n_components : int, default=64
        PCA components of the default (deep) block.
    random_state : int, default=0
    block : FeatureBlock, optional
        Default: :func:`deep_block` (``("deep_pca", ...)``).

    Returns
    -------
    list of (name, transformer)
        Output names: ``<block>__<column>`` (``deep__deep_pc<j>``) and ``radiomics__<feature>``.
    """
    block = block or deep_block(n_components, random_state)
    if not deep_cols:
        raise InputError(f"The model needs {block.name} feature columns ({block.pattern}).")
    blocks: list[tuple[str, Any, list[str]]] = [(block.name, block.transformer, list(deep_cols))]
    if len(radiomics_cols):
        blocks.append(("radiomics", "passthrough", list(radiomics_cols)))
    ct = ColumnTransformer(blocks, remainder="drop", verbose_feature_names_out=True).set_output(transform="pandas")
    return [(block.step, ct), *as_steps(selection)]


def _fold_table(folds: Mapping[str, FoldFeatures | pd.DataFrame], fold: str,
                block: FeatureBlock | None = None) -> pd.DataFrame:
    block = block or deep_block()
    if fold not in folds:
        raise InputError(f"No {block.name} features for outer fold '{fold}'; folds with features: "
                         f"{sorted(folds)[:8]}.")
    entry = folds[fold]
    frame = entry.features if isinstance(entry, FoldFeatures) else entry
    cols = block.columns(frame.columns)
    if not cols:
        raise InputError(f"The {block.name} features of fold '{fold}' have no {block.pattern} columns.")
    out = frame[cols].copy()
    out.index = out.index.astype(str)
    return out


def run_dlr_cv(folds: Mapping[str, FoldFeatures | pd.DataFrame], radiomics: pd.DataFrame | None,
               manifest: Manifest | pd.DataFrame, *, model: str = "lr", selection: Steps | None = None,
               n_components: int = 64, scheme: str = "kfold", grid: Mapping[str, list[Any]] | None = None,
               params: Mapping[str, Any] | None = None, search: SearchSettings | None = None,
               threshold: ThresholdRule | None = None, keep_train: bool = True, model_name: str | None = None,
               n_jobs: int = 1, block: FeatureBlock | None = None) -> CVResult:
    """Nested evaluation of the network-features-only (``radiomics=None``) or fused model over the outer folds.

    Parameters
    ----------
    folds : dict
        Outer fold name -> :class:`~her2dlr.deep.features.FoldFeatures` (or a DataFrame of
        deep features from that fold's network, indexed by case id; then no bookkeeping check).
    radiomics : DataFrame of shape (n_cases, n_features) or None
        Indexed by case id; the same table in every fold.
    manifest : Manifest or DataFrame
        ``case_id, patient_id, label`` and the outer-fold columns.
    model : str, default="lr"
        Zoo name.
    selection : steps, default=:data:`DLR_SELECTION`
        After the PCA / concatenation.
    n_components : int, default=64
    scheme : {"kfold", "holdout"}, default="kfold"
    grid, params, search, threshold
        As in :func:`her2dlr.learn.cv.fit_fold`.
    keep_train : bool, default=True
        Also return ``train`` and ``train_oof`` rows.
    model_name : str, optional
        Default ``"dlr-<model>"`` (``"deep-<model>"`` without radiomics).
    n_jobs : int, default=1
        Outer folds in parallel.
    block : FeatureBlock, optional
        The fold tables' columns and their first in-fold step; default :func:`deep_block`
        (PCA to ``n_components``). :mod:`her2dlr.deep.dsfr` passes the DSFR block (k-means
        channel selection of a segmentation network's lesion channel means).

    Returns
    -------
    CVResult

    Raises
    ------
    InputError
        A fold without deep features, a fold's network trained on one of its test cases, cases
        without radiomics or deep features, clashing column names.
    """
    selection = DLR_SELECTION if selection is None else selection
    search = search or SearchSettings()
    if n_jobs != 1 and search.n_jobs != 1:
        search = replace(search, n_jobs=1)
    block = block or deep_block(n_components, search.random_state)
    name = model_name or f"{'dlr' if radiomics is not None else block.name}-{model}"
    typed = {f: v for f, v in folds.items() if isinstance(v, FoldFeatures)}
    table_all = manifest.included if isinstance(manifest, Manifest) else manifest
    if typed:
        check_out_of_fold(typed, table_all[table_all["label"].notna()] if "label" in table_all else table_all)
    first = _fold_table(folds, next(iter(folds)), block)
    base = radiomics if radiomics is not None else first
    if radiomics is not None:
        rad = radiomics.set_index("case_id") if "case_id" in radiomics.columns else radiomics
        rad = rad.copy()
        rad.index = rad.index.astype(str)
        clash = sorted(set(rad.columns.astype(str)) & set(first.columns))
        if clash:
            raise InputError(f"Radiomics column(s) {clash[:5]} clash with the deep-feature names.")
        base = rad
    data = learning_data(base, manifest)
    ids = data.X.index.astype(str)
    plan = []
    for fold, rep, train, test in outer_folds(data.table, scheme):
        deep = _fold_table(folds, fold, block)
        missing = sorted(set(ids) - set(deep.index))
        if missing:
            raise InputError(f"Fold '{fold}': {len(missing)} case(s) have no {block.name} features, "
                             f"e.g. {missing[:5]}.")
        X = deep.loc[ids]
        if radiomics is not None:
            X = pd.concat([X, data.X], axis=1)
        X.index.name = "case_id"
        plan.append((fold, rep, train, test, X))
    rad_cols = list(data.X.columns) if radiomics is not None else []
    steps = dlr_steps(list(first.columns), rad_cols, selection, block=block)
    jobs = (delayed(fit_fold)(X[train], data.y[train], data.groups[train], model=model, selection=steps, grid=grid,
                              params=params, search=search, threshold=threshold, fold=fold)
            for fold, _, train, _, X in plan)
    outputs = Parallel(n_jobs=n_jobs)(jobs)
    frames, fits = [], []
    for (fit, oof), (fold, rep, train, test, X) in zip(outputs, plan):
        fit.repeat = rep
        fit.test_cases = ids[test].tolist()
        fits.append(fit)
        parts: list[tuple[str, np.ndarray, np.ndarray | None]] = [("test", test, None)]
        if keep_train:
            parts += [("train", train, None), ("train_oof", train, oof)]
        for split, rows, given in parts:
            if not rows.any():
                continue
            prob = given if given is not None else fit.pipeline.predict_proba(X[rows])[:, 1]
            frames.append(pd.DataFrame({
                "case_id": ids[rows], "patient_id": data.patient[rows], "model": name, "fold": fold, "split": split,
                "prob": prob, "class": apply_threshold(prob, fit.threshold), "label": data.y[rows],
                "threshold": fit.threshold.value,
            }))
        log.info("%s %s: inner median AUC %.3f, %d features", name, fold, fit.inner_median_auc, len(fit.features))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return CVResult(name, scheme, predictions[PREDICTION_COLUMNS], fits)


def deep_signature(folds: Mapping[str, FoldFeatures], manifest: Manifest | pd.DataFrame, *,
                   scheme: str = "kfold", threshold: ThresholdRule | None = None, keep_train: bool = True,
                   name: str = DEEP_SIGNATURE) -> CVResult:
    """The fold networks' own probabilities as predictions (seed 002's deep-learning signature).

    ``test`` rows: each fold's test cases, scored by the network trained without them.
    ``train`` rows: the fold's training cases scored by the same network (apparent, in-sample);
    the fold's threshold is chosen on them (there are no inner out-of-fold predictions of a
    network).

    Returns
    -------
    CVResult
        ``fits`` is empty.
    """
    table_all = manifest.included if isinstance(manifest, Manifest) else manifest
    labelled = table_all[table_all["label"].notna()] if "label" in table_all else table_all
    check_out_of_fold(folds, labelled)
    first = next(iter(folds.values()))
    data = learning_data(first.features, manifest)
    ids = data.X.index.astype(str)
    frames = []
    for fold, _, train, test in outer_folds(data.table, scheme):
        if fold not in folds:
            raise InputError(f"No network probabilities for outer fold '{fold}'.")
        prob_all = folds[fold].prob.reindex(ids).to_numpy(dtype=float)
        if np.isnan(prob_all[train | test]).any():
            raise InputError(f"Fold '{fold}': the network has no probability for some cases.")
        thr = choose_threshold(data.y[train], prob_all[train], threshold, source="train_fit")
        parts = [("test", test)] + ([("train", train)] if keep_train else [])
        for split, rows in parts:
            if not rows.any():
                continue
            prob = prob_all[rows]
            frames.append(pd.DataFrame({
                "case_id": ids[rows], "patient_id": data.patient[rows], "model": name, "fold": fold, "split": split,
                "prob": prob, "class": apply_threshold(prob, thr), "label": data.y[rows], "threshold": thr.value,
            }))
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return CVResult(name, scheme, predictions[PREDICTION_COLUMNS], [])


def late_dlr(signature: CVResult, radiomics: CVResult, *, name: str | None = None,
             threshold: ThresholdRule | None = None, weights: Sequence[float] | None = None) -> CVResult:
    """Late fusion: mean of the deep signature's and the radiomics model's probabilities, fold by fold.

    The fused threshold is chosen on the training rows both have (the radiomics model needs
    ``keep_train=True``: its ``train`` rows pair with the signature's).
    """
    from her2dlr.learn.fusion import late_fusion

    rad = radiomics
    if not (signature.predictions["split"] == "train_oof").any():
        rad = CVResult(radiomics.model, radiomics.scheme,
                       radiomics.predictions[radiomics.predictions["split"] != "train_oof"], radiomics.fits)
    return late_fusion([signature, rad], name=name or f"late({signature.model},{radiomics.model})",
                       threshold=threshold, weights=weights)


@dataclass
class DLRModels:
    """The models of :func:`fit_dlr_models`, named as in the predictions and the model artefacts."""

    dlr: CVResult
    radiomics: CVResult
    signature: CVResult
    late: CVResult
    deep: CVResult | None = None
    chosen: Any = None  # ChosenFusion, when the networks list their inner validation cases

    def results(self) -> list[CVResult]:
        """``deep`` (when fitted), ``dlr``, ``radiomics``, ``signature``, ``late``, the chosen fusion (when made)."""
        fused = self.chosen.result if self.chosen is not None else None
        return [r for r in (self.deep, self.dlr, self.radiomics, self.signature, self.late, fused) if r is not None]


def refuse_multiclass_dlr(manifest: Manifest | pd.DataFrame) -> None:
    """Refuse a label of more than two classes, naming the key: DLR models fuse one positive-class signature.

    Raises
    ------
    InputError
        The manifest's label has more than two classes (``label.rule: her2_three_class``).
    """
    from her2dlr.learn.multiclass_cv import label_classes

    k = label_classes(manifest)
    if k > 2:
        rule = ((manifest.meta if isinstance(manifest, Manifest) else {}).get("label") or {}).get("rule")
        named = f"label.rule '{rule}'" if rule else "the label (label.rule)"
        raise InputError(f"deep.dlr: {named} has {k} classes, but deep learning radiomics (her2dlr learn dlr) fuses "
                         "the network's probability of one positive class (the deep signature) with binary radiomics "
                         "models. Use a binary rule (label.rule: her2_low or her2_status), or for three classes the "
                         "deep stage's network (her2dlr train deep) and the learning stage (her2dlr learn run).")


def fit_dlr_models(folds: Mapping[str, FoldFeatures], radiomics: pd.DataFrame, radiomics_name: str,
                   manifest: Manifest | pd.DataFrame, *, arch: str, model: str, settings: Any,
                   n_components: int = 64, scheme: str = "kfold", deep_only: bool = True, n_jobs: int = 1,
                   choose: bool = True) -> DLRModels:
    """The DLR models of one network on the outer folds of ``scheme``, with the study's learning settings.

    ``deep_<arch>-<model>`` (deep features only, when ``deep_only``), ``deep_<arch>+<radiomics_name>-<model>``
    (early fusion), ``<radiomics_name>-<model>``, ``deep_<arch>-signature``, their late fusion, and
    ``deep_<arch>+<radiomics_name>-fused``: the fusion each fold chose by inner validation
    (:func:`her2dlr.deep.dlr_fusion.choose_fusion`; left out, with a log message, when the fold
    networks do not list their inner validation cases; not made with ``choose=False``). Selection,
    search and threshold rule
    come from ``settings`` (:class:`~her2dlr.learn.settings.LearnSettings`).
    """
    from her2dlr.learn.cv import run_outer_cv

    refuse_multiclass_dlr(manifest)
    rule = settings.threshold_rule()
    common: dict[str, Any] = {"model": model, "selection": settings.selection, "search": settings.search_settings(),
                              "threshold": rule, "scheme": scheme, "n_jobs": n_jobs}
    deep = (run_dlr_cv(folds, None, manifest, n_components=n_components, model_name=f"deep_{arch}-{model}", **common)
            if deep_only else None)
    dlr = run_dlr_cv(folds, radiomics, manifest, n_components=n_components,
                     model_name=f"deep_{arch}+{radiomics_name}-{model}", **common)
    rad = run_outer_cv(radiomics, manifest, model_name=f"{radiomics_name}-{model}", **common)
    signature = deep_signature(folds, manifest, scheme=scheme, threshold=rule, name=f"deep_{arch}-signature")
    chosen = None
    if choose and all(f.val_cases for f in folds.values()):
        from her2dlr.deep.dlr_fusion import choose_fusion

        chosen = choose_fusion(dlr, rad, folds, name=f"deep_{arch}+{radiomics_name}-fused", threshold=rule,
                               seed=settings.search_settings().random_state)
    elif choose:
        log.warning("The fold networks do not list their inner validation cases (trained before they were "
                    "recorded): no fusion chosen by inner validation; train the networks again to get it.")
    return DLRModels(dlr, rad, signature, late_dlr(signature, rad, threshold=rule), deep, chosen)


@dataclass
class DLRResult:
    """What :func:`run_study_dlr` computed and wrote.

    Attributes
    ----------
    results : list of CVResult
        ``deep-<clf>``, ``dlr-<clf>``, the radiomics model, ``deep_signature`` and the late fusion.
    predictions, metrics : DataFrame
    out_dir : Path
    files : list of Path
    """

    results: list[CVResult]
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def run_study_dlr(study: Any, *, arch: str = "densenet3block", radiomics: str = "radiomics", model: str = "lr",
                  n_components: int = 64, n_jobs: int = 1) -> DLRResult:
    """The study's DLR models on its k-fold: ``RUN/learn/dlr_<arch>/`` (predictions, metrics).

    Reads the per-fold deep features of ``her2dlr extract deep`` (``RUN/features/deep_<arch>/``)
    and a radiomics table (name or path, see :func:`her2dlr.learn.study.resolve_feature_table`);
    uses the study's ``learn:`` selection, search and threshold settings.

    Raises
    ------
    InputError
        No deep features (run ``her2dlr extract deep``), no radiomics table, a label of more than
        two classes (:func:`refuse_multiclass_dlr`).
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.deep.features import read_fold_features
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.study import load_feature_tables

    settings = study.learn or LearnSettings()
    manifest = Manifest.load(manifest_path(study))
    refuse_multiclass_dlr(manifest)
    folds = read_fold_features(study.paths.deep_features(arch))
    rad, rad_name = load_feature_tables(study, [radiomics])
    models = fit_dlr_models(folds, rad, rad_name, manifest, arch=arch, model=model, settings=settings,
                            n_components=n_components, n_jobs=n_jobs)
    results = models.results()
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    metrics = metrics_table(predictions)
    out = study.paths.learn_set(dlr_set_name(arch))
    files = [write_parquet_atomic(predictions, out / PREDICTIONS, index=False),
             write_csv_atomic(metrics, out / METRICS),
             write_csv_atomic(pd.concat([r.funnel().assign(model=r.model) for r in results if r.fits],
                                        ignore_index=True), out / FUNNEL)]
    if models.chosen is not None:
        files.append(write_csv_atomic(models.chosen.choice_table(), out / FUSION_CHOICE))
    return DLRResult(results, predictions, metrics, out, files)
