"""Settings of the cohort: its sources, the label rule, the splits and QC (study file keys
``cohort``, ``label``, ``split``, ``qc``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from her2dlr.schema import StrictModel

__all__ = [
    "DEFAULT_MISSING_VALUES",
    "CentreSettings",
    "CohortSettings",
    "DicomSource",
    "FilesSource",
    "FolderSource",
    "HoldoutSettings",
    "KFoldSettings",
    "LabelRule",
    "QCSettings",
    "Source",
    "SplitSettings",
    "TableSource",
]

DEFAULT_MISSING_VALUES = [
    "",
    "na",
    "n/a",
    "nan",
    "none",
    "null",
    "missing",
    "unknown",
    "not available",
    "not applicable",
    "-",
    "--",
    "?",
    "np",
    "nc",
    "nd",
    "n.a.",
    "n/d",
    "#n/a",
    "unk",
    "not done",
    "not known",
]


class _SourceBase(StrictModel):
    name: str | None = Field(None, description="Name of the source (default: the folder or file name).")
    centre: str | None = Field(None, description="Centre of every row of this source (external validation).")
    modality: Literal["US", "US-video", "MR"] = "US"
    spacing_mm: float | None = Field(
        None, gt=0, description="Pixel spacing in mm for images that do not carry it (PNG/JPEG)."
    )


class FolderSource(_SourceBase):
    """One subfolder per class (BUSI layout): ``benign/X.png`` with ``X_mask.png``, ``X_mask_1.png`` ..."""

    kind: Literal["folders"]
    path: Path
    label_column: str = Field("class", description="Column receiving the subfolder name.")
    classes: list[str] | None = Field(None, description="Subfolders to import (default: all).")
    mask_suffix: str = "_mask"
    extensions: list[str] = Field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"])


class FilesSource(_SourceBase):
    """A flat folder of images (or volumes) with masks found by a name template."""

    kind: Literal["files"]
    path: Path
    image_glob: str = Field("*", description="Glob of image files, e.g. '*_image.nrrd'.")
    mask_template: str | None = Field(
        "{stem}_mask{ext}",
        description="Mask file name from the image's {stem} and {ext}; e.g. '{stem_base}_label.nrrd'.",
    )
    strip_from_stem: str = Field("", description="Text removed from the stem to form {stem_base} and the case id.")


class TableSource(_SourceBase):
    """A manifest table (CSV / XLSX / Parquet) listing image and mask paths and clinical columns.

    With ``modality: US-video`` each row's image is a clip (video file, DICOM cine or frame folder);
    ``annotations_column``, ``key_frame_column`` and ``fps_column`` then name its optional video
    columns, and the box columns give the lesion box on the key frame.

    Without ``image_column`` and ``image_template`` the rows have no images: a feature-only
    cohort whose features come from tables the study brings (``learn.features``); it then
    needs ``case_id_column``. Templates build paths from the row's cells, e.g.
    ``image_template: "images/{ID}.png"`` (``{column}`` is replaced by the row's value).
    """

    kind: Literal["table"]
    path: Path
    sheet: str | int = 0
    image_root: Path | None = Field(None, description="Folder the image paths are relative to (default: the table's folder).")
    image_column: str | None = Field(None, description="Column of image paths (none: a feature-only cohort).")
    image_template: str | None = Field(None, description="Image path from the row's cells, e.g. 'images/{ID}.png'.")
    mask_column: str | None = None
    mask_template: str | None = Field(None, description="Mask path from the row's cells, e.g. 'masks/{ID}_mask.png'.")
    bbox_columns: list[str] | None = Field(
        None, description="Four columns x, y, w, h (pixels), or six x, y, z, w, h, d (voxel indices) for volumes.")
    bbox_column: str | None = Field(
        None, description="One column holding a JSON list [x, y, w, h], or [x, y, z, w, h, d] for volumes.")
    case_id_column: str | None = None
    patient_id_column: str | None = None
    centre_column: str | None = None
    annotations_column: str | None = Field(
        None, description="Video rows: column of per-frame annotations, a CSV of frame, x, y, w, h or a folder of "
        "numbered mask files (relative to image_root); empty cells: none.")
    key_frame_column: str | None = Field(
        None, description="Video rows: column of the frame number (from 0) the key-frame box is drawn on "
        "(default 0).")
    fps_column: str | None = Field(None, description="Video rows: column of the frame rate, for clips without one.")
    spacing_column: str | None = None
    spacing_unit: Literal["mm", "cm"] = "mm"
    clinical_columns: list[str] = Field(default_factory=list)
    label_columns: list[str] = Field(default_factory=list, description="Extra columns kept as possible targets.")
    time_column: str | None = None
    event_column: str | None = None
    treatment_column: str | None = None
    multi_value_separator: str = Field("&", description="Separator of several values in one cell.")
    clinical_types: dict[str, Literal["numeric", "categorical", "multi"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_box_form(self) -> TableSource:
        if self.bbox_columns is not None and len(self.bbox_columns) not in (4, 6):
            raise ValueError(f"bbox_columns needs 4 names (x, y, w, h), or 6 (x, y, z, w, h, d) for volumes, got "
                             f"{self.bbox_columns}")
        if self.bbox_columns and self.bbox_column:
            raise ValueError("give either bbox_columns (x, y, w, h) or bbox_column (JSON list), not both")
        if self.image_column and self.image_template:
            raise ValueError("give either image_column or image_template, not both")
        if self.mask_column and self.mask_template:
            raise ValueError("give either mask_column or mask_template, not both")
        video = [c for c in ("annotations_column", "key_frame_column", "fps_column") if getattr(self, c)]
        if video and self.modality != "US-video":
            raise ValueError(f"{', '.join(video)} name(s) columns of video rows: give modality: US-video")
        if not (self.image_column or self.image_template) and not self.case_id_column:
            raise ValueError("a table source without images (no image_column or image_template) needs case_id_column")
        return self

    @property
    def has_images(self) -> bool:
        """Whether the rows name image files (else a feature-only cohort)."""
        return bool(self.image_column or self.image_template)


class DicomSource(_SourceBase):
    """DCE-MRI studies as DICOM files under a folder (one or many patients, any tree); read by
    :mod:`her2dlr.cohort.dicom_source`, which writes the chosen phase (or map) and the mask as
    de-identified NRRD volumes into the run folder."""

    kind: Literal["dicom"]
    path: Path
    modality: Literal["MR"] = "MR"
    phase: str = Field("peak", description="Phase rule: 'pre', 'post<k>' (e.g. 'post3'), 'last' or 'peak'.")
    n_pre: int = Field(1, ge=1, description="Number of pre-contrast phases.")
    series_description: str | None = Field(None, description="Regular expression choosing the dynamic series.")
    image_from: Literal["phase", "subtraction", "wash_in", "ser", "ttp"] = Field(
        "phase", description="What becomes the row's image: the chosen phase, or a kinetic map.")
    maps: list[Literal["subtraction", "wash_in", "ser", "ttp"]] = Field(
        default_factory=list, description="Kinetic maps written as extra columns image_<map>.")
    mask_glob: str | None = Field("*mask*.nrrd", description="Mask file(s) in each study's folder.")
    resample_mask: bool = Field(False, description="Resample a mask whose geometry differs from the image.")
    resample_mm: float | None = Field(None, gt=0, description="Resample the volumes to this isotropic spacing (mm).")
    table: Path | None = Field(None, description="Clinical / label table, one row per study.")
    table_key: Literal["folder", "patient_id"] = Field(
        "folder", description="Match table rows by the study's folder (relative to path) or by DICOM PatientID.")
    table_key_column: str = "folder"
    clinical_columns: list[str] = Field(default_factory=list)
    label_columns: list[str] = Field(default_factory=list)
    time_column: str | None = Field(None, description="Follow-up time column of the table (survival).")
    event_column: str | None = Field(None, description="Event column of the table: 1 = event, 0 = censored.")
    treatment_column: str | None = Field(None, description="Treatment arm column of the table.")
    pseudonym_key: Path | None = Field(
        None, description="File of the secret keying the pseudonymous case ids (default: pseudonym.key beside the "
                          "study file; created when absent; keep it private).")


Source = Annotated[FolderSource | FilesSource | TableSource | DicomSource, Field(discriminator="kind")]


class CohortSettings(StrictModel):
    sources: list[Source] = Field(..., min_length=1)
    missing_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_VALUES),
        description="Cell texts read as missing (case-insensitive); replaces the default list.",
    )
    extra_missing_values: list[str] = Field(
        default_factory=list, description="More cell texts read as missing, added to missing_values."
    )

    @property
    def missing_tokens(self) -> list[str]:
        """Every cell text read as missing."""
        return [*self.missing_values, *self.extra_missing_values]


class LabelRule(StrictModel):
    """How the target is derived.

    ``column``: any column, with the values counted as positive / negative.
    ``her2_status``: HER2 positive (1) vs negative (0) from IHC and ISH (ASCO/CAP 2018).
    ``her2_low``: HER2-low (1) vs HER2-zero (0) among HER2-negative cases.
    ``her2_three_class``: HER2-zero (0), HER2-low (1), HER2-positive (2).
    """

    rule: Literal["column", "her2_status", "her2_low", "her2_three_class"] = "column"
    column: str | None = None
    positive: list[Any] | None = None
    negative: list[Any] | None = None
    ihc_column: str = "ihc"
    ish_column: str = "ish"

    @model_validator(mode="after")
    def _column_needed(self) -> LabelRule:
        if self.rule == "column" and not self.column:
            raise ValueError("rule 'column' needs 'column': the name of the label column")
        return self


class HoldoutSettings(StrictModel):
    test_size: float = Field(0.3, gt=0.0, lt=1.0)


class KFoldSettings(StrictModel):
    n_splits: int = Field(5, ge=2, le=20)
    n_repeats: int = Field(3, ge=1, le=100)


class CentreSettings(StrictModel):
    test_centres: list[str] = Field(..., min_length=1)


class SplitSettings(StrictModel):
    """Patient-level splits, fixed by ``seed`` and written into the manifest."""

    seed: int = 2024
    holdout: HoldoutSettings | None = Field(default_factory=HoldoutSettings)
    kfold: KFoldSettings | None = Field(default_factory=KFoldSettings)
    by_centre: CentreSettings | None = None

    @model_validator(mode="after")
    def _centre_or_holdout(self) -> SplitSettings:
        if self.by_centre is not None and self.holdout is not None:
            self.__dict__["holdout"] = None  # external validation replaces the random hold-out
        return self


class QCSettings(StrictModel):
    lesion_policy: Literal["largest", "union", "each"] = "largest"
    resample_mask: bool = Field(False, description="A volume's mask on another grid than its image (spacing, "
                                "origin, direction, size) is resampled onto it; false: the row is excluded.")
    near_duplicate_distance: int | None = Field(None, ge=0, le=32, description="Hamming distance of perceptual hashes (default: tuned value).")
