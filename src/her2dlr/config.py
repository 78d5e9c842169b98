"""The study file ``study.yaml``: the stages' settings composed into one model.

Each stage owns its settings (``cohort/settings.py``, ``radiomics/settings.py``,
``learn/settings.py``, ``deep/settings.py``, ``survival/settings.py``); this module only
composes them and reads the file. Unknown keys and bad values are refused with a message that
names the key path, the value given and what is allowed (see :func:`load_study`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from her2dlr.cohort.settings import (
    DEFAULT_MISSING_VALUES,
    CohortSettings,
    FilesSource,
    FolderSource,
    LabelRule,
    QCSettings,
    SplitSettings,
    TableSource,
)
from her2dlr.deep.settings import DeepSettings
from her2dlr.errors import Her2dlrError, StudyFileError
from her2dlr.learn.settings import LearnSettings
from her2dlr.radiomics.settings import RadiomicsSettings
from her2dlr.runfolder import RunPaths
from her2dlr.schema import StrictModel
from her2dlr.schema import format_validation_error as _format
from her2dlr.segment.settings import SegmentSettings
from her2dlr.survival.settings import SurvivalSettings
from her2dlr.tracking import TrackingSettings
from her2dlr.video.settings import VideoSettings

__all__ = [
    "DEFAULT_MISSING_VALUES",
    "CohortSettings",
    "FilesSource",
    "FolderSource",
    "LabelRule",
    "QCSettings",
    "RadiomicsSettings",
    "SplitSettings",
    "Study",
    "TableSource",
    "format_validation_error",
    "load_study",
    "study_from_dict",
]


class Study(StrictModel):
    """A study: where the cases are, what to predict, how to split, what to extract."""

    name: str = Field(..., min_length=1)
    output_dir: Path | None = Field(None, description="Run folder (default: runs/<name> beside the study file).")
    cohort: CohortSettings
    label: LabelRule
    split: SplitSettings = Field(default_factory=SplitSettings)
    qc: QCSettings = Field(default_factory=QCSettings)
    radiomics: RadiomicsSettings = Field(default_factory=RadiomicsSettings)
    learn: LearnSettings | None = Field(None, description="Feature selection, model zoo and validation.")
    segment: SegmentSettings | None = Field(None, description="Lesion segmentation networks on the outer folds (her2dlr train seg).")
    video: VideoSettings | None = Field(None, description="Per-frame localisation and radiomics curves of video rows (her2dlr extract video).")
    deep: DeepSettings | None = Field(None, description="Networks: ROI input, training, folds (her2dlr train deep, learn dlr).")
    survival: SurvivalSettings | None = Field(None, description="Survival stage (time, event, score, treatment columns).")
    tracking: TrackingSettings = Field(default_factory=TrackingSettings,
                                       description="MLflow tracking of the learn, deep and segmentation stages (off by default).")

    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if any(c in v for c in "/\\:"):
            raise ValueError("must not contain '/', '\\' or ':' (it names the run folder)")
        return v

    @model_validator(mode="after")
    def _known_dsfr_steps(self) -> Study:
        """``segment.dsfr.selection`` is checked like ``learn.selection`` (the segment settings cannot see learn's)."""
        steps = self.segment.dsfr.selection if self.segment is not None else None
        if steps is not None:
            from her2dlr.learn.selection import build_selection

            try:
                build_selection(steps, check_only=True)
            except Her2dlrError as exc:
                raise ValueError(str(exc).replace("learn.selection", "segment.dsfr.selection")) from None
        return self

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


def format_validation_error(exc: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    """Turn a pydantic error into lines naming key, value and what is allowed (default model: :class:`Study`)."""
    return _format(exc, source, model or Study)


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
