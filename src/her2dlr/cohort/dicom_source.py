"""Cohort source ``kind: dicom``: DCE-MRI studies as DICOM files, turned into de-identified volumes.

For every study under the source folder (one patient and StudyInstanceUID each, found by
:func:`her2dlr.io.dicom_series.find_studies`), the importer

1. splits the dynamic series into phases (:func:`her2dlr.io.dce.read_dce_study`) and records
   how (layout, split, order and time tags: the ``dce_*`` columns, copied into the QC table);
2. reads the study folder's mask (``mask_glob``) and refuses one whose geometry differs from
   the image unless the source sets ``resample_mask``;
3. picks the phase by the source's rule (``phase``) and, on request, kinetic maps;
4. writes the chosen image (phase or map), the extra maps and the masks as NRRD under
   ``<run>/cohort/volumes/`` (optionally resampled to ``resample_mm``), so every later stage
   reads plain volumes that carry no DICOM header.

Rows get pseudonymous ids (HMAC of PatientID / StudyInstanceUID keyed by the study's secret,
:mod:`her2dlr.io.deid`); a clinical table is matched by study folder or by PatientID (through
the same pseudonym), and its key column is not copied. No identifying attribute, folder name
or DICOM path reaches the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from tqdm.auto import tqdm

from her2dlr.cohort.clinical import clean_missing, infer_clinical_types
from her2dlr.cohort.settings import DicomSource
from her2dlr.errors import InputError, nearest
from her2dlr.io.atomic import atomic_path
from her2dlr.io.dce import kinetic_maps, read_dce_study, select_phase
from her2dlr.io.deid import load_or_create_key, pseudonym
from her2dlr.io.dicom_series import StudyFiles, find_studies
from her2dlr.io.images import geometry_differences, read_mask
from her2dlr.io.tables import read_table

if TYPE_CHECKING:
    from her2dlr.runfolder import RunPaths

__all__ = ["DCE_QC_COLUMNS", "add_dce_columns", "import_dicom", "resample_isotropic", "same_geometry"]

DCE_QC_COLUMNS = ("dce_layout", "dce_split_tag", "dce_order_tag", "dce_time_tag", "dce_n_phases", "dce_roles",
                  "dce_n_series", "dce_times_s", "dce_size", "dce_phase", "manufacturer")
"""Per-case record of the phase split, copied from the manifest into the QC table."""


same_geometry = geometry_differences
"""How two images' grids differ (see :func:`her2dlr.io.images.geometry_differences`)."""


def resample_isotropic(image: sitk.Image, spacing_mm: float, *, label: bool = False) -> sitk.Image:
    """Resample to ``spacing_mm`` in every direction (B-spline for images, nearest neighbour for masks)."""
    old_size, old_spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    size = [max(1, round(float(v))) for v in old_size * old_spacing / spacing_mm]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkNearestNeighbor if label else sitk.sitkBSpline,
                         image.GetOrigin(), (spacing_mm,) * 3, image.GetDirection(), 0,
                         sitk.sitkUInt8 if label else sitk.sitkFloat32)


def _write(image: sitk.Image, target: Path) -> str:
    with atomic_path(target) as tmp:
        sitk.WriteImage(image, str(tmp), True, imageIO="NrrdImageIO")
    return str(target)


def _masks(study: StudyFiles, src: DicomSource, reference: sitk.Image) -> list[sitk.Image]:
    if not src.mask_glob:
        return []
    masks = []
    for path in sorted(study.folder.glob(src.mask_glob)):
        raw = sitk.ReadImage(str(path))
        problems = same_geometry(reference, raw)
        if problems and not src.resample_mask:
            raise InputError(f"Mask {path} does not fit its DICOM series ({'; '.join(problems)}). Fix the mask, or "
                             "set resample_mask: true in the cohort source to resample it onto the image.")
        if problems:
            raw = sitk.Resample(raw, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, raw.GetPixelID())
        mask = read_mask(path, reference) if not problems else _binary_like(raw, reference)
        masks.append(mask)
    return masks


