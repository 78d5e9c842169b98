"""The learning stage of a study: feature table + manifest + ``learn:`` settings -> run-folder outputs.

For every model of the settings and every outer scheme (``kfold``, ``holdout``) it runs
:func:`her2dlr.learn.cv.run_outer_cv` and writes, atomically, under ``out_dir``:

=========================  ====================================================================
``predictions.parquet``    every model's rows (DESIGN contract + ``label``, ``threshold``)
``metrics.csv``            :func:`her2dlr.evaluate.metrics.metrics_table` of all predictions
``funnel.csv``             features surviving each selection step, per model and fold
``params.csv``             chosen hyper-parameters, inner median / mean AUC, threshold, per fold
``inner_results.csv``      inner AUC of every setting in every fold (the model search itself)
``feature_frequency.csv``  how often each feature reached the model over the outer folds
``settings.json``          the settings used (with the feature-set name)
``multiclass.csv``         (label of more than two classes) per-class one-vs-rest AUCs, macro AUC;
                           ``metrics.csv`` then holds the macro AUC (:mod:`her2dlr.learn.multiclass_stage`)
``confusion.csv``          (label of more than two classes) confusion matrices, long form
``workflows.csv``          (with ``search: workflows``) every workflow tried in every outer
                           fold: ``model, scheme, fold, workflow, feature_set, chain,
                           classifier, params`` (JSON), ``median_auc``, ``mean_auc``,
                           ``split<i>_auc`` (inner CV on the fold's training rows), ``rank``
                           (1 = best inner median AUC), ``in_ensemble`` (one of the top k
                           averaged into the fold's model)
``clinical_variables.csv`` (with ``clinical=True``) how often each clinical variable was kept
``fold_cache/``            finished outer folds (:mod:`her2dlr.learn.fold_cache`): a run killed
                           half-way resumes from them; only the last run's folds are kept
``label_proxies.csv``      (with ``clinical=True``) clinical columns that may stand in for the
                           label: near-perfect alone, or named like a verdict
                           (:mod:`her2dlr.evaluate.proxies`); flagged ones are also warned about
=========================  ====================================================================

With ``learn.search.search: workflows`` (:mod:`her2dlr.learn.workflows`) the imaging table is
fitted once, as the model ``<set>-workflows`` (the top-k ensemble of the workflow search),
instead of once per classifier of ``learn.models``.

With ``clinical=True`` the manifest's clinical columns are a second input (see
:mod:`her2dlr.learn.fusion`): models ``clinical-<clf>``, and with an imaging table
``<set>-<clf>``, ``<set>+clinical-<clf>`` (early fusion), ``late(<set>,clinical)-<clf>``,
``stack(<set>,clinical)-<clf>``, ``combined(<set>-<clf>,clinical)-lr`` (seed 002) and, with
``pairs``, ``pair(<set>,clinical)(<imaging clf>,<clinical clf>)`` (see
:mod:`her2dlr.learn.integration`). With a label of more than two classes the clinical selection
is multinomial, late fusion and stacking work class by class, and the combined model is left out
(:mod:`her2dlr.learn.multiclass_stage`).

Fitted fold pipelines stay in the returned :class:`LearnStageResult`; the deployable model
artefact (``model_card.json``) is built from :func:`her2dlr.learn.cv.fit_final` elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError, nearest
from her2dlr.evaluate.metrics import metrics_table
from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic
from her2dlr.learn.cv import CVResult, run_outer_cv
from her2dlr.learn.deploy import ModelInputs, save_stage_artefacts
from her2dlr.learn.fold_cache import FoldCache
from her2dlr.learn.multiclass_cv import label_classes
from her2dlr.learn.multiclass_stage import check_multiclass_stage, multiclass_outputs
from her2dlr.learn.settings import LearnSettings
from her2dlr.runfolder import (
    CLINICAL_VARIABLES,
    FEATURE_FREQUENCY,
    FOLD_CACHE,
    FUNNEL,
    INNER_RESULTS,
    LABEL_PROXIES,
    METRICS,
    PARAMS,
    PREDICTIONS,
    SETTINGS,
    WORKFLOWS,
)

__all__ = ["LearnStageResult", "run_learn_stage"]


@dataclass
class LearnStageResult:
    """What :func:`run_learn_stage` computed and where it wrote it."""

    results: list[CVResult]
    predictions: pd.DataFrame
    metrics: pd.DataFrame
    out_dir: Path
    files: list[Path] = field(default_factory=list)


def _groups(manifest: Manifest | pd.DataFrame) -> dict[str, str]:
    """Case id -> near-duplicate group (or patient) for inner splits of second-level models."""
    from her2dlr.learn.cv import _group_ids

    table = manifest.table if isinstance(manifest, Manifest) else manifest
    return dict(zip(table["case_id"].astype(str), _group_ids(table)))


def run_learn_stage(features: pd.DataFrame | None, manifest: Manifest | pd.DataFrame, settings: LearnSettings,
                    out_dir: str | os.PathLike[str], *, feature_set: str = "features",
                    progress: bool = False, clinical: bool = False, models_dir: str | os.PathLike[str] | None = None,
                    feature_tables: list[dict[str, Any]] | None = None,
                    radiomics_params: dict[str, Any] | None = None,
                    segmenter: str | os.PathLike[str] | None = None) -> LearnStageResult:
    """Evaluate every model of ``settings`` on ``features`` and write the stage outputs.

    Parameters
    ----------
    features : DataFrame of shape (n_cases, n_features) or None
        Indexed by case id (None: clinical model only).
    manifest : Manifest or DataFrame
        With ``label`` and the split columns the schemes need.
    settings : LearnSettings
    out_dir : path
        Stage folder, e.g. ``<run>/learn/<feature_set>``.
    feature_set : str
        Prefix of the ``model`` column (``"<feature_set>-<model>"``).
    progress : bool
    clinical : bool
        Also fit the clinical model (and the fusions of ``settings.clinical.fusion``) from the
        manifest's clinical columns (``manifest`` must be a Manifest).
    models_dir : path, optional
        With ``settings.save_models``: where the model artefacts go (``<run>/models``); see
        :mod:`her2dlr.learn.deploy`.
    feature_tables : list of dict, optional
        Provenance of the feature table(s) (name, params, roi, params hash), for the model cards.
    radiomics_params : dict, optional
        Resolved PyRadiomics parameters of the radiomics table, stored with the artefacts.
    segmenter : path, optional
        The segmentation network for new cases, stored with models of automatic-mask features.

    Returns
    -------
    LearnStageResult
    """
    out = Path(out_dir)
    check_multiclass_stage(manifest, settings, clinical=clinical)  # a 3-class label: refuse binary-only settings
    multiclass = label_classes(manifest) > 2
    has_imaging = features is not None and features.shape[1] > 0
    if not has_imaging and not clinical:
        raise InputError("The learning stage got no feature table and no clinical model to fit.")
    inputs, raw, types = _stage_inputs(features if has_imaging else None, manifest, settings, feature_set, clinical,
                                       multiclass=multiclass)
    deploy_scheme = None
    if settings.save_models and models_dir is not None:
        deploy_scheme = "holdout" if "holdout" in settings.schemes else "final"
    space = settings.workflow_space()
    if space is not None and clinical:
        raise InputError("learn.search.search: workflows searches the imaging feature tables only; remove "
                         "'clinical' from learn.features, or use search: grid for the clinical models.")
    cache = FoldCache(out / FOLD_CACHE)
    runs = _ModelRuns(inputs, manifest, settings, feature_set, raw, types, clinical=clinical,
                      fusion=_fusions(settings, clinical and has_imaging, multiclass),
                      feature_tables=list(feature_tables or []), progress=progress, cache=cache, workflows=space)
    for entry in settings.models if space is None else [WORKFLOWS_ENTRY]:
        runs.run_model(entry, list(settings.schemes) + ["final"] * (deploy_scheme == "final"))
    runs.add_pairings()
    results = runs.results
    deploy = [r for r in results if r.scheme == deploy_scheme]
    results = [r for r in results if r.scheme != "final"]
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    multi = multiclass_outputs(predictions, manifest, out)  # None for a binary label
    metrics = metrics_table(predictions) if multi is None else multi.metrics
    files = _write_outputs(out, results, predictions, metrics, settings, feature_set, clinical)
    files += multi.files if multi is not None else []
    cache.prune()  # keep this run's folds only: the folder never outgrows one run
    if clinical and raw is not None:
        files.append(_check_label_proxies(raw, types, manifest, out))
    if deploy:
        from her2dlr.provenance import config_hash

        table_meta = manifest.meta if isinstance(manifest, Manifest) else {}
        files += save_stage_artefacts(
            deploy, runs.model_inputs, Path(models_dir), metrics=metrics, task=table_meta.get("label", {}),  # type: ignore[arg-type]
            config_hash=config_hash(settings), rule=runs.rule, radiomics_params=radiomics_params,
            segmenter=Path(segmenter) if segmenter is not None else None)
    return LearnStageResult(results, predictions, metrics, out, files)


_Input = tuple[str, pd.DataFrame, Any, bool]  # (set name, frame, selection steps, numeric only)
#: The one "classifier" of a workflow search: models are named ``<set>-workflows``.
WORKFLOWS_ENTRY = SimpleNamespace(name="workflows", label=None, grid=None, params={})


def _fusions(settings: LearnSettings, both: bool, multiclass: bool) -> set[str]:
    """The clinical fusions to fit: none without both inputs; a multi-class label leaves out seed 002's
    combined model (refused before, see :func:`check_multiclass_stage`, when the settings name it)."""
    if not both:
        return set()
    return set(settings.clinical.fusion) - ({"combined"} if multiclass else set())


def _stage_inputs(features: pd.DataFrame | None, manifest: Manifest | pd.DataFrame, settings: LearnSettings,
                  feature_set: str, clinical: bool, *, multiclass: bool = False
                  ) -> tuple[list[_Input], pd.DataFrame | None, dict[str, str]]:
    """The model inputs: the imaging table, the clinical frame and their early fusion."""
    from her2dlr.learn.fusion import clinical_frame, clinical_steps, early_fusion_steps

    inputs: list[_Input] = []
    if features is not None:
        inputs.append((feature_set, features, settings.selection, True))
    raw, types = None, {}
    if clinical:
        raw, types = clinical_frame(manifest, settings.clinical.columns)  # type: ignore[arg-type]
        _check_units(settings.clinical.units, manifest)  # type: ignore[arg-type]
        options = settings.clinical.options()
        inputs.append(("clinical", raw, clinical_steps(types, options, multiclass=multiclass), False))
        if features is not None and "early" in settings.clinical.fusion:
            imaging = features.set_index("case_id") if "case_id" in features.columns else features
            clash = set(imaging.columns) & set(raw.columns)
            if clash:
                raise InputError(f"Feature table column(s) {sorted(clash)[:5]} clash with clinical column names.")
            both = imaging.join(raw, how="inner")
            inputs.append((f"{feature_set}+clinical", both,
                           early_fusion_steps(list(imaging.columns), types, settings.selection, options,
                                              multiclass=multiclass), False))
    return inputs, raw, types


def _check_units(units: dict[str, str], manifest: Manifest) -> None:
    """Refuse a unit (``learn.clinical.units``) for a column that is not one of the manifest's clinical columns."""
    for column in units:
        if column not in manifest.clinical_columns:
            raise InputError(f"learn.clinical.units: '{column}' is not a clinical column; the clinical columns are "
                             f"{', '.join(manifest.clinical_columns) or 'none'}.{nearest(column, manifest.clinical_columns)}")


