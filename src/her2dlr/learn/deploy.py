"""From the learning stage's results to model artefacts under ``<run>/models/``.

The deployable model of every model name is the one fitted on the hold-out's training split
(its test metrics are the hold-out's), or, when the study evaluates by k-fold only, the one
fitted on every labelled case (scheme ``"final"``: same tuning, selection and threshold rule,
no test rows). Composite models (late fusion, stacking, seed 002's combined model) are saved
with copies of their component artefacts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.learn.artefact import artefact_slug, save_artefact
from her2dlr.learn.cv import CVResult
from her2dlr.learn.thresholds import Threshold, ThresholdRule

__all__ = ["ModelInputs", "cases_summary", "metrics_of", "save_stage_artefacts", "training_summary"]


@dataclass
class ModelInputs:
    """What one model of the stage reads.

    Attributes
    ----------
    columns : list of str
        The pipeline's input columns in order.
    clinical : dict
        Raw clinical columns among them -> type.
    feature_tables : list of dict
        Provenance of the feature tables (name, params, roi, params hash).
    frame : DataFrame
        The inputs of every case (to record variable ranges for the nomogram).
    components : list of str
        For composites: names of the component models.
    units : dict
        Unit of a clinical column (the study's ``learn.clinical.units``), for those among ``clinical``.
    """

    columns: list[str]
    clinical: dict[str, str] = field(default_factory=dict)
    feature_tables: list[dict[str, Any]] = field(default_factory=list)
    frame: pd.DataFrame | None = None
    components: list[str] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)

    def card_inputs(self) -> dict[str, Any]:
        out = {"columns": self.columns, "features": [c for c in self.columns if c not in self.clinical],
               "clinical": self.clinical, "feature_tables": self.feature_tables}
        units = {c: u for c, u in self.units.items() if c in self.clinical}
        return {**out, "units": units} if units else out


def _threshold_of(result: CVResult, fold: str, rule: ThresholdRule | None) -> Threshold:
    """The threshold a composite used in ``fold``, with its training sensitivity and specificity."""
    p = result.predictions
    rows = p[(p["fold"] == fold) & p["split"].isin(["train_oof", "train"])]
    value = float(rows["threshold"].iloc[0])
    y, cls = rows["label"].to_numpy().astype(int), rows["class"].to_numpy().astype(int)
    sens = float(((cls == 1) & (y == 1)).sum() / max((y == 1).sum(), 1))
    spec = float(((cls == 0) & (y == 0)).sum() / max((y == 0).sum(), 1))
    return Threshold(value, rule.method if rule else "youden", rule.target if rule else None, sens, spec,
                     len(rows), str(rows["split"].iloc[0]))


def metrics_of(metrics: pd.DataFrame, model: str) -> dict[str, Any]:
    """Hold-out and k-fold test AUC (with CI, n) of ``model`` and all its metric rows, for a model card."""
    m = metrics[metrics["model"] == model]
    out: dict[str, Any] = {}
    hold = m[(m["split"] == "test") & (m["scope"] == "holdout")]
    if len(hold):
        r = hold.iloc[0]
        out.update(test_auc=r["auc"], test_ci=[r["ci_low"], r["ci_high"]], test_n=int(r["n"]))
    cv = m[(m["split"] == "test") & (m["scope"] == "mean")]
    if len(cv):
        r = cv.iloc[0]
        out.update(cv_auc=r["auc"], cv_ci=[r["ci_low"], r["ci_high"]], cv_n=int(r["n"]))
    out["table"] = m.replace({np.nan: None}).to_dict(orient="records")
    return out


def save_stage_artefacts(deploy: Sequence[CVResult], inputs: Mapping[str, ModelInputs], models_dir: Path, *,
                         metrics: pd.DataFrame, task: Mapping[str, Any], config_hash: str,
                         rule: ThresholdRule | None = None, radiomics_params: Mapping[str, Any] | None = None,
                         saved: Mapping[str, Path] | None = None, networks: Mapping[str, Path] | None = None,
                         segmenter: Path | None = None) -> list[Path]:
    """Save one artefact per deployable result (components first) and return their folders.

    Parameters
    ----------
    deploy : list of CVResult
        Results of the ``holdout`` or ``final`` scheme (one fold each).
    inputs : dict of model name -> ModelInputs
    models_dir : Path
        ``<run>/models``.
    metrics : DataFrame
        The stage's metrics table (hold-out and k-fold rows go into each card).
    task : dict
        Label rule of the cohort (the manifest's ``meta["label"]``).
    config_hash : str
    rule : ThresholdRule, optional
    radiomics_params : dict, optional
        Resolved PyRadiomics parameters, stored with models that read the radiomics table.
    saved : dict of model name -> Path, optional
        Artefacts already written that composites may use as components (e.g. a deep signature).
    networks : dict of model name -> Path, optional
        Network checkpoints of DLR pipelines (saved as their ``network.pt``).
    segmenter : Path, optional
        The segmentation network for new cases, saved with every model that reads features of
        automatic masks (a feature table with ``roi: auto``).
    """
    from her2dlr.learn.integration import SIGNATURE, logistic_coefficients, logit

    given = dict(saved or {})
    done: dict[str, Path] = dict(given)
    networks = dict(networks or {})
    pending = list(deploy)
    while pending:
        progressed = False
        for result in list(pending):
            spec = inputs.get(result.model)
            if spec is None:
                pending.remove(result)
                continue
            if any(c not in done for c in spec.components):
                continue
            fold = str(result.predictions["fold"].iloc[0])
            train = result.predictions[result.predictions["split"].isin(["train_oof", "train"])]
            common: dict[str, Any] = {
                "task": dict(task), "config_hash": config_hash, "metrics": metrics_of(metrics, result.model),
                "training": training_summary(result, train, task),
            }
            out = models_dir / artefact_slug(result.model)
            comps = [done[c] for c in spec.components]
            uses_radiomics = any(t.get("params_hash") for t in spec.feature_tables)
            params = radiomics_params if uses_radiomics else None
            if result.fits and not spec.components:
                fit = result.fits[0]
                done[result.model] = save_artefact(
                    out, name=result.model, kind="pipeline", threshold=fit.threshold, inputs=spec.card_inputs(),
                    pipeline=fit.pipeline, radiomics_params=params, network=networks.get(result.model),
                    segmenter=segmenter if any(t.get("roi") == "auto" for t in spec.feature_tables) else None,
                    params=fit.params,
                    selected_features=fit.features, inner_median_auc=fit.inner_median_auc,
                    **_multiclass_card(fit, task), **common)
            elif result.fits:  # combined: imaging component + clinical columns
                fit = result.fits[0]
                extra: dict[str, Any] = {}
                if spec.frame is not None:
                    oof = train.set_index("case_id")
                    img_prob = result_prob(deploy, spec.components[0], oof.index)
                    x = spec.frame.loc[oof.index, list(spec.clinical)].assign(**{SIGNATURE: logit(img_prob)})
                    extra["logistic"] = logistic_coefficients(fit.pipeline, x)
                done[result.model] = save_artefact(
                    out, name=result.model, kind="combined", threshold=fit.threshold, inputs=spec.card_inputs(),
                    pipeline=fit.pipeline, components=comps, selected_features=fit.features, **extra, **common)
            else:
                kind = "stack" if hasattr(result, "meta") else "late"
                extra = {"meta": result.meta[fold]} if kind == "stack" else {"weights": [1.0] * len(comps)}
                n_classes = sum(1 for c in result.predictions.columns if str(c).startswith("prob_"))
                if n_classes > 2:  # a multi-class fusion: the class is the argmax, no threshold
                    threshold = _argmax_threshold(result, fold)
                    extra["classes"] = _class_names(n_classes, task)
                else:
                    threshold = _threshold_of(result, fold, rule)
                done[result.model] = save_artefact(
                    out, name=result.model, kind=kind, threshold=threshold,
                    inputs=spec.card_inputs(), components=comps, **extra, **common)
            pending.remove(result)
            progressed = True
        if not progressed:
            break
    return [p for name, p in done.items() if name not in given]


def training_summary(result: CVResult, train: pd.DataFrame, task: Mapping[str, Any]) -> dict[str, Any]:
    """The model card's ``training`` entry: scheme, cases, patients and the classes' counts.

    A two-class model records ``n_positive``; a model of more than two classes records
    ``class_counts`` (class name -> training cases) instead, as a sum of class numbers means nothing.

    Parameters
    ----------
    result : CVResult
        The deployed model's fit (its scheme and prediction columns).
    train : DataFrame
        Its ``train`` / ``train_oof`` prediction rows (``case_id, patient_id, label``).
    task : dict
        Label rule of the cohort (class names in ``task["classes"]``).
    """
    n_classes = sum(1 for c in result.predictions.columns
                    if str(c).startswith("prob_") and result.predictions[c].notna().any())
    return {"scheme": result.scheme, **cases_summary(train, n_classes, task)}


def cases_summary(cases: pd.DataFrame, n_classes: int, task: Mapping[str, Any]) -> dict[str, Any]:
    """``n_cases``, the classes' counts (``n_positive``, or ``class_counts`` beyond two classes) and
    ``n_patients`` of training rows ``cases`` (``case_id, patient_id, label``; a case counted once)."""
    labels = cases.drop_duplicates("case_id")["label"].astype(int)
    summary: dict[str, Any] = {"n_cases": int(cases["case_id"].nunique())}
    if n_classes > 2:
        names = _class_names(n_classes, task)
        summary["class_counts"] = {names[k]: int((labels == k).sum()) for k in range(n_classes)}
    else:
        summary["n_positive"] = int(labels.sum())
    summary["n_patients"] = int(cases["patient_id"].nunique())
    return summary


def _multiclass_card(fit: Any, task: Mapping[str, Any]) -> dict[str, Any]:
    """``{"classes": [...]}`` for a multi-class fit (no threshold: argmax), else nothing."""
    if fit.threshold.method != "argmax":
        return {}
    return {"classes": _class_names(int(np.max(fit.pipeline.classes_)) + 1, task)}


def _class_names(n: int, task: Mapping[str, Any]) -> list[str]:
    """The label rule's class names (``task["classes"]``), else ``"0"``, ``"1"`` ... (at least three)."""
    names = task.get("classes")
    return ([str(c) for c in names] if isinstance(names, list) and len(names) >= n > 2
            else [str(k) for k in range(max(n, 3))])


def _argmax_threshold(result: CVResult, fold: str) -> Threshold:
    """The "threshold" of a multi-class composite: none (the most probable class), with its training row count."""
    from her2dlr.learn.multiclass_cv import argmax_threshold

    p = result.predictions
    rows = p[(p["fold"] == fold) & p["split"].isin(["train_oof", "train"])]
    return argmax_threshold(len(rows), str(rows["split"].iloc[0]) if len(rows) else "none")


def result_prob(results: Sequence[CVResult], model: str, cases: pd.Index) -> np.ndarray:
    """Training (inner out-of-fold) probabilities of ``model`` for ``cases`` in its deploy result."""
    for r in results:
        if r.model == model:
            p = r.predictions[r.predictions["split"] == "train_oof"].set_index("case_id")
            return p.loc[cases, "prob"].to_numpy()
    raise KeyError(model)
