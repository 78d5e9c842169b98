"""The study's radiomics stage: manifest in, ``<run>/features/radiomics_<params>_<roi>.parquet`` out."""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from her2dlr.cohort.build import manifest_path
from her2dlr.cohort.manifest import Manifest, automatic_lesion, with_auto_masks
from her2dlr.io.atomic import write_csv_atomic, write_text_atomic
from her2dlr.io.cells import is_missing
from her2dlr.io.images import mask_to_bbox, read_mask_array
from her2dlr.io.profile import profile_images
from her2dlr.radiomics.extract import extract_radiomics, load_params, params_hash, write_features
from her2dlr.radiomics.pixel_size import PixelSizePlan, apply_pixel_size, plan_pixel_size, training_rows
from her2dlr.radiomics.settings import RadiomicsSettings
from her2dlr.radiomics.voxel_size import VoxelSizePlan, plan_voxel_size, with_voxel_size

if TYPE_CHECKING:  # the study model composes every stage; a stage only reads it
    from her2dlr.config import Study

__all__ = ["RadiomicsStageResult", "common_pixel_size", "features_name", "rows_for_roi", "run_radiomics_stage"]


@dataclass
class RadiomicsStageResult:
    """What the radiomics stage wrote; ``n_cached`` of the ``n_cases`` came from the per-case cache."""

    path: Path
    failures_path: Path
    n_cases: int
    n_features: int
    n_failed: int
    seconds: float
    n_cached: int = 0
    n_computed: int = 0
    pixel_size: PixelSizePlan | None = None
    voxel_size: VoxelSizePlan | None = None


def features_name(settings: RadiomicsSettings) -> str:
    """File stem of a feature table: ``radiomics_<params>_<roi>``."""
    params = Path(settings.params).stem if settings.params.endswith((".yaml", ".yml")) else settings.params
    return f"radiomics_{params}_{settings.roi}"


def rows_for_roi(table: pd.DataFrame, roi: str) -> pd.DataFrame:
    """Rows to extract; for ``roi='bbox'`` each mask is replaced by its bounding rectangle (seed 000).

    For ``roi='auto'`` the mask is the automatic one (``mask_auto``, see
    :func:`her2dlr.cohort.manifest.with_auto_masks`); a case whose automatic mask is empty or
    absent gets no ROI (it fails extraction with that reason) and never the whole image.
    """
    cols = ["case_id", "image", "mask", "bbox", "spacing"]
    if roi == "auto":
        rows = table[cols].copy()
        rows["mask"] = automatic_lesion(table)[0]
        rows["bbox"] = None
        return rows
    rows = table[cols].copy()
    if roi == "bbox":
        for idx, mask in rows["mask"].items():
            if isinstance(mask, str) and mask:
                rows.at[idx, "bbox"] = json.dumps(list(mask_to_bbox(read_mask_array(mask))))
                rows.at[idx, "mask"] = pd.NA
    return rows


def common_pixel_size(table: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> tuple[pd.DataFrame, PixelSizePlan]:
    """Bring the 2D rows (``modality`` "US", or all rows without that column) to the training pixel size.

    ``table`` is the manifest (its ``split`` names the training rows, see
    :func:`her2dlr.radiomics.pixel_size.training_rows`), ``rows`` the rows to extract
    (:func:`rows_for_roi`, same index). Warns when a pixel size had to be assumed.

    Returns
    -------
    rows : DataFrame
        The rows to extract, resampled where needed (files under ``out_dir``).
    plan : PixelSizePlan
        What was done and assumed (its ``note`` goes into the feature record and the report).
    """
    flat = table["modality"].astype(str).eq("US") if "modality" in table.columns else pd.Series(True, index=table.index)
    flat = flat.reindex(rows.index).fillna(False).astype(bool)
    plan = plan_pixel_size(rows[flat], training_rows(table).reindex(rows.index)[flat])
    out = rows.copy()
    if flat.any():
        done = apply_pixel_size(rows[flat], plan, out_dir)
        out["spacing"] = pd.to_numeric(out["spacing"], errors="coerce")
        for col in ("image", "mask", "bbox", "spacing"):
            out.loc[flat, col] = done[col]
    return out, plan


def _spacings(column: pd.Series) -> list[float | None]:
    return [None if is_missing(v) else float(v) for v in column]


def run_radiomics_stage(study: Study, settings: RadiomicsSettings | None = None, *, progress: bool = True) -> RadiomicsStageResult:
    """Extract features for the included rows of the study's manifest (cached, failures recorded)."""
    from her2dlr.io.atomic import check_writable

    check_writable(study.paths.root)
    settings = settings or study.radiomics
    manifest = Manifest.load(manifest_path(study))
    table = manifest.included
    if settings.roi == "auto":
        table = with_auto_masks(table, study.paths.auto_masks)
    rows = rows_for_roi(table, settings.roi)
    plan = None
    if settings.pixel_size == "training":
        rows, plan = common_pixel_size(table, rows, study.paths.features / "resampled")
    params = load_params(settings.params if not settings.params.endswith((".yaml", ".yml")) else str(study.resolve(settings.params)))
    paths = study.paths
    voxel = plan_voxel_size(rows, training_rows(table).reindex(rows.index).fillna(False).astype(bool),
                            settings.voxel_size)
    params_file = None
    if voxel.target_mm is not None:  # the extraction's own parameters, where a model artefact can find them
        params = with_voxel_size(params, voxel)
        params_file = paths.features / f"{features_name(settings)}.params.yaml"
        write_text_atomic(params_file, yaml.safe_dump(params, sort_keys=False))
    n_jobs = (os.cpu_count() or 1) if settings.n_jobs == -1 else settings.n_jobs
    result = extract_radiomics(
        rows, params, n_jobs=n_jobs, backend=settings.backend, cache_dir=paths.feature_cache, progress=progress,
        scheduler=settings.scheduler,
    )
    name = features_name(settings)
    path = paths.feature_table(name)
    write_features(result, path)
    failures_path = paths.feature_failures(name)
    if settings.roi == "auto":
        no_mask = set(rows.loc[rows["mask"].isna(), "case_id"].astype(str))
        auto = result.failures["case_id"].astype(str).isin(no_mask)
        result.failures.loc[auto, "reason"] = f"no automatic mask (empty or absent in {paths.auto_masks.name})"
    write_csv_atomic(result.failures, failures_path)
    import radiomics

    extracted = rows[rows["case_id"].astype(str).isin(set(result.features.index.astype(str)))]
    write_text_atomic(paths.feature_record(name), json.dumps({
        "params": str(params_file) if params_file is not None else settings.params, "params_base": settings.params,
        "roi": settings.roi, "params_hash": params_hash(params), "voxel_size": voxel.as_dict(),
        "n_cases": len(result.features), "n_features": int(result.features.shape[1]),
        "n_failed": len(result.failures), "pyradiomics": radiomics.__version__,
        "python": platform.python_version(),
        "pixel_size": plan.as_dict() if plan is not None else {"note": "Each image on its own pixel grid (as_given)."},
        "images": profile_images(zip(extracted["image"], _spacings(extracted["spacing"])), progress=progress),
    }, indent=2))
    return RadiomicsStageResult(
        path=path, failures_path=failures_path, n_cases=len(result.features),
        n_features=result.features.shape[1], n_failed=len(result.failures),
        seconds=float(getattr(result, "seconds", float("nan"))),
        n_cached=int(result.timing.get("n_cached", 0)), n_computed=int(result.timing.get("n_computed", 0)),
        pixel_size=plan, voxel_size=voxel,
    )