@dataclass
class _ModelRuns:
    """Outer CV of every input x classifier x scheme, then the clinical fusions, in a fixed order."""

    inputs: list[_Input]
    manifest: Manifest | pd.DataFrame
    settings: LearnSettings
    feature_set: str
    raw: pd.DataFrame | None
    types: dict[str, str]
    clinical: bool
    fusion: set[str]
    feature_tables: list[dict[str, Any]]
    progress: bool
    cache: FoldCache | None = None
    workflows: Any = None
    results: list[CVResult] = field(default_factory=list)
    model_inputs: dict[str, ModelInputs] = field(default_factory=dict)
    # scheme -> set -> classifier -> result, for the classifier pairings
    pair_inputs: dict[str, dict[str, dict[str, CVResult]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rule = self.settings.threshold_rule()

    def run_model(self, entry: Any, schemes: list[str]) -> None:
        """One classifier of the zoo on every input and scheme (and its fusions)."""
        clf = entry.label or entry.name
        for set_name, frame, _, _ in self.inputs:
            self.model_inputs[f"{set_name}-{clf}"] = ModelInputs(
                list(frame.columns),
                clinical={c: t for c, t in self.types.items() if c in frame.columns} if self.clinical else {},
                feature_tables=list(self.feature_tables) if set_name != "clinical" else [], frame=frame,
                units=self.settings.clinical.units)
        for scheme in schemes:
            by_set = {set_name: self._outer_cv(entry, clf, scheme, set_name, frame, steps, numeric_only)
                      for set_name, frame, steps, numeric_only in self.inputs}
            if self.fusion:
                self._fuse(by_set, clf, scheme)

    def _outer_cv(self, entry: Any, clf: str, scheme: str, set_name: str, frame: pd.DataFrame, steps: Any,
                  numeric_only: bool) -> CVResult:
        s = self.settings
        result = run_outer_cv(
            frame, self.manifest, model=entry.name, selection=steps, scheme=scheme,
            grid=entry.grid, params=entry.params or None, search=s.search_settings(),
            threshold=self.rule, threshold_source=s.threshold.source,
            keep_train=s.keep_train_predictions or scheme == "final",
            model_name=f"{set_name}-{clf}", n_jobs=s.n_jobs, progress=self.progress,
            numeric_only=numeric_only, backend=s.backend, scheduler=s.scheduler, cache=self.cache,
            workflows=self.workflows,
        )
        self.results.append(result)
        return result

    def _fuse(self, by_set: dict[str, CVResult], clf: str, scheme: str) -> None:
        """Late fusion, stacking and seed 002's combined model of one classifier's imaging and clinical runs."""
        from her2dlr.learn.fusion import late_fusion
        from her2dlr.learn.integration import combined_logistic, stacking

        fs, s = self.feature_set, self.settings
        pair = [by_set[fs], by_set["clinical"]]
        pair_names = [f"{fs}-{clf}", f"clinical-{clf}"]
        if "late" in self.fusion:
            self._add(late_fusion(pair, name=f"late({fs},clinical)-{clf}", threshold=self.rule),
                      ModelInputs([], components=pair_names))
        if "stack" in self.fusion:
            self._add(stacking(pair, name=f"stack({fs},clinical)-{clf}", threshold=self.rule),
                      ModelInputs([], components=pair_names))
        if "combined" in self.fusion:
            assert self.raw is not None
            combined = combined_logistic(
                by_set[fs], self.raw, self.types, groups=_groups(self.manifest),
                name=f"combined({fs}-{clf},clinical)-lr", options=s.clinical.options(),
                threshold=self.rule, threshold_source=s.threshold.source, search=s.search_settings())
            self._add(combined, ModelInputs(list(self.raw.columns), clinical=dict(self.types), frame=self.raw,
                                            components=pair_names[:1], units=s.clinical.units))
        for set_name in (fs, "clinical"):
            self.pair_inputs.setdefault(scheme, {}).setdefault(set_name, {})[clf] = by_set[set_name]

    def _add(self, result: CVResult, inputs: ModelInputs) -> None:
        self.results.append(result)
        self.model_inputs[result.model] = inputs

    def add_pairings(self) -> None:
        """Every imaging x clinical classifier pairing (seed 001), when ``pairs`` is among the fusions."""
        if "pairs" not in self.fusion:
            return
        from her2dlr.learn.integration import classifier_pairings

        fs = self.feature_set
        for sets in self.pair_inputs.values():
            for r in classifier_pairings(sets[fs], sets["clinical"], method=self.settings.clinical.pair_method,
                                         threshold=self.rule, prefix=f"pair({fs},clinical)"):
                img_clf, clin_clf = r.model.rsplit("(", 1)[1].rstrip(")").split(",")
                self._add(r, ModelInputs([], components=[f"{fs}-{img_clf}", f"clinical-{clin_clf}"]))


def _concat_rows(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Rows of ``parts`` stacked, all columns kept in order; empty parts and all-missing columns do not
    decide a column's type (what pandas did before deprecating it, without its FutureWarning)."""
    columns = list(dict.fromkeys(c for p in parts for c in p.columns))
    kept = [p.dropna(axis=1, how="all") for p in parts if len(p)]
    kept = [p for p in kept if p.shape[1]]
    if not kept:
        return pd.DataFrame(columns=columns)
    return pd.concat(kept, ignore_index=True).reindex(columns=columns)

def _check_label_proxies(raw: pd.DataFrame, types: dict[str, str], manifest: Manifest | pd.DataFrame,
                         out: Path) -> Path:
    """``label_proxies.csv``: clinical columns that may stand in for the label (:mod:`her2dlr.evaluate.proxies`).

    Checked on every labelled case (a warning for the reader, not a fitted step); flagged columns
    are also named in a warning.
    """
    import warnings

    from her2dlr.evaluate.proxies import label_proxies

    table = manifest.included if isinstance(manifest, Manifest) else manifest
    table = table[table["label"].notna()]
    ids = table["case_id"].astype(str)
    frame = raw.reindex(ids)
    labels = table["label"].astype(int).to_numpy()
    if len(np.unique(labels)) > 2:
        from her2dlr.learn.clinical_multiclass import multiclass_label_proxies

        check = multiclass_label_proxies(frame, labels, types)
    else:
        check = label_proxies(frame, labels, types)
    path = write_csv_atomic(check, out / LABEL_PROXIES)
    flagged = check[check["flagged"]]
    if len(flagged):
        named = "; ".join(f"'{r.column}': {r.reason}" for r in flagged.itertuples())
        warnings.warn(f"Clinical column(s) that may stand in for the label: {named}. Models using them may owe "
                      f"their AUC to the label itself; see {path}.", stacklevel=3)
    return path


def _write_outputs(out: Path, results: list[CVResult], predictions: pd.DataFrame, metrics: pd.DataFrame,
                   settings: LearnSettings, feature_set: str, clinical: bool) -> list[Path]:
    """The stage's tables under ``out`` (see the module docstring), each written atomically."""

    def per_fold(getter: Any) -> pd.DataFrame:
        parts = [getter(r).assign(model=r.model, scheme=r.scheme) for r in results if r.fits]
        return _concat_rows(parts)

    inner = pd.concat(
        [f.inner_results.assign(model=r.model, fold=f.fold, params=f.inner_results["params"].map(json.dumps))
         for r in results for f in r.fits], ignore_index=True)
    freq = per_fold(lambda r: r.feature_frequency().rename_axis("feature").reset_index())
    files = [
        write_parquet_atomic(predictions, out / PREDICTIONS, index=False),
        write_csv_atomic(metrics, out / METRICS),
        write_csv_atomic(per_fold(CVResult.funnel), out / FUNNEL),
        write_csv_atomic(per_fold(CVResult.params), out / PARAMS),
        write_csv_atomic(inner, out / INNER_RESULTS),
        write_csv_atomic(freq, out / FEATURE_FREQUENCY),
        write_text_atomic(out / SETTINGS,
                          json.dumps({"feature_set": feature_set, **settings.model_dump(mode="json")}, indent=2)),
    ]
    searched = [f.inner_results.assign(model=r.model, scheme=r.scheme, fold=f.fold)
                for r in results for f in r.fits if "workflow" in f.inner_results.columns]
    if searched:
        table = pd.concat(searched, ignore_index=True)
        table["params"] = table["params"].map(lambda p: json.dumps(p, default=str))
        first = ["model", "scheme", "fold", "workflow", "feature_set", "chain", "classifier", "params"]
        files.append(write_csv_atomic(table[first + [c for c in table.columns if c not in first]], out / WORKFLOWS))
    if clinical:
        from her2dlr.learn.fusion import selected_clinical_variables

        kept = per_fold(lambda r: selected_clinical_variables(r).rename_axis("variable").reset_index()
                        if "clinical" in r.model else pd.DataFrame(columns=["variable", "frequency"]))
        files.append(write_csv_atomic(kept, out / CLINICAL_VARIABLES))
    return files
