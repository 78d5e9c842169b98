"""Every path of a run folder: the contract between the stages.

A study writes everything under one run folder (``output_dir`` of the study file,
``runs/<name>`` by default)::

    RUN/
      cohort/      manifest.parquet (+ .csv), qc.csv, qc_pairs.csv, qc_summary.txt, qc_summary.json,
                   labels.csv, splits.csv, label_counts.json, masks/ (derived lesion masks),
                   volumes/ (volumes read from DICOM sources: DCE phase, kinetic maps, masks)
      features/    <table>.parquet, <table>.json (extraction record), <table>_failures.csv, cache/,
                   deep_<arch>/<fold>.parquet + provenance.csv, deep_<arch>_pca.csv,
                   dsfr_<arch>/<fold>.parquet + provenance.csv + heatmaps/ (segmentation networks' features)
      learn/<set>/ predictions.parquet, metrics.csv, funnel.csv, params.csv, inner_results.csv,
                   feature_frequency.csv, clinical_variables.csv, workflows.csv, settings.json, excluded_cases.csv,
                   fold_cache/ (finished outer folds: an interrupted run resumes from them)
      deep/<arch>/ <fold>/best.pt, last.pt, predictions.parquet, metrics.csv, folds.csv, history.csv,
                   settings.json, explain/
      models/<name>/  model_card.json, model.joblib, components/, network.pt
      segment/     auto_masks.csv (the study's automatic masks), <arch>/<fold>/best.pt, <arch>/masks/,
                   <arch>/masks.csv, <arch>/metrics.csv, <arch>/montage.png
      survival/    tables/, figures/, summary.txt, survival_settings.json, risk_stratifier.json
      report/      report.html, report.pdf, figures/, tables/
      stages.json  what `her2dlr run` ran, with the fingerprints of its inputs
      mlruns/      the MLflow store (mlflow.db, artifacts/) when the study turns tracking on

Writers and readers take their paths from :class:`RunPaths` and the file-name constants below;
no stage spells a run-folder path itself.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BEST_CHECKPOINT",
    "CLINICAL_VARIABLES",
    "CONFUSION",
    "EXCLUDED_CASES",
    "FEATURE_FREQUENCY",
    "FOLDS",
    "FOLD_CACHE",
    "FUNNEL",
    "HISTORY",
    "INNER_RESULTS",
    "LABEL_PROXIES",
    "LAST_CHECKPOINT",
    "MANIFEST",
    "METRICS",
    "MODEL_CARD",
    "MULTICLASS",
    "PARAMS",
    "PREDICTIONS",
    "PREDICTIONS_CSV",
    "PROVENANCE",
    "QC_PAIRS",
    "QC_SUMMARY_JSON",
    "QC_SUMMARY_TEXT",
    "QC_TABLE",
    "SETTINGS",
    "WORKFLOWS",
    "RunPaths",
    "deep_features_name",
    "dlr_set_name",
    "dsfr_features_name",
    "dsfr_set_name",
]

# Files of one result folder (learn/<set>/ or deep/<arch>/)
PREDICTIONS = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"
METRICS = "metrics.csv"
MULTICLASS = "multiclass.csv"  # multi-class models: per-class one-vs-rest AUCs, macro AUC (her2dlr.evaluate.multiclass_tables)
CONFUSION = "confusion.csv"  # multi-class models: confusion matrices, long form
FUNNEL = "funnel.csv"
PARAMS = "params.csv"
INNER_RESULTS = "inner_results.csv"
WORKFLOWS = "workflows.csv"  # every workflow tried by a workflow search, per outer fold
FEATURE_FREQUENCY = "feature_frequency.csv"
CLINICAL_VARIABLES = "clinical_variables.csv"
LABEL_PROXIES = "label_proxies.csv"  # clinical columns that may stand in for the label (her2dlr.evaluate.proxies)
EXCLUDED_CASES = "excluded_cases.csv"
FOLD_CACHE = "fold_cache"  # learn/<set>/fold_cache/<key>.joblib: finished outer folds, for resuming (her2dlr.learn.fold_cache)
SETTINGS = "settings.json"
FOLDS = "folds.csv"
HISTORY = "history.csv"
# A model artefact's card; a fold network's checkpoints; which cases each fold network saw
MODEL_CARD = "model_card.json"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
PROVENANCE = "provenance.csv"
# Files of cohort/
MANIFEST = "manifest.parquet"
QC_TABLE = "qc.csv"
QC_PAIRS = "qc_pairs.csv"
QC_SUMMARY_TEXT = "qc_summary.txt"
QC_SUMMARY_JSON = "qc_summary.json"


def case_file_stem(case_id: str) -> str:
    """A file name stem for a case: its id when safe, else a cleaned id plus a short hash (never two cases alike)."""
    text = str(case_id)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    if stem == text and stem:
        return stem
    return f"{stem or 'case'}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def deep_features_name(arch: str) -> str:
    """Name of a network's per-fold feature folder under ``features/``: ``deep_<arch>``."""
    return f"deep_{arch}"


