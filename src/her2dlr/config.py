"""Pydantic models of the study file ``study.yaml``.

Unknown keys and bad values are refused with a message that names the key path, the value
given and what is allowed (see :func:`load_study`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from her2dlr.deep.settings import DeepSettings
from her2dlr.errors import StudyFileError, nearest
from her2dlr.runfolder import RunPaths
from her2dlr.learn.settings import LearnSettings
from her2dlr.survival.settings import SurvivalSettings

__all__ = [
    "Study",
    "FolderSource",
    "FilesSource",
    "TableSource",
    "LabelRule",
    "SplitSettings",
    "QCSettings",
    "RadiomicsSettings",
    "load_study",
    "DEFAULT_MISSING_VALUES",
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
    "?",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _SourceBase(_Strict):
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
    extensions: list[str] = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"]


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
    """A manifest table (CSV / XLSX / Parquet) listing image and mask paths and clinical columns."""

    kind: Literal["table"]
    path: Path
    sheet: str | int = 0
    image_root: Path | None = Field(None, description="Folder the image paths are relative to (default: the table's folder).")
    image_column: str
    mask_column: str | None = None
    bbox_columns: list[str] | None = Field(None, description="Four columns x, y, w, h (pixels).")
    bbox_column: str | None = Field(None, description="One column holding a JSON list [x, y, w, h].")
    case_id_column: str | None = None
    patient_id_column: str | None = None
    centre_column: str | None = None
    spacing_column: str | None = None
    spacing_unit: Literal["mm", "cm"] = "mm"
    clinical_columns: list[str] = []
    label_columns: list[str] = Field([], description="Extra columns kept as possible targets.")
    time_column: str | None = None
    event_column: str | None = None
    treatment_column: str | None = None
    multi_value_separator: str = Field("&", description="Separator of several values in one cell.")
    clinical_types: dict[str, Literal["numeric", "categorical", "multi"]] = {}

    @model_validator(mode="after")
    def _one_box_form(self) -> "TableSource":
        if self.bbox_columns is not None and len(self.bbox_columns) != 4:
            raise ValueError(f"bbox_columns needs 4 names (x, y, w, h), got {self.bbox_columns}")
        if self.bbox_columns and self.bbox_column:
            raise ValueError("give either bbox_columns (x, y, w, h) or bbox_column (JSON list), not both")
        return self


Source = Annotated[FolderSource | FilesSource | TableSource, Field(discriminator="kind")]


class CohortSettings(_Strict):
    sources: list[Source] = Field(..., min_length=1)
    missing_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_VALUES),
        description="Cell texts read as missing (case-insensitive).",
    )


class LabelRule(_Strict):
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
    def _column_needed(self) -> "LabelRule":
        if self.rule == "column" and not self.column:
            raise ValueError("rule 'column' needs 'column': the name of the label column")
        return self


class HoldoutSettings(_Strict):
    test_size: float = Field(0.3, gt=0.0, lt=1.0)


class KFoldSettings(_Strict):
    n_splits: int = Field(5, ge=2, le=20)
    n_repeats: int = Field(3, ge=1, le=100)


class CentreSettings(_Strict):
    test_centres: list[str] = Field(..., min_length=1)


class SplitSettings(_Strict):
    """Patient-level splits, fixed by ``seed`` and written into the manifest."""

    seed: int = 2024
    holdout: HoldoutSettings | None = Field(default_factory=HoldoutSettings)
    kfold: KFoldSettings | None = Field(default_factory=KFoldSettings)
    by_centre: CentreSettings | None = None

    @model_validator(mode="after")
    def _centre_or_holdout(self) -> "SplitSettings":
        if self.by_centre is not None and self.holdout is not None:
            self.__dict__["holdout"] = None  # external validation replaces the random hold-out
        return self


class QCSettings(_Strict):
    lesion_policy: Literal["largest", "union", "each"] = "largest"
    near_duplicate_distance: int | None = Field(None, ge=0, le=32, description="Hamming distance of perceptual hashes (default: tuned value).")


class RadiomicsSettings(_Strict):
    params: str = Field("us2d", description="Shipped set (us2d, video, mri3d) or a PyRadiomics params YAML path.")
    roi: Literal["mask", "bbox"] = Field("mask", description="'bbox': the mask's (or given box's) bounding rectangle, as in seed 000.")
    n_jobs: int = Field(-1, description="Parallel workers (-1: all cores).")
    backend: Literal["loky", "threading", "sequential", "dask", "ray"] = "loky"


class Study(_Strict):
    """A study: where the cases are, what to predict, how to split, what to extract."""

    name: str = Field(..., min_length=1)
    output_dir: Path | None = Field(None, description="Run folder (default: runs/<name> beside the study file).")
    cohort: CohortSettings
    label: LabelRule
    split: SplitSettings = Field(default_factory=SplitSettings)
    qc: QCSettings = Field(default_factory=QCSettings)
    radiomics: RadiomicsSettings = Field(default_factory=RadiomicsSettings)
    learn: LearnSettings | None = Field(None, description="Feature selection, model zoo and validation.")
    deep: DeepSettings | None = Field(None, description="Networks: ROI input, training, folds (her2dlr train deep, learn dlr).")
    survival: SurvivalSettings | None = Field(None, description="Survival stage (time, event, score, treatment columns).")

    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if any(c in v for c in "/\\:"):
            raise ValueError("must not contain '/', '\\' or ':' (it names the run folder)")
        return v

    def resolve(self, p: Path | str) -> Path:
        """A path of the study file, made absolute against the study file's folder."""
        p = Path(os.path.expanduser(str(p)))
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def run_dir(self) -> Path:
        return self.resolve(self.output_dir) if self.output_dir else self.resolve(Path("runs") / self.name)

    @property
    def paths(self) -> RunPaths:
        """Every path of the study's run folder."""
        return RunPaths(self.run_dir)


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("folders", "files", "table") and parts and parts[-1].startswith("["):
            continue  # discriminator tag adds nothing for the user
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (best effort, for 'did you mean')."""
    current: Any = model
    for item in loc[:-1]:
        if isinstance(item, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        if item in fields:
            ann = fields[item].annotation
            current = _model_in(ann)
        elif item in ("folders", "files", "table"):
            current = {"folders": FolderSource, "files": FilesSource, "table": TableSource}[item]
    return list(getattr(current, "model_fields", {}).keys())


def _model_in(ann: Any) -> Any:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] = None) -> str:
    """Turn a pydantic error into lines naming key, value and what is allowed."""
    model = model or Study
    lines = [f"{source} is not a valid study file:"]
    for err in exc.errors():
        key = _key_path(err["loc"])
        if err["type"] == "extra_forbidden":
            allowed = [f for f in _allowed_fields(model, err["loc"]) if f != "base_dir"]
            bad = str(err["loc"][-1])
            hint = nearest(bad, allowed)
            lines.append(f"  - unknown key '{key}'. Allowed here: {', '.join(allowed)}.{hint}")
            continue
        value = err.get("input")
        shown = repr(value) if not isinstance(value, dict) else "{...}"
        msg = err["msg"]
        if err["type"] == "literal_error":
            msg = f"must be one of {err['ctx']['expected']}"
        lines.append(f"  - {key or '(top level)'} = {shown}: {msg}")
    return "\n".join(lines)


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read and validate a study file.

    Raises
    ------
    StudyFileError
        Missing file, bad YAML, unknown keys or bad values; the message names each key.
    """
    path = Path(path)
    if not path.exists():
        raise StudyFileError(f"Study file not found: {path}. `her2dlr init` writes an example.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyFileError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise StudyFileError(f"{path} must hold a mapping of keys (name, cohort, label, ...).")
    return study_from_dict(raw, base_dir=path.resolve().parent, source=str(path))


def study_from_dict(raw: dict[str, Any], *, base_dir: Path | None = None, source: str = "study") -> Study:
    """Validate a study given as a dict (paths resolved against ``base_dir``)."""
    try:
        study = Study.model_validate(raw)
    except ValidationError as exc:
        raise StudyFileError(format_validation_error(exc, source)) from None
    study.base_dir = (base_dir or Path.cwd()).resolve()
    return study