def _binary_like(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray((sitk.GetArrayFromImage(mask) > 0).astype(np.uint8))
    out.CopyInformation(reference)
    return out


class _Table:
    """The source's clinical table, looked up by study folder or by patient pseudonym."""

    def __init__(self, src: DicomSource, root: Path, missing_values: list[str], key: bytes) -> None:
        self.types: dict[str, str] = {}
        self.rows: dict[str, pd.Series] = {}
        self.src = src
        if src.table is None:
            return
        path = src.table if src.table.is_absolute() else root / src.table
        raw = read_table(path)
        for col in [src.table_key_column, *src.clinical_columns, *src.label_columns, *self.survival_columns().values()]:
            if col not in raw.columns:
                raise InputError(f"Column '{col}' is not in {path}. Columns: {list(map(str, raw.columns))}."
                                 f"{nearest(col, map(str, raw.columns))}")
        cleaned = raw.copy()
        for col in cleaned.columns:
            if cleaned[col].dtype == object or str(cleaned[col].dtype).startswith(("str", "string")):
                cleaned[col] = clean_missing(cleaned[col], missing_values)
        typed, self.types = infer_clinical_types(cleaned, src.clinical_columns, source=str(path))
        for _, rec in typed.iterrows():
            value = str(rec[src.table_key_column]).strip()
            lookup = pseudonym(value, key, prefix="patient") if src.table_key == "patient_id" else value
            self.rows[lookup] = rec

    def values(self, study: StudyFiles, base: Path) -> dict[str, Any]:
        if not self.rows:
            return {}
        lookup = study.patient if self.src.table_key == "patient_id" else study.folder.relative_to(base).as_posix()
        rec = self.rows.get(lookup)
        columns = list(dict.fromkeys([*self.src.clinical_columns, *self.src.label_columns]))
        out = {c: (pd.NA if rec is None else rec[c]) for c in columns}
        out.update({key: (pd.NA if rec is None else rec[col]) for key, col in self.survival_columns().items()})
        return out

    def survival_columns(self) -> dict[str, str]:
        """Manifest name (time, event, treatment) -> the table's column, for those the source names."""
        named = {"time": self.src.time_column, "event": self.src.event_column, "treatment": self.src.treatment_column}
        return {key: col for key, col in named.items() if col}


def import_dicom(src: DicomSource, root: Path, paths: RunPaths, missing_values: list[str], *,
                 progress: bool = True) -> tuple[pd.DataFrame, dict[str, str]]:
    """Manifest rows of a DICOM DCE source, plus the types of its clinical columns.

    Parameters
    ----------
    src : DicomSource
    root : Path
        The study file's folder (relative paths start there; default home of the pseudonym key).
    paths : RunPaths
        The run folder; volumes go to ``paths.dce_volumes``.
    missing_values : list of str
        Cell texts read as missing in the clinical table.

    Raises
    ------
    InputError
        Missing folder, no DICOM image, a bad series (see :func:`her2dlr.io.dce.read_dce_study`),
        a mask that does not fit, a phase rule that matches nothing, a table column that is absent.
    """
    base = src.path if src.path.is_absolute() else root / src.path
    if not base.is_dir():
        raise InputError(f"The DICOM folder {base} does not exist or is not a folder.")
    base = base.resolve()
    key_path = src.pseudonym_key or Path("pseudonym.key")
    key = load_or_create_key(key_path if key_path.is_absolute() else root / key_path)
    table = _Table(src, root, missing_values, key)
    studies = find_studies(base, key=key)
    out_dir = paths.dce_volumes
    rows = []
    for study in tqdm(studies, desc="DICOM", unit="study", disable=None if progress else True):
        rows.append(_study_row(study, src, base, out_dir, table))
    return pd.DataFrame(rows), table.types


def _study_row(study: StudyFiles, src: DicomSource, base: Path, out_dir: Path, table: _Table) -> dict[str, Any]:
    dce = read_dce_study(study, n_pre=src.n_pre, series_description=src.series_description)
    reference = dce.phases[0]
    masks = _masks(study, src, reference)
    union = None
    if masks:
        union = masks[0] if len(masks) == 1 else sitk.Cast(sitk.NaryOr([sitk.Cast(m, sitk.sitkUInt8) for m in masks]),
                                                            sitk.sitkUInt8)
    k = select_phase(dce, src.phase, mask=union)
    wanted = list(dict.fromkeys([*src.maps, *([src.image_from] if src.image_from != "phase" else [])]))
    maps = kinetic_maps(dce, wanted, phase=k) if wanted else {}
    image = dce.phases[k] if src.image_from == "phase" else maps[src.image_from]

    def resampled(img: sitk.Image, label: bool = False) -> sitk.Image:
        return resample_isotropic(img, src.resample_mm, label=label) if src.resample_mm else img

    case = dce.case_id
    image_path = _write(resampled(image), out_dir / f"{case}_{dce.roles[k] if src.image_from == 'phase' else src.image_from}.nrrd")
    mask_paths = [_write(resampled(m, label=True), out_dir / f"{case}_mask{'' if n == 0 else n}.nrrd")
                  for n, m in enumerate(masks)]
    extra = {f"image_{name}": _write(resampled(img), out_dir / f"{case}_{name}.nrrd")
             for name, img in maps.items() if name in src.maps}
    return {
        "case_id": case, "patient_id": dce.patient_id, "modality": "MR", "image": image_path, "mask": pd.NA,
        "masks": json.dumps(mask_paths), "bbox": pd.NA, "spacing": np.nan, "centre": src.centre or "centre-1",
        "source": src.name or src.path.name, **dce.record(), "dce_phase": dce.roles[k], **extra,
        **table.values(study, base),
    }


def add_dce_columns(qc_table: pd.DataFrame, manifest_table: pd.DataFrame) -> pd.DataFrame:
    """The QC table with each DICOM case's phase-split record (:data:`DCE_QC_COLUMNS`) joined by case id."""
    columns = [c for c in DCE_QC_COLUMNS if c in manifest_table.columns]
    if not columns:
        return qc_table
    record = manifest_table[["case_id", *columns]].drop_duplicates("case_id")
    return qc_table.merge(record, on="case_id", how="left")
