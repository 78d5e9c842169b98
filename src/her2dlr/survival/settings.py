"""Settings of the survival stage (the ``survival:`` section of a study file).

Every model forbids unknown keys, so a typo is reported with the allowed keys instead of
being silently ignored. Times in the data are in ``time_unit``; horizons are given in years.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from her2dlr.errors import StudyFileError

if TYPE_CHECKING:
    from her2dlr.config import Study

__all__ = ["DAYS_PER", "Her2LowSettings", "MatchSettings", "SurvivalSettings", "load_survival_settings"]

#: Length of one year in each supported time unit.
DAYS_PER = {"days": 365.25, "weeks": 365.25 / 7.0, "months": 12.0, "years": 1.0}

Scalar = bool | int | float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class MatchSettings(_Strict):
    """Propensity score matching of the treatment arms."""

    enabled: bool = Field(True, description="Run propensity score matching when a treatment column is set.")
    covariates: list[str] | None = Field(None, description="Propensity covariates (default: `covariates`).")
    caliper: float | None = Field(0.2, gt=0, description="Caliper in SDs of the logit propensity; null = none.")
    ratio: int = Field(1, ge=1, description="Controls per treated case (1:k).")
    replace: bool = Field(False, description="Match with replacement.")
    order: Literal["largest", "random", "data"] = Field("largest", description="Order treated cases pick controls.")
    within_groups: bool = Field(True, description="Also match inside each risk group for the headline HR.")


class Her2LowSettings(_Strict):
    """HER2-low vs HER2-zero prognosis by true and predicted status (seed 003)."""

    true_column: str = Field(..., description="True (pathology) status column, two values.")
    pred_column: str = Field(..., description="Predicted status column, same two values.")
    positive: Scalar | None = Field(None, description="Value meaning HER2-low (default: second sorted value).")
    covariates: list[str] | None = Field(None, description="Clinical covariates (default: `covariates`).")
    stepwise: bool = Field(True, description="AIC stepwise selection of the covariates (status kept in).")


class SurvivalSettings(_Strict):
    """What the survival stage computes; see each field's description."""

    time_column: str = Field("time", description="Follow-up time column.")
    event_column: str = Field("event", description="Event column: 1 = event, 0 = censored.")
    time_unit: Literal["days", "weeks", "months", "years"] = Field("days", description="Unit of the time column.")
    id_column: str | None = Field(None, description="Case id column written next to per-case outputs.")
    group_columns: list[str] = Field(default_factory=list, description="Columns to draw KM curves and log-rank tests by.")
    covariates: list[str] = Field(default_factory=list, description="Clinical covariates of the Cox models.")
    categorical: list[str] = Field(default_factory=list, description="Numeric covariates to treat as categories.")
    stepwise: Literal["both", "forward", "backward", "none"] = Field("both", description="AIC stepwise direction.")
    penalizer: float = Field(0.0, ge=0, description="Ridge/elastic-net penalty of the Cox models (0 = none).")
    score_column: str | None = Field(None, description="Risk score column for risk groups (higher = riskier).")
    score_from: str | None = Field(
        None, description="A model of this study's learn or deep stage (e.g. 'deep-densenet3block', "
        "'radiomics_mri3d_mask-lr') whose k-fold out-of-fold probability (mean over repetitions) becomes the "
        "score column (named by score_column, default 'model_score'): every case scored by a model that never "
        "saw it.")
    score_covariates: list[str] | None = Field(
        None, description="If no score column: covariates of an out-of-fold Cox score built here."
    )
    higher_score_is_riskier: bool = Field(True, description="Direction of the score.")
    treatment_column: str | None = Field(None, description="Treatment arm column.")
    treatment_name: str | None = Field(None, description="Treatment name used in sentences (e.g. 'trastuzumab').")
    reference_arm: Scalar | None = Field(None, description="Reference arm (default: first sorted value).")
    horizons: list[float] = Field(default_factory=lambda: [1.0, 2.0, 5.0], description="Survival reported at these years.")
    risk_horizon: float = Field(5.0, gt=0, description="Years: event horizon of the Youden cut-off.")
    risk_censoring: Literal["ipcw", "exclude"] = Field("ipcw", description="Censoring before the horizon.")
    risk_clusters: int = Field(2, ge=1, description="k-means clusters above the cut-off.")
    risk_covariates: list[str] = Field(default_factory=list, description="Covariates adjusting the risk-group HRs.")
    split_column: str | None = Field(None, description="Column holding train/test; cut-offs are fitted on train.")
    train_value: Scalar = Field("train", description="Value of `split_column` marking training cases.")
    psm: MatchSettings = Field(default_factory=MatchSettings)
    her2low: Her2LowSettings | None = None
    n_bootstrap: int = Field(1000, ge=0, description="Bootstrap replicates of C-index intervals.")
    cv_folds: int = Field(5, ge=2, description="Folds of the cross-validated C-index and out-of-fold scores.")
    min_arm_size: int = Field(2, ge=1, description="Smallest arm compared inside a group.")
    alpha: float = Field(0.05, gt=0, lt=1, description="1 - confidence level.")
    seed: int = Field(0, description="Seed of folds, bootstrap, k-means and matching.")
    figure_format: Literal["png", "pdf", "svg"] = Field("png", description="Figure file type.")
    missing: Literal["error", "drop"] = Field(
        "error", description="Cases with missing values in a used column: 'error' lists them all; 'drop' leaves them "
                             "out and reports how many per column (tables/missing.csv).")

    @field_validator("horizons")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(h <= 0 for h in v):
            raise ValueError("every horizon must be > 0 (years)")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> SurvivalSettings:
        if self.time_column == self.event_column:
            raise ValueError(f"time_column and event_column are both '{self.time_column}'")
        return self

    @property
    def per_year(self) -> float:
        """Time-column units in one year."""
        return DAYS_PER[self.time_unit]


