"""DSFR models (seed 003): segmentation features, radiomics, and their late fusion on the same folds.

Three models on the outer folds of the segmentation networks' k-fold repetition:

``dsfr_<arch>-<clf>``
    The fold's segmentation network's lesion channel means (:mod:`her2dlr.deep.dsfr_features`)
    -> :class:`~her2dlr.segment.dsfr.DSFRSelector` (k-means on the channels, the larger
    cluster kept) -> seed 003's selection (:data:`DSFR_SELECTION`: z-score, mutual
    information, LASSO) -> classifier. This is :func:`her2dlr.deep.dlr.run_dlr_cv` with the
    DSFR block (:func:`dsfr_block`) instead of the deep features' PCA.
``<radiomics>-<clf>``
    The radiomics table through the study's ``learn:`` selection and the same classifier.
``dlr(dsfr_<arch>,<radiomics>)-<clf>``
    Seed 003's DLR model: the mean of the two models' probabilities, fold by fold
    (:func:`her2dlr.learn.fusion.late_fusion`; its threshold from the averaged inner
    out-of-fold probabilities of the training rows).

Which folds: ``her2dlr train seg`` trains one network per outer fold of one k-fold repetition
(``segment.repetition``). A case of another repetition's test fold was in the training set of
some of those networks, so only the learn folds of that repetition can be scored out of fold:
the models are fitted on those folds only (:func:`repetition_table`), and the result says so.
Everything data-dependent after the network - channel clustering, scaling, selection, the
classifier, the threshold - is fitted on the fold's training rows by
:func:`her2dlr.learn.cv.fit_fold`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.cohort.manifest import Manifest
from her2dlr.deep.dlr import FeatureBlock, run_dlr_cv
from her2dlr.deep.features import FoldFeatures
from her2dlr.errors import InputError
from her2dlr.learn.cv import CVResult
from her2dlr.learn.tuning import Steps
from her2dlr.runfolder import FUNNEL, METRICS, PREDICTIONS, SETTINGS, dsfr_set_name
from her2dlr.segment.dsfr import DSFR_PREFIX, DSFRSelector, dsfr_columns

__all__ = ["DSFR_SELECTION", "DSFRModels", "DSFRStudyResult", "dsfr_block", "fit_dsfr_models", "repetition_of",
           "repetition_table", "run_study_dsfr"]

#: Seed 003's selection after the channel clustering: z-score, mutual information, LASSO.
DSFR_SELECTION: list[dict[str, Any]] = [
    {"name": "zscore"},
    {"name": "mutual_info", "k": 20},
    {"name": "lasso", "cv": 5},
]


def dsfr_block(n_clusters: int = 2, random_state: int = 0) -> FeatureBlock:
    """The segmentation networks' block: ``dsfr_<layer>_<c>`` columns -> :class:`DSFRSelector` (seed 003)."""
    return FeatureBlock("dsfr", "dsfr_kmeans", dsfr_columns, DSFRSelector(n_clusters, random_state=random_state),
                        f"{DSFR_PREFIX}<layer>_<channel>")


def repetition_of(folds: Mapping[str, Any]) -> int:
    """The k-fold repetition of fold networks named ``r<rep>f<k>``; all must share it.

    Raises
    ------
    InputError
        A fold name of another form, or networks of several repetitions.
    """
    reps = set()
    for fold in folds:
        if not (fold.startswith("r") and "f" in fold and fold[1:].split("f")[0].isdigit()):
            raise InputError(f"Fold network '{fold}' is not an outer fold r<rep>f<k>.")
        reps.add(int(fold[1:].split("f")[0]))
    if len(reps) != 1:
        raise InputError(f"The fold networks span repetitions {sorted(reps)}; expected one (segment.repetition).")
    return reps.pop()


def repetition_table(manifest: Manifest | pd.DataFrame, repetition: int) -> pd.DataFrame:
    """The manifest rows with only the ``fold_r<repetition>`` fold column (other repetitions' columns dropped).

    Raises
    ------
    InputError
        No such column.
    """
    table = manifest.included if isinstance(manifest, Manifest) else manifest
    col = f"fold_r{repetition}"
    if col not in table.columns:
        raise InputError(f"The manifest has no column {col}: the segmentation networks were trained on another "
                         "split. Run `her2dlr train seg STUDY` again.")
    drop = [c for c in table.columns if str(c).startswith("fold_r") and c != col]
    return table.drop(columns=drop)