def dlr_set_name(arch: str) -> str:
    """Name of the learning set of deep learning radiomics models: ``dlr_<arch>``."""
    return f"dlr_{arch}"


def dsfr_features_name(arch: str) -> str:
    """Name of a segmentation network's per-fold DSFR feature folder under ``features/``: ``dsfr_<arch>``."""
    return f"dsfr_{arch}"


def dsfr_set_name(arch: str) -> str:
    """Name of the learning set of the DSFR models (seed 003): ``dsfr_<arch>``."""
    return f"dsfr_{arch}"


@dataclass(frozen=True)
class RunPaths:
    """Paths of one run folder (nothing is created or read here)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    # ------------------------------------------------------------------ cohort
    @property
    def cohort(self) -> Path:
        return self.root / "cohort"

    @property
    def manifest(self) -> Path:
        return self.cohort / MANIFEST

    @property
    def qc_table(self) -> Path:
        return self.cohort / QC_TABLE

    @property
    def qc_pairs(self) -> Path:
        return self.cohort / QC_PAIRS

    @property
    def qc_summary_text(self) -> Path:
        return self.cohort / QC_SUMMARY_TEXT

    @property
    def qc_summary_json(self) -> Path:
        return self.cohort / QC_SUMMARY_JSON

    @property
    def labels(self) -> Path:
        return self.cohort / "labels.csv"

    @property
    def splits(self) -> Path:
        return self.cohort / "splits.csv"

    @property
    def label_counts(self) -> Path:
        return self.cohort / "label_counts.json"

    @property
    def derived_masks(self) -> Path:
        return self.cohort / "masks"

    @property
    def dce_volumes(self) -> Path:
        """De-identified volumes read from DICOM sources (chosen DCE phase, kinetic maps, masks)."""
        return self.cohort / "volumes"

    # ------------------------------------------------------------------ features
    @property
    def features(self) -> Path:
        return self.root / "features"

    def feature_table(self, name: str) -> Path:
        """``features/<name>.parquet``."""
        return self.features / f"{name}.parquet"

    def feature_record(self, name: str) -> Path:
        """``features/<name>.json``: how the table was made (params, ROI, counts)."""
        return self.features / f"{name}.json"

    def feature_failures(self, name: str) -> Path:
        """``features/<name>_failures.csv``: cases whose extraction failed, with the reason."""
        return self.features / f"{name}_failures.csv"

    @property
    def feature_cache(self) -> Path:
        return self.features / "cache"

    def deep_features(self, arch: str) -> Path:
        """``features/deep_<arch>/``: one table per fold network."""
        return self.features / deep_features_name(arch)

    def deep_pca(self, arch: str) -> Path:
        """``features/deep_<arch>_pca.csv``: explained variance of the in-fold PCA."""
        return self.features / f"{deep_features_name(arch)}_pca.csv"

    def dsfr_features(self, arch: str) -> Path:
        """``features/dsfr_<arch>/``: one table of lesion channel means per segmentation fold network."""
        return self.features / dsfr_features_name(arch)

    def dsfr_heatmaps(self, arch: str) -> Path:
        """``features/dsfr_<arch>/heatmaps/``: kept channels' feature maps over a few cases' images."""
        return self.dsfr_features(arch) / "heatmaps"

    # ------------------------------------------------------------------ learning, models
    @property
    def learn(self) -> Path:
        return self.root / "learn"

    def learn_set(self, name: str) -> Path:
        """``learn/<name>/``: predictions, metrics, funnel, params of one feature set."""
        return self.learn / name

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model(self, name: str) -> Path:
        """``models/<name>/``: one deployable model artefact."""
        return self.models / name

    # ------------------------------------------------------------------ deep
    @property
    def deep(self) -> Path:
        return self.root / "deep"

    def deep_arch(self, arch: str) -> Path:
        """``deep/<arch>/``: fold checkpoints, predictions and metrics of one network."""
        return self.deep / arch

    def explain(self, arch: str) -> Path:
        """``deep/<arch>/explain/``: heat maps of every case by the network that never saw it."""
        return self.deep_arch(arch) / "explain"

    # ------------------------------------------------------------------ segmentation
    @property
    def segment(self) -> Path:
        return self.root / "segment"

    def segment_arch(self, arch: str) -> Path:
        """``segment/<arch>/``: fold networks, out-of-fold masks and their metrics."""
        return self.segment / arch

    @property
    def auto_masks(self) -> Path:
        """``segment/auto_masks.csv``: per case the automatic mask (``mask_auto``) that ``roi: auto`` reads."""
        return self.segment / "auto_masks.csv"

    # ------------------------------------------------------------------ survival, report, stages
    @property
    def survival(self) -> Path:
        return self.root / "survival"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def stages(self) -> Path:
        return self.root / "stages.json"

    @property
    def mlruns(self) -> Path:
        """The MLflow store of ``tracking: {mlflow: true}`` when no ``uri`` is given (see :mod:`her2dlr.tracking`)."""
        return self.root / "mlruns"