def _format(exc: ValidationError, source: str) -> str:
    from her2dlr.schema import format_validation_error  # names keys and suggests the nearest allowed one

    return format_validation_error(exc, source, model=SurvivalSettings).replace(
        "is not a valid study file", "is not valid survival settings"
    )


def _is_study(source: Any) -> bool:
    """A loaded study (:class:`her2dlr.config.Study`): the survival stage reads it, never the file again."""
    return hasattr(source, "survival") and hasattr(source, "cohort") and hasattr(source, "run_dir")


def load_survival_settings(
    source: Mapping[str, Any] | SurvivalSettings | Study | None = None, **overrides: Any
) -> SurvivalSettings:
    """Settings of the survival stage from a loaded study or a mapping, plus overrides.

    Parameters
    ----------
    source : Study, SurvivalSettings, mapping or None
        A study already loaded by :func:`her2dlr.config.load_study` (its ``survival`` section
        is used, with no second read of the file), settings already validated, a mapping of
        settings, or None for the defaults.
    **overrides
        Keys that replace those of ``source`` (None values are ignored), e.g. from CLI flags.

    Raises
    ------
    StudyFileError
        A study without a ``survival:`` section, unknown keys or bad values, naming each key.
    """
    name = "settings"
    if _is_study(source):
        name = f"Study '{source.name}'"  # type: ignore[union-attr]
        if source.survival is None:  # type: ignore[union-attr]
            raise StudyFileError(
                f"{name} has no 'survival:' section; add one (`her2dlr init` writes a commented example)."
            )
        source = source.survival  # type: ignore[union-attr]
    if isinstance(source, SurvivalSettings):
        raw = source.model_dump()
    elif isinstance(source, Mapping):
        raw = dict(source)
    elif source is None:
        raw = {}
    else:
        raise TypeError(
            "The 'source' parameter of load_survival_settings must be a Study, SurvivalSettings, a mapping "
            f"or None. Got {type(source).__name__} instead."
        )
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return SurvivalSettings(**raw)
    except ValidationError as exc:
        raise StudyFileError(_format(exc, name)) from None