def _complete_cases(folds: Mapping[str, FoldFeatures], table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows whose DSFR features are there and finite in every fold table; the others' ids."""
    ok = pd.Series(True, index=table["case_id"].astype(str).to_numpy())
    for ff in folds.values():
        frame = ff.features[dsfr_columns(ff.features.columns)]
        finite = pd.Series(np.isfinite(frame.to_numpy(dtype=float)).all(axis=1), index=frame.index.astype(str))
        ok &= finite.reindex(ok.index).fillna(False).astype(bool)
    dropped = ok.index[~ok.to_numpy()].tolist()
    return table[ok.to_numpy()], dropped


@dataclass
class DSFRModels:
    """The models of :func:`fit_dsfr_models`, named as in the predictions.

    Attributes
    ----------
    dsfr, radiomics, dlr : CVResult
        DSFR model, radiomics model, their probability average (seed 003's DLR model).
    repetition : int
        The k-fold repetition whose folds were scored.
    dropped : list of str
        Labelled cases left out: no finite DSFR features (no lesion).
    """

    dsfr: CVResult
    radiomics: CVResult
    dlr: CVResult
    repetition: int
    dropped: list[str] = field(default_factory=list)

    def results(self) -> list[CVResult]:
        """``dsfr``, ``radiomics``, ``dlr``."""
        return [self.dsfr, self.radiomics, self.dlr]


def fit_dsfr_models(folds: Mapping[str, FoldFeatures], radiomics: pd.DataFrame, radiomics_name: str,
                    manifest: Manifest | pd.DataFrame, *, arch: str, model: str = "lr", settings: Any = None,
                    selection: Steps | None = None, n_clusters: int = 2, n_jobs: int = 1) -> DSFRModels:
    """The DSFR, radiomics and DLR (late fusion) models on the outer folds of the networks' repetition.

    Parameters
    ----------
    folds : dict
        ``r<rep>f<k>`` -> :class:`~her2dlr.deep.features.FoldFeatures` of the segmentation
        networks (:func:`her2dlr.deep.features.read_fold_features` of ``features/dsfr_<arch>``).
    radiomics : DataFrame of shape (n_cases, n_features)
        Indexed by case id.
    radiomics_name : str
    manifest : Manifest or DataFrame
    arch : str
    model : str, default="lr"
        Zoo classifier of both models.
    settings : LearnSettings, optional
        Radiomics selection, inner search and threshold rule (default: the defaults).
    selection : steps, default=:data:`DSFR_SELECTION`
        After the channel clustering.
    n_clusters : int, default=2
        k-means clusters of the channels.
    n_jobs : int, default=1
        Outer folds in parallel.

    Returns
    -------
    DSFRModels
    """
    from her2dlr.learn.cv import run_outer_cv
    from her2dlr.learn.fusion import late_fusion
    from her2dlr.learn.settings import LearnSettings

    settings = settings or LearnSettings()
    rep = repetition_of(folds)
    table, dropped = _complete_cases(folds, repetition_table(manifest, rep))
    if "label" in table.columns:
        table = table[table["label"].notna()]
    rule = settings.threshold_rule()
    search = settings.search_settings()
    common: dict[str, Any] = {"model": model, "search": search, "threshold": rule, "scheme": "kfold",
                              "n_jobs": n_jobs}
    dsfr = run_dlr_cv(folds, None, table, selection=DSFR_SELECTION if selection is None else selection,
                      block=dsfr_block(n_clusters, search.random_state), model_name=f"dsfr_{arch}-{model}", **common)
    _require_inner_predictions(dsfr, "segment.dsfr.selection")
    rad_rows = radiomics.set_index("case_id") if "case_id" in radiomics.columns else radiomics
    rad = run_outer_cv(rad_rows, table, selection=settings.selection, model_name=f"{radiomics_name}-{model}",
                       **common)
    _require_inner_predictions(rad, "learn.selection")
    dlr = late_fusion([dsfr, rad], name=f"dlr(dsfr_{arch},{radiomics_name})-{model}", threshold=rule)
    return DSFRModels(dsfr, rad, dlr, rep, dropped)


def _require_inner_predictions(result: CVResult, key: str) -> None:
    """Refuse, naming the settings to change, a model whose inner out-of-fold probabilities have gaps: the DLR
    average chooses its threshold on them (seed 003's selection fails on inner training parts of a few cases)."""
    oof = result.predictions[result.predictions["split"] == "train_oof"]
    gaps = oof[oof["prob"].isna()]
    if gaps.empty:
        return
    failures = [n for f in result.fits for n in f.notes if "failed" in n]
    raise InputError(
        f"{result.model}: {len(gaps)} training case(s) of fold(s) {sorted(set(gaps['fold'].astype(str)))} have no "
        "inner out-of-fold probability, and the DLR model (their average) chooses its threshold on them"
        + (f" ({failures[0]})" if failures else "") + f". With this few cases, lighten {key} (e.g. "
        "{name: lasso, cv: 3}, or fewer mutual_info features) or use fewer learn.search.inner_splits.")


@dataclass
class DSFRStudyResult:
    """What :func:`run_study_dsfr` computed and wrote (``RUN/learn/dsfr_<arch>/``)."""

    models: DSFRModels
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_study_dsfr(study: Any, *, arch: str | None = None, radiomics: str | None = None, model: str | None = None,
                   n_jobs: int = 1) -> DSFRStudyResult:
    """The study's DSFR models (``her2dlr learn dsfr``): predictions, metrics, funnel and settings.

    Reads ``RUN/features/dsfr_<arch>/`` (``her2dlr extract dsfr``) and a radiomics table (name or
    path, see :func:`her2dlr.learn.study.resolve_feature_table`); the ``learn:`` section gives
    the radiomics selection, the inner search and the threshold rule, ``segment.dsfr`` the
    number of channel clusters, the selection after them (default :data:`DSFR_SELECTION`) and the
    defaults of ``radiomics`` and ``model``.

    Parameters
    ----------
    study : Study
    arch : str, optional
        Segmentation network (default: ``segment.arch``).
    radiomics : str, optional
        Radiomics table; default ``segment.dsfr.radiomics``, else the first radiomics table of
        ``learn.features``, else the one table under ``RUN/features`` whose name starts with
        ``radiomics``.
    model : str, optional
        Zoo classifier (default: ``segment.dsfr.model``, ``lr``).
    n_jobs : int, default=1
        Outer folds in parallel.

    Raises
    ------
    InputError
        No DSFR features (names ``her2dlr extract dsfr``), no radiomics table.
    """
    from her2dlr.cohort.build import manifest_path
    from her2dlr.deep.features import read_fold_features
    from her2dlr.evaluate.metrics import metrics_table
    from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.study import load_feature_tables
    from her2dlr.segment.settings import SegmentSettings

    seg = study.segment or SegmentSettings()
    arch = arch or seg.arch
    learn_features = study.learn.features if study.learn is not None else ()
    radiomics = radiomics or seg.dsfr.radiomics_table(learn_features) or "radiomics"
    model = model or seg.dsfr.model
    folds = read_fold_features(study.paths.dsfr_features(arch), command="her2dlr extract dsfr STUDY")
    manifest = Manifest.load(manifest_path(study))
    rad, rad_name = load_feature_tables(study, [radiomics])
    models = fit_dsfr_models(folds, rad, rad_name, manifest, arch=arch, model=model,
                             settings=study.learn or LearnSettings(), selection=seg.dsfr.selection,
                             n_clusters=seg.dsfr.n_clusters, n_jobs=n_jobs)
    notes = [f"Scored on the outer folds of k-fold repetition {models.repetition} only: the segmentation networks "
             "were trained on that repetition's folds, so another repetition's test cases were seen by them."]
    if models.dropped:
        notes.append(f"{len(models.dropped)} case(s) without DSFR features (no lesion) left out: {models.dropped[:5]}")
    results = models.results()
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    metrics = metrics_table(predictions)
    out = study.paths.learn_set(dsfr_set_name(arch))
    funnel = pd.concat([r.funnel().assign(model=r.model) for r in results if r.fits], ignore_index=True)
    info = {"arch": arch, "repetition": models.repetition, "folds": sorted(folds), "radiomics": rad_name,
            "model": model, "selection": DSFR_SELECTION if seg.dsfr.selection is None else seg.dsfr.selection,
            "n_clusters": seg.dsfr.n_clusters,
            "dropped_cases": models.dropped, "notes": notes}
    files = [write_parquet_atomic(predictions, out / PREDICTIONS, index=False),
             write_csv_atomic(metrics, out / METRICS), write_csv_atomic(funnel, out / FUNNEL),
             write_text_atomic(out / SETTINGS, json.dumps(info, indent=2, default=str))]
    return DSFRStudyResult(models, predictions, metrics, out, files, notes)
