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
``clinical_variables.csv`` (with ``clinical=True``) how often each clinical variable was kept
=========================  ====================================================================

With ``clinical=True`` the manifest's clinical columns are a second input (see
:mod:`her2dlr.learn.fusion`): models ``clinical-<clf>``, and with an imaging table
``<set>-<clf>``, ``<set>+clinical-<clf>`` (early fusion), ``late(<set>,clinical)-<clf>``,
``stack(<set>,clinical)-<clf>``, ``combined(<set>-<clf>,clinical)-lr`` (seed 002) and, with
``pairs``, ``pair(<set>,clinical)(<imaging clf>,<clinical clf>)`` (see
:mod:`her2dlr.learn.integration`).

Fitted fold pipelines stay in the returned :class:`LearnStageResult`; the deployable model
artefact (``model_card.json``) is built from :func:`her2dlr.learn.cv.fit_final` elsewhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from her2dlr.cohort.manifest import Manifest
from her2dlr.errors import InputError
from her2dlr.evaluate.metrics import metrics_table
from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic
from her2dlr.learn.cv import CVResult, run_outer_cv
from her2dlr.learn.deploy import ModelInputs, save_stage_artefacts
from her2dlr.learn.settings import LearnSettings

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
                    radiomics_params: dict[str, Any] | None = None) -> LearnStageResult:
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

    Returns
    -------
    LearnStageResult
    """
    from her2dlr.learn.fusion import (
        clinical_frame,
        clinical_steps,
        early_fusion_steps,
        late_fusion,
    )

    out = Path(out_dir)
    has_imaging = features is not None and features.shape[1] > 0
    if not has_imaging and not clinical:
        raise InputError("The learning stage got no feature table and no clinical model to fit.")
    inputs: list[tuple[str, pd.DataFrame, Any, bool]] = []  # (set name, frame, selection steps, numeric only)
    if has_imaging:
        inputs.append((feature_set, features, settings.selection, True))
    types: dict[str, str] = {}
    if clinical:
        raw, types = clinical_frame(manifest, settings.clinical.columns)  # type: ignore[arg-type]
        options = settings.clinical.options()
        inputs.append(("clinical", raw, clinical_steps(types, options), False))
        if has_imaging and "early" in settings.clinical.fusion:
            imaging = features.set_index("case_id") if "case_id" in features.columns else features
            clash = set(imaging.columns) & set(raw.columns)
            if clash:
                raise InputError(f"Feature table column(s) {sorted(clash)[:5]} clash with clinical column names.")
            both = imaging.join(raw, how="inner")
            inputs.append((f"{feature_set}+clinical", both,
                           early_fusion_steps(list(imaging.columns), types, settings.selection, options), False))
    from her2dlr.learn.integration import classifier_pairings, combined_logistic, stacking

    fusion = set(settings.clinical.fusion) if clinical and has_imaging else set()
    rule = settings.threshold_rule()
    deploy_scheme = None
    if settings.save_models and models_dir is not None:
        deploy_scheme = "holdout" if "holdout" in settings.schemes else "final"
    schemes = list(settings.schemes) + ["final"] * (deploy_scheme == "final")
    model_inputs: dict[str, ModelInputs] = {}
    results: list[CVResult] = []
    pair_inputs: dict[str, dict[str, dict[str, CVResult]]] = {}  # scheme -> set -> classifier -> result
    for entry in settings.models:
        clf = entry.label or entry.name
        for set_name, frame, _, _ in inputs:
            model_inputs[f"{set_name}-{clf}"] = ModelInputs(
                list(frame.columns), clinical={c: t for c, t in types.items() if c in frame.columns} if clinical else {},
                feature_tables=list(feature_tables or []) if set_name != "clinical" else [], frame=frame)
        pair_names = [f"{feature_set}-{clf}", f"clinical-{clf}"]
        for scheme in schemes:
            by_set: dict[str, CVResult] = {}
            for set_name, frame, steps, numeric_only in inputs:
                by_set[set_name] = run_outer_cv(
                    frame, manifest, model=entry.name, selection=steps, scheme=scheme,
                    grid=entry.grid, params=entry.params or None, search=settings.search_settings(),
                    threshold=rule, threshold_source=settings.threshold.source,
                    keep_train=settings.keep_train_predictions or scheme == "final",
                    model_name=f"{set_name}-{clf}", n_jobs=settings.n_jobs, progress=progress,
                    numeric_only=numeric_only,
                )
                results.append(by_set[set_name])
            if not fusion:
                continue
            pair = [by_set[feature_set], by_set["clinical"]]
            if "late" in fusion:
                results.append(late_fusion(pair, name=f"late({feature_set},clinical)-{clf}", threshold=rule))
                model_inputs[results[-1].model] = ModelInputs([], components=pair_names)
            if "stack" in fusion:
                results.append(stacking(pair, name=f"stack({feature_set},clinical)-{clf}", threshold=rule))
                model_inputs[results[-1].model] = ModelInputs([], components=pair_names)
            if "combined" in fusion:
                results.append(combined_logistic(
                    by_set[feature_set], raw, types, groups=_groups(manifest),
                    name=f"combined({feature_set}-{clf},clinical)-lr", options=settings.clinical.options(),
                    threshold=rule, threshold_source=settings.threshold.source,
                    search=settings.search_settings()))
                model_inputs[results[-1].model] = ModelInputs(list(raw.columns), clinical=dict(types), frame=raw,
                                                              components=pair_names[:1])
            for set_name in (feature_set, "clinical"):
                pair_inputs.setdefault(scheme, {}).setdefault(set_name, {})[clf] = by_set[set_name]
    if "pairs" in fusion:
        for sets in pair_inputs.values():
            for r in classifier_pairings(sets[feature_set], sets["clinical"], method=settings.clinical.pair_method,
                                         threshold=rule, prefix=f"pair({feature_set},clinical)"):
                results.append(r)
                img_clf, clin_clf = r.model.rsplit("(", 1)[1].rstrip(")").split(",")
                model_inputs[r.model] = ModelInputs([], components=[f"{feature_set}-{img_clf}", f"clinical-{clin_clf}"])
    deploy = [r for r in results if r.scheme == deploy_scheme]
    results = [r for r in results if r.scheme != "final"]
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    metrics = metrics_table(predictions)

    def per_fold(getter: Any) -> pd.DataFrame:
        parts = [getter(r).assign(model=r.model, scheme=r.scheme) for r in results if r.fits]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    inner = pd.concat(
        [f.inner_results.assign(model=r.model, fold=f.fold, params=f.inner_results["params"].map(json.dumps))
         for r in results for f in r.fits], ignore_index=True)
    freq = per_fold(lambda r: r.feature_frequency().rename_axis("feature").reset_index())
    files = [
        write_parquet_atomic(predictions, out / "predictions.parquet", index=False),
        write_csv_atomic(metrics, out / "metrics.csv"),
        write_csv_atomic(per_fold(CVResult.funnel), out / "funnel.csv"),
        write_csv_atomic(per_fold(CVResult.params), out / "params.csv"),
        write_csv_atomic(inner, out / "inner_results.csv"),
        write_csv_atomic(freq, out / "feature_frequency.csv"),
        write_text_atomic(out / "settings.json",
                          json.dumps({"feature_set": feature_set, **settings.model_dump(mode="json")}, indent=2)),
    ]
    if clinical:
        from her2dlr.learn.fusion import selected_clinical_variables

        kept = per_fold(lambda r: selected_clinical_variables(r).rename_axis("variable").reset_index()
                        if "clinical" in r.model else pd.DataFrame(columns=["variable", "frequency"]))
        files.append(write_csv_atomic(kept, out / "clinical_variables.csv"))
    if deploy:
        from her2dlr.provenance import config_hash

        table_meta = manifest.meta if isinstance(manifest, Manifest) else {}
        files += save_stage_artefacts(
            deploy, model_inputs, Path(models_dir), metrics=metrics, task=table_meta.get("label", {}),  # type: ignore[arg-type]
            config_hash=config_hash(settings), rule=rule, radiomics_params=radiomics_params)
    return LearnStageResult(results, predictions, metrics, out, files)
