"""Settings of the learning stage: the ``learn:`` section of a study file (proposed).

Every model forbids unknown keys, and model names, hyper-parameter names and selection steps
are checked against the zoo and the selection registry when the study file is read, so a typo
fails before any fitting, with the allowed values and the nearest match.

Example (YAML)::

    learn:
      features: [radiomics_us2d_mask]
      selection:
        - {name: variance}
        - {name: zscore}
        - {name: ttest, alpha: 0.05}
        - {name: pearson, threshold: 0.9}
        - {name: greedy, threshold: 0.9}
        - {name: lasso, cv: 10}
      models: [lr, svm, rf, extratrees, xgboost, {name: lightgbm, grid: {num_leaves: [4, 8]}}]
      schemes: [kfold, holdout]
      search: {inner_splits: 5, search: grid}   # or: workflows (see below)
      threshold: {method: youden}
      n_jobs: 2

The name ``clinical`` in ``features`` is not a table: it is the manifest's clinical columns
(raw, typed by ``manifest.clinical_types``), encoded and selected inside every training fold
(:mod:`her2dlr.learn.fusion`). With ``features: [radiomics_us2d_mask, clinical]`` the stage
fits, for every classifier of ``models``, the radiomics model, the clinical model
(encoder -> univariable + stepwise multivariable selection -> classifier), the combined
model (early fusion: radiomics selection || clinical selection, concatenated -> classifier)
and the late fusion (mean probability of the clinical and radiomics models, same folds);
``clinical.fusion`` picks which combinations. Options of the clinical branch::

      clinical: {columns: [Age, Shape, Margin], units: {Age: years}, alpha_uni: 0.05, alpha_multi: 0.05,
                 direction: backward, min_frequency: 5,
                 fusion: [early, late, stack, combined, pairs], pair_method: stack}

``stack``, ``combined`` and ``pairs`` are described in :mod:`her2dlr.learn.integration`.

Workflow search instead of seed 002's fixed chain (:mod:`her2dlr.learn.workflows`): the
feature set, the selection chain and the classifier with its hyper-parameters are searched
together inside every training fold, and the ``top_k`` best workflows by inner median AUC are
averaged; the stage then fits one model, ``<tables>-workflows``, instead of one per classifier::

      search:
        search: workflows
        workflows: {n_workflows: 60, seconds: null, top_k: 5, feature_sets: [all, original],
                    chains: [none, unsupervised, seed002, lasso, mrmr], models: [lr, svm, rf, lightgbm]}

Every tried workflow's inner AUCs are written to ``workflows.csv`` (see :mod:`her2dlr.learn.stage`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from her2dlr.errors import Her2dlrError

__all__ = ["DEFAULT_MODELS", "DEFAULT_SELECTION", "ClinicalConfig", "LearnSettings", "ModelEntry", "SearchConfig",
           "ThresholdConfig", "WorkflowsConfig"]

#: Seed 002's radiomics selection.
DEFAULT_SELECTION: list[dict[str, Any]] = [
    {"name": "variance"},
    {"name": "zscore"},
    {"name": "ttest", "alpha": 0.05},
    {"name": "pearson", "threshold": 0.9},
    {"name": "greedy", "threshold": 0.9},
    {"name": "lasso", "cv": 10},
]
#: Seed 002's classifiers.
DEFAULT_MODELS = ["lr", "svm", "rf", "extratrees", "xgboost", "lightgbm"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelEntry(_Strict):
    """One classifier of the zoo, with an optional grid and fixed hyper-parameters."""

    name: str = Field(..., description="Zoo name: lr, svm, rf, extratrees, xgboost, lightgbm, knn, nb.")
    label: str | None = Field(None, description="Name in results (default: the zoo name).")
    grid: dict[str, list[Any]] | None = Field(None, description="Replaces the default grid; {} = no search.")
    params: dict[str, Any] = Field(default_factory=dict, description="Fixed hyper-parameters.")

    @model_validator(mode="after")
    def _known(self) -> ModelEntry:
        from her2dlr.learn.zoo import get_model, make_model, model_grid

        try:
            spec = get_model(self.name)
            model_grid(spec.name, self.grid)
            make_model(spec.name, params=self.params)
        except Her2dlrError as exc:
            raise ValueError(str(exc)) from None
        self.__dict__["name"] = spec.name
        return self


class WorkflowsConfig(_Strict):
    """Workflow search (``search: workflows``): see :class:`her2dlr.learn.workflows.WorkflowSpace`."""

    n_workflows: int | None = Field(60, ge=1, description="Workflows tried per training fold (null: until 'seconds').")
    seconds: float | None = Field(None, gt=0, description="Wall-time budget of one search (null: no limit).")
    top_k: int = Field(5, ge=1, description="Best workflows averaged into the fold's model (1: the best alone).")
    feature_sets: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["all"],
        description="Column groups: all, original, shape, firstorder, texture, log, wavelet, or "
        "{name: ..., columns: [name patterns]}.")
    chains: list[str | dict[str, Any]] = Field(
        default_factory=lambda: ["none", "unsupervised", "seed002", "lasso", "mrmr"],
        description="Selection chains: none, unsupervised, seed002, lasso, mrmr, or {name: ..., steps: [...]}.")
    models: list[str | dict[str, Any]] = Field(
        default_factory=lambda: list(DEFAULT_MODELS),
        description="Zoo classifiers (or {name, label, grid, params}); their grids are sampled.")

    @model_validator(mode="after")
    def _valid_space(self) -> WorkflowsConfig:
        try:
            self.space()
        except Her2dlrError as exc:
            raise ValueError(str(exc)) from None
        return self

    def space(self) -> Any:
        """The :class:`her2dlr.learn.workflows.WorkflowSpace` of these settings."""
        from her2dlr.learn.workflows import WorkflowSpace

        return WorkflowSpace(feature_sets=list(self.feature_sets), chains=list(self.chains), models=list(self.models),
                             n_workflows=self.n_workflows, seconds=self.seconds, top_k=self.top_k)


class SearchConfig(_Strict):
    """Inner search (see :class:`her2dlr.learn.tuning.SearchSettings`).

    ``grid`` / ``random``: each classifier of ``learn.models`` is tuned over its grid with the
    fixed ``learn.selection`` (seed 002, the default). ``workflows``: feature set, selection
    chain and classifier are searched together and the top-k averaged (options under
    ``workflows``; ``learn.models`` and ``learn.selection`` are then not used).
    """

    inner_splits: int = Field(5, ge=2, le=20, description="Inner StratifiedGroupKFold splits.")
    search: Literal["grid", "random", "workflows"] = "grid"
    n_iter: int = Field(10, ge=1, description="Settings sampled by the random search.")
    workflows: WorkflowsConfig | None = Field(None, description="Options of search: workflows (default options "
                                                                "when absent).")

    @model_validator(mode="after")
    def _workflows_need_search(self) -> SearchConfig:
        if self.workflows is not None and self.search != "workflows":
            raise ValueError(f"'workflows' options are given but search is '{self.search}'; set search: workflows")
        return self


class ThresholdConfig(_Strict):
    """Operating threshold, chosen on training predictions and applied unchanged to test ones."""

    method: Literal["youden", "sensitivity", "specificity", "fixed"] = "youden"
    target: float | None = Field(None, ge=0.0, le=1.0, description="Sensitivity, specificity or fixed value.")
    source: Literal["inner_oof", "train_fit"] = Field(
        "inner_oof", description="Training predictions it is chosen on: inner out-of-fold, or the training fit."
    )

    @model_validator(mode="after")
    def _target_needed(self) -> ThresholdConfig:
        if self.method != "youden" and self.target is None:
            raise ValueError(f"threshold method '{self.method}' needs 'target' (a number in [0, 1])")
        return self


class ClinicalConfig(_Strict):
    """The clinical branch (feature name ``clinical``): encoder + seed-002 selection, and fusion."""

    columns: list[str] | None = Field(None, description="Clinical columns used (default: all of the manifest's).")
    alpha_uni: float = Field(0.05, gt=0, lt=1, description="Univariable p-value threshold.")
    alpha_multi: float = Field(0.05, gt=0, lt=1, description="Stepwise multivariable p-value threshold.")
    direction: Literal["backward", "forward", "both"] = "backward"
    min_frequency: float | None = Field(5, ge=0, description="Rarer levels are pooled into <other>.")
    fusion: list[Literal["early", "late", "stack", "combined", "pairs"]] = Field(
        default_factory=lambda: ["early", "late", "stack", "combined"],
        description="With an imaging table too: early fusion (concatenate, then select), late fusion (mean "
        "probability), stack (logistic regression on both models' logits), combined (seed 002: logistic "
        "regression on the imaging signature + selected clinical variables, the nomogram model), pairs (every "
        "imaging classifier x every clinical classifier, seed 001). A three-class label leaves out 'combined' "
        "(refused when named here).",
    )
    pair_method: Literal["stack", "mean"] = Field("stack", description="How 'pairs' integrates two classifiers.")
    units: dict[str, str] = Field(
        default_factory=dict,
        description="Unit of a clinical column, kept in the model card and shown beside the column's field by "
        "her2dlr serve, e.g. {Age: years, Size: mm}.",
    )

    @field_validator("units")
    @classmethod
    def _short_units(cls, value: dict[str, str]) -> dict[str, str]:
        for column, unit in value.items():
            if not unit.strip() or len(unit) > 32:
                raise ValueError(f"the unit of '{column}' must be a short text (1 to 32 characters); got {unit!r}")
        return {column: unit.strip() for column, unit in value.items()}

    def options(self) -> dict[str, Any]:
        """Keyword options of :func:`her2dlr.learn.fusion.clinical_steps`."""
        mf = self.min_frequency
        if mf is not None and float(mf).is_integer() and mf >= 1:
            mf = int(mf)
        return {"alpha_uni": self.alpha_uni, "alpha_multi": self.alpha_multi, "direction": self.direction,
                "min_frequency": mf}


class LearnSettings(_Strict):
    """What the learning stage fits and how it is evaluated."""

    features: list[str] = Field(
        default_factory=lambda: ["radiomics"],
        description="Feature tables (names under <run>/features, or paths) joined by case id; 'clinical': the "
        "manifest's clinical columns (see the module docstring).",
    )
    clinical: ClinicalConfig = Field(default_factory=ClinicalConfig)
    selection: list[dict[str, Any]] = Field(
        default_factory=lambda: [dict(s) for s in DEFAULT_SELECTION],
        description="Selection steps in order: variance, zscore, ttest, mannwhitney, anova, kruskal, pearson, "
        "greedy, mrmr, lasso, rfe, chi2, mutual_info, icc (with three classes ttest is an ANOVA and mannwhitney "
        "a Kruskal-Wallis test).",
    )
    models: list[ModelEntry] = Field(default_factory=lambda: [ModelEntry(name=m) for m in DEFAULT_MODELS])
    schemes: list[Literal["kfold", "holdout"]] = Field(
        default_factory=lambda: ["kfold", "holdout"],
        description="Outer evaluation: the manifest's repeated group k-fold and/or its hold-out.",
    )
    search: SearchConfig = Field(default_factory=SearchConfig)
    threshold: ThresholdConfig = Field(default_factory=ThresholdConfig)
    keep_train_predictions: bool = Field(True, description="Also save train / train_oof predictions.")
    save_models: bool = Field(True, description="Save a model artefact per model under <run>/models (the hold-out's "
                              "training fit, or a fit on all cases when only k-fold is evaluated).")
    n_jobs: int = Field(1, ge=-1, description="Outer folds fitted in parallel (-1: all cores).")
    backend: Literal["loky", "dask", "ray"] = Field(
        "loky", description="Where the outer folds run: loky (local processes), or dask / ray on a lab cluster.")
    scheduler: str | None = Field(
        None, description="Address of a running Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001) "
                          "for backend dask / ray.")
    seed: int = Field(0, description="Seeds inner splits, random search, selectors and models.")

    @field_validator("models", mode="before")
    @classmethod
    def _names_to_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("selection")
    @classmethod
    def _known_steps(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from her2dlr.learn.selection import build_selection

        try:
            build_selection(value, check_only=True)
        except Her2dlrError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _scheduler_needs_cluster_backend(self) -> LearnSettings:
        if self.scheduler is not None and self.backend == "loky":
            raise ValueError(f"scheduler {self.scheduler!r} needs backend: dask (or ray), not 'loky'")
        return self

    @field_validator("schemes")
    @classmethod
    def _some_scheme(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one of 'kfold', 'holdout'")
        return list(dict.fromkeys(value))

    def search_settings(self) -> Any:
        """The :class:`her2dlr.learn.tuning.SearchSettings` of these settings."""
        from her2dlr.learn.tuning import SearchSettings

        search = "grid" if self.search.search == "workflows" else self.search.search
        return SearchSettings(inner_splits=self.search.inner_splits, search=search,
                              n_iter=self.search.n_iter, n_jobs=1, random_state=self.seed)

    def workflow_space(self) -> Any:
        """The :class:`her2dlr.learn.workflows.WorkflowSpace` of ``search: workflows``, else None."""
        if self.search.search != "workflows":
            return None
        return (self.search.workflows or WorkflowsConfig()).space()

    def threshold_rule(self) -> Any:
        """The :class:`her2dlr.learn.thresholds.ThresholdRule` of these settings."""
        from her2dlr.learn.thresholds import ThresholdRule

        return ThresholdRule(self.threshold.method, self.threshold.target)
