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
=========================  ====================================================================

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
from her2dlr.evaluate.metrics import metrics_table
from her2dlr.io.atomic import write_csv_atomic, write_parquet_atomic, write_text_atomic
from her2dlr.learn.cv import CVResult, run_outer_cv
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


def run_learn_stage(features: pd.DataFrame, manifest: Manifest | pd.DataFrame, settings: LearnSettings,
                    out_dir: str | os.PathLike[str], *, feature_set: str = "features",
                    progress: bool = False) -> LearnStageResult:
    """Evaluate every model of ``settings`` on ``features`` and write the stage outputs.

    Parameters
    ----------
    features : DataFrame of shape (n_cases, n_features)
        Indexed by case id.
    manifest : Manifest or DataFrame
        With ``label`` and the split columns the schemes need.
    settings : LearnSettings
    out_dir : path
        Stage folder, e.g. ``<run>/learn/<feature_set>``.
    feature_set : str
        Prefix of the ``model`` column (``"<feature_set>-<model>"``).
    progress : bool

    Returns
    -------
    LearnStageResult
    """
    out = Path(out_dir)
    results: list[CVResult] = []
    for entry in settings.models:
        for scheme in settings.schemes:
            results.append(run_outer_cv(
                features, manifest, model=entry.name, selection=settings.selection, scheme=scheme,
                grid=entry.grid, params=entry.params or None, search=settings.search_settings(),
                threshold=settings.threshold_rule(), threshold_source=settings.threshold.source,
                keep_train=settings.keep_train_predictions, model_name=f"{feature_set}-{entry.label or entry.name}",
                n_jobs=settings.n_jobs, progress=progress,
            ))
    predictions = pd.concat([r.predictions for r in results], ignore_index=True)
    metrics = metrics_table(predictions)

    def per_fold(getter: Any) -> pd.DataFrame:
        parts = [getter(r).assign(model=r.model, scheme=r.scheme) for r in results]
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
    return LearnStageResult(results, predictions, metrics, out, files)
