"""Benchmark ``dsfr``: seed 003's DSFR, radiomics and DLR models on BrEaST-Lesions-USG, benign vs malignant.

``her2dlr bench dsfr --data ../shared/data/breast-lesions-usg [--quick] [--work-dir DIR] [--n-jobs 2]``

Cohort: the ``breast-usg`` benchmark's (:func:`her2dlr.bench.breast_usg.breast_study`): the
labelled images with their tumour masks, malignant (98) vs benign (154), repetition 0 of the
default group 5-fold split. Every model is scored on the same five outer folds.

Run, as a study would (``train seg`` -> ``extract dsfr`` -> ``learn dsfr``):

* a U-Net per outer fold trained on the other folds' images and masks
  (:func:`her2dlr.segment.stage.run_seg_stage`; 128 px, up to 30 epochs, early stopping with
  patience 8 on the inner validation Dice);
* DSFR features: every case's lesion (its given mask) averaged channel by channel over the
  10th activation layer of every fold network (:mod:`her2dlr.deep.dsfr_features`);
* radiomics: the shipped ``us2d`` set on the masks (cached per case under the work folder);
* models (logistic regression, the learning stage's inner search): ``dsfr`` (k-means on the
  channels fitted on the fold's training cases, the larger cluster kept -> z-score -> mutual
  information -> LASSO -> classifier), ``radiomics`` (seed 002's selection -> classifier) and
  ``dlr``, the mean of the two probabilities (:mod:`her2dlr.deep.dsfr`).

Metrics: ``auc_radiomics``, ``auc_dsfr``, ``auc_dlr``: test AUC of the learning stage's metrics
table (``scope="mean"``: the pooled out-of-fold predictions of the one repetition; ``auc_pooled``
recomputes it) with ``ci_low``/``ci_high`` the DeLong limits of the pooled predictions;
``delong_p_dlr_vs_radiomics`` (paired DeLong test on the pooled predictions); ``dice_mean``
of the out-of-fold segmentations (with its bootstrap CI); ``seconds`` (segmentation training,
DSFR extraction, radiomics, learning).

``--quick``: 60 cases (stratified, seeded), 64 px networks trained for 6 epochs; a smoke test
of the chain, not a result.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.cohort_benches import require_data

__all__ = ["dsfr_bench", "dsfr_segment_settings"]

BENCH = "dsfr"
QUICK_CASES = 60
MODEL = "lr"


def dsfr_segment_settings(quick: bool, seed: int = 0) -> Any:
    """The benchmark's ``segment:`` section: 128 px, 30 epochs, patience 8 (``quick``: 64 px, 6 epochs)."""
    from her2dlr.segment.settings import SegmentSettings

    if quick:
        return SegmentSettings(image_size=64, epochs=6, batch_size=16, patience=0, final=False, seed=seed)
    return SegmentSettings(image_size=128, epochs=30, batch_size=16, patience=8, final=False, seed=seed)


def _auc_row(metrics: Any, model: str) -> Any:
    rows = metrics[(metrics["split"] == "test") & (metrics["scope"] == "mean") & (metrics["model"] == model)]
    return rows.iloc[0]


def _pooled_ci(predictions: Any, model: str) -> tuple[float, float, float]:
    """AUC of the pooled out-of-fold test predictions and its DeLong 95 % CI."""
    from her2dlr.evaluate.delong import delong_auc_ci

    test = predictions[(predictions["split"] == "test") & (predictions["model"] == model)]
    ci = delong_auc_ci(test["label"].to_numpy(), test["prob"].to_numpy())
    return float(ci.auc), float(ci.ci_low), float(ci.ci_high)


@register(BENCH, "BrEaST-Lesions-USG malignant vs benign: seed 003's radiomics, DSFR and DLR (late fusion) AUCs")
def dsfr_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the benchmark's result lines (see the module docstring)."""
    from her2dlr.bench.breast_usg import breast_study, labelled_cases, radiomics_or_drop, subset_cases
    from her2dlr.bench.dlr_benches import pooled_delong
    from her2dlr.cohort.build import build_cohort
    from her2dlr.deep.dsfr import run_study_dsfr
    from her2dlr.deep.dsfr_features import extract_dsfr_features
    from her2dlr.io.atomic import write_parquet_atomic
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.segment.stage import run_seg_stage

    data = require_data(opts, BENCH, "the breast-lesions-usg folder with the clinical .xlsx and images/")
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.gettempdir()) / "her2dlr-bench-dsfr"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = breast_study(data, Path(tmp))
        study = study.model_copy(update={"segment": dsfr_segment_settings(opts.quick, opts.seed),
                                         "learn": LearnSettings(n_jobs=1, seed=opts.seed)})
        manifest = build_cohort(study, n_jobs=opts.n_jobs, progress=False).manifest
        manifest = subset_cases(manifest, QUICK_CASES, opts.seed) if opts.quick else labelled_cases(manifest)
        features, manifest, _ = radiomics_or_drop(manifest, "us2d", work / "cache", opts.n_jobs, BENCH)
        manifest.save(study.paths.manifest)
        write_parquet_atomic(features, study.paths.feature_table("radiomics"), index=True)
        t_seg = time.perf_counter()
        seg = run_seg_stage(study, progress=False)
        seconds_seg = time.perf_counter() - t_seg
        extract_dsfr_features(study, n_heatmaps=0, progress=False)
        res = run_study_dsfr(study, radiomics="radiomics", model=MODEL, n_jobs=opts.n_jobs)
    seconds = time.perf_counter() - t0
    models = {"radiomics": res.models.radiomics.model, "dsfr": res.models.dsfr.model, "dlr": res.models.dlr.model}
    n = int(res.predictions.query("split == 'test'")["case_id"].nunique())
    info = {"n": n, "folds": len(res.models.dsfr.fits), "repetition": res.models.repetition, "quick": opts.quick}
    for family, name in models.items():
        row = _auc_row(res.metrics, name)
        pooled, lo, hi = _pooled_ci(res.predictions, name)
        yield result(BENCH, f"auc_{family}", float(row["auc"]), ci_low=lo, ci_high=hi, auc_pooled=pooled,
                     model=name, **info)
    tests = pooled_delong(res.predictions[res.predictions["model"] == models["dlr"]],
                          res.predictions[res.predictions["model"] == models["radiomics"]])
    test = tests[res.models.repetition]
    yield result(BENCH, "delong_p_dlr_vs_radiomics", float(test.p_value), n=n, auc_dlr=float(test.auc_a),
                 auc_radiomics=float(test.auc_b))
    yield result(BENCH, "dice_mean", float(seg.summary.get("dice_mean", float("nan"))),
                 ci_low=seg.summary.get("dice_ci_low"), ci_high=seg.summary.get("dice_ci_high"), n=n,
                 image_size=study.segment.size, epochs=study.segment.epochs)
    yield result(BENCH, "seconds", round(seconds, 1), seconds=round(seconds, 1),
                 seconds_segmentation=round(seconds_seg, 1), n=n, n_jobs=opts.n_jobs)
