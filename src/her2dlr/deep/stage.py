"""The deep stage of a study: manifest -> ``<run>/deep/<arch>/`` (checkpoints, predictions, metrics).

Reads the cohort manifest of ``her2dlr cohort build`` (its ``fold_r<k>`` and ``split`` columns
are the same outer folds the radiomics models use) and runs :func:`her2dlr.deep.cv.run_deep_cv`.
The ``predictions.parquet`` it writes has the learning stage's columns, so the evaluation and
report stages read deep and radiomics models alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from her2dlr.deep.cv import DeepCVResult, run_deep_cv
from her2dlr.deep.recipes import Recipe, recipes_from_dicts
from her2dlr.deep.settings import DeepSettings
from her2dlr.deep.train import TrainSettings
from her2dlr.imaging.roi import RoiSpec

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["deep_dir", "run_deep_stage", "run_dlr_stage", "training_settings"]


def deep_dir(study: Study, arch: str) -> Path:
    """Where the deep stage of ``arch`` writes: ``<run>/deep/<arch>``."""
    return study.paths.deep_arch(arch)


def training_settings(deep: DeepSettings, *, weights_dir: Path | None = None, num_workers: int = 0,
                      num_threads: int | None = None, distributed: bool = False,
                      progress: bool = True) -> tuple[TrainSettings, RoiSpec]:
    """The :class:`~her2dlr.deep.train.TrainSettings` and :class:`~her2dlr.imaging.roi.RoiSpec` of a ``deep:`` section.

    ``weights_dir``: folder that a relative ``weights`` path is read against (the study file's).
    Loads torch (the network registry), which reading a study file does not; raises InputError
    for an unknown ``arch``.
    """
    from her2dlr.deep.networks import check_arch, default_image_size

    check_arch(deep.arch)
    size = deep.image_size or default_image_size(deep.arch, deep.spatial_dims)
    _check_deeptepp_switches(deep, size)
    weights = deep.weights
    if weights is not None and weights_dir is not None and not weights.expanduser().is_absolute():
        weights = weights_dir / weights
    train = TrainSettings(
        arch=deep.arch, image_size=size, spatial_dims=deep.spatial_dims, in_channels=deep.slices or deep.channels,
        weights=str(weights.expanduser()) if weights is not None else None, epochs=deep.epochs,
        batch_size=deep.batch_size, lr=deep.lr, weight_decay=deep.weight_decay, loss=deep.loss,
        scheduler=deep.scheduler, patience=deep.patience, keep=deep.keep, val_fraction=deep.val_fraction,
        mixup=deep.mixup, label_smoothing=deep.label_smoothing, ema=deep.ema, tta_flips=deep.tta_flips,
        pretrain_epochs=deep.pretrain_epochs, multi_view=deep.multi_view, jigsaw=deep.jigsaw,
        clinical_columns=tuple(deep.clinical_columns),
        seed=deep.seed, device=deep.device, allow_cpu_fallback=deep.allow_cpu_fallback, num_workers=num_workers,
        num_threads=num_threads, distributed=distributed, progress=progress)
    roi = RoiSpec(size=size, margin=deep.margin, margin_fraction=deep.margin_fraction, channels=deep.channels,
                  keep_aspect=deep.keep_aspect, spatial_dims=deep.spatial_dims, slices=deep.slices)
    return train, roi


def _check_deeptepp_switches(deep: DeepSettings, size: int) -> None:
    """Refuse a clinical fusion the network cannot take, and a jigsaw grid that does not divide the input."""
    from her2dlr.deep.networks import CLINICAL_ARCHS
    from her2dlr.errors import InputError

    key = "deep.clinical_columns" if deep.clinical_columns else "deep.clinical"
    if (deep.clinical_columns or deep.clinical) and deep.arch not in CLINICAL_ARCHS:
        raise InputError(f"{key}: arch '{deep.arch}' has no clinical input; clinical-pathological fusion at the head "
                         f"needs {', '.join(CLINICAL_ARCHS)} (or fuse clinical data in the learning stage).")
    if deep.jigsaw and size % deep.jigsaw:
        raise InputError(f"deep.jigsaw: a grid of {deep.jigsaw} must divide the input side image_size={size} "
                         "(blocks of equal size).")
    if (deep.clinical_columns or deep.clinical) and deep.pretrain_epochs:
        raise InputError(f"{key}: rotation pre-training (deep.pretrain_epochs) takes image-only networks; set one of "
                         "the two.")


def _cohort_clinical_columns(manifest: Any) -> list[str]:
    """``deep.clinical: true``: the cohort's numeric clinical columns (text ones are named and left out)."""
    import logging

    from her2dlr.errors import InputError

    columns = list(manifest.clinical_columns)
    types = dict(manifest.clinical_types)
    numeric = [c for c in columns if types.get(c, "numeric") == "numeric"]
    skipped = [c for c in columns if c not in numeric]
    if skipped:
        logging.getLogger(__name__).warning("deep.clinical: the network fuses numbers; clinical column(s) %s hold text "
                                            "and are left out (code them as numbers to use them).", skipped)
    if not numeric:
        raise InputError(f"deep.clinical: true, but the cohort has no numeric clinical column (clinical columns: "
                         f"{columns}). Declare clinical_columns in the cohort source, or list deep.clinical_columns.")
    return numeric


def run_deep_stage(study: Study, *, settings: TrainSettings, roi: RoiSpec | None = None,
                   schemes: Sequence[str] = ("kfold",), repeats: Sequence[int] | None = None, resume: bool = False,
                   final: bool = False, n_jobs: int = 1, progress: bool = True, lesion: str = "mask",
                   recipes: Sequence[Recipe] | None = None) -> DeepCVResult:
    """Train ``settings.arch`` on every outer fold of the study's manifest and write the outputs.

    Parameters
    ----------
    study : Study
    settings : TrainSettings
    roi : RoiSpec, optional
        Default: margin 10 px, the network's input size and channels.
    schemes : sequence of {"kfold", "holdout"}
    repeats : sequence of int, optional
        Only these k-fold repetitions.
    resume : bool
        Continue interrupted folds; reload finished ones.
    final : bool
        Also train the deployable model (``final/best.pt``) on the hold-out's training rows (all
        labelled rows without a hold-out). With a hold-out or final network, the deployable
        ``deep_<arch>-signature`` artefact is written to ``<run>/models/``
        (:func:`her2dlr.deep.deploy.save_deep_artefact`).
    n_jobs : int
        Threads reading images.
    progress : bool
    lesion : {"mask", "bbox", "auto"}
        Where the lesion is: the given mask or box (both give the same crop: the bounding
        rectangle plus the margin), or the out-of-fold automatic mask of the segmentation stage.
    recipes : sequence of Recipe, optional
        Candidate training recipes chosen per fold on the inner validation split (default: the
        study's ``deep.recipes``; none: ``settings`` as given).

    Raises
    ------
    InputError
        No manifest yet (run ``her2dlr cohort build``), or any error of :func:`run_deep_cv`.
    """
    from her2dlr.io.atomic import check_writable

    check_writable(study.paths.root)
    from her2dlr.cohort.build import manifest_path
    from her2dlr.cohort.manifest import Manifest
    from her2dlr.deep.deploy import save_deep_artefact
    from her2dlr.provenance import config_hash

    manifest = Manifest.load(manifest_path(study))
    if lesion == "auto":
        from her2dlr.cohort.manifest import use_auto_masks

        manifest = manifest.copy(use_auto_masks(manifest.table, study.paths.auto_masks))
    if recipes is None and study.deep is not None and study.deep.recipes:
        recipes = recipes_from_dicts(study.deep.recipes)
    if study.deep is not None and study.deep.clinical and not settings.clinical_columns:
        settings = replace(settings, clinical_columns=tuple(_cohort_clinical_columns(manifest)))
    result = run_deep_cv(manifest, settings=settings, roi=roi, scheme=list(schemes),
                         out_dir=deep_dir(study, settings.arch),
                         repeats=repeats, resume=resume, final=final, n_jobs=n_jobs, progress=progress,
                         recipes=recipes or None)
    if int(os.environ.get("RANK", "0")) != 0:  # distributed launch: rank 0 writes
        return result
    segmenter = None
    if lesion == "auto":
        from her2dlr.runfolder import BEST_CHECKPOINT
        from her2dlr.segment.settings import SegmentSettings

        path = study.paths.segment_arch((study.segment or SegmentSettings()).arch) / "final" / BEST_CHECKPOINT
        segmenter = path if path.is_file() else None
    result.artefact = save_deep_artefact(
        study.paths.models, deep_dir(study, settings.arch), name=f"deep_{settings.arch}-signature",
        metrics=result.metrics, task=manifest.meta.get("label", {}), config_hash=config_hash(settings.to_dict()),
        segmenter=segmenter, cases=manifest.table)
    return result


def run_dlr_stage(study: Study, *, arch: str | None = None, radiomics: str | None = None, model: str | None = None,
                  n_components: int | None = None, n_jobs: int = 1, progress: bool = True) -> tuple[Any, list[Path]]:
    """Deep learning radiomics of a study (``her2dlr learn dlr``): k-fold models, then the deployable artefacts.

    Options left None come from the study's ``deep:`` section (``deep.arch``, ``deep.dlr``).
    Returns the :func:`her2dlr.deep.dlr.run_study_dlr` result and the artefact folders written
    (none when no hold-out or final network was trained).
    """
    from her2dlr.deep.deploy import save_dlr_artefacts
    from her2dlr.deep.dlr import run_study_dlr
    d = study.deep or DeepSettings()
    arch = arch or d.arch
    opts = {"radiomics": radiomics or d.dlr.radiomics, "model": model or d.dlr.model,
            "n_components": n_components or d.dlr.n_components}
    result = run_study_dlr(study, arch=arch, n_jobs=n_jobs, **opts)
    saved = save_dlr_artefacts(study, arch=arch, metrics=result.metrics, progress=progress, **opts)
    return result, saved
