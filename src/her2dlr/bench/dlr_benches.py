"""Benchmark ``busi-dlr``: deep learning radiomics (deep + radiomics features) on BUSI box ROIs.

``her2dlr bench busi-dlr --data ../shared/data/busi [--quick] [--work-dir DIR] [--n-jobs 2]``

Cohort and folds: exactly those of ``busi-deep`` (:mod:`her2dlr.bench.deep_benches`): the
default BUSI build (437 benign, 210 malignant; near-duplicates grouped), repeated (3 x) group
5-fold CV, read from ``<work_dir>/busi-deep/cohort/``. busi-deep's fold networks (each fold's
recipe chosen on its inner validation split) ``<work_dir>/busi-deep/densenet3block/<fold>/best.pt``
are reused when they are all there; otherwise they are trained as busi-deep trains them
(:func:`train_busi_deep`: finished candidates reloaded, the others trained), so ``busi-dlr
--quick`` then ``busi-dlr`` trains each network once. Each network's inner validation cases
(recorded in its checkpoint) are where the fusions are compared.

Features, all on the same outer folds:

* deep: every case embedded by every fold network (:mod:`her2dlr.deep.features`, one table per
  fold; a fold's test cases were never seen by its network);
* radiomics: the shipped ``us2d`` set on the box ROI (the mask's bounding rectangle, as the
  network's ROI), cached per case in ``busi-radiomics``' feature cache.

Models (logistic regression, tuned by the inner group 5-fold search picked by median AUC):

* ``dlr``: early fusion (seed 002): deep features -> z-score + PCA to 64 components fitted
  on the fold's training rows, concatenated with the radiomics, then seed 002's selection
  (variance, z-score, t-test, Pearson, greedy, LASSO) -> classifier;
* ``radiomics_box``: the radiomics alone through the same selection and classifier;
* ``deep_features``: the 64 principal components alone -> selection -> classifier;
* ``deep_signature``: the network's own probability (out-of-fold);
* ``late``: mean of the deep signature and the radiomics model's probabilities;
* ``chosen``: the study's DLR model (:func:`her2dlr.deep.dlr_fusion.choose_fusion`): in each
  outer fold early fusion, late fusion or stacking (logistic regression on the two models'
  logits), whichever has the best AUC on the fold network's inner validation cases (held out
  from its gradient steps; the outer test fold is never read for the choice).

Metrics: ``auc`` (the fusion chosen by inner validation, the headline; target >= 0.93) with
``ci_low``/``ci_high`` (mean per-repetition DeLong limits) and ``auc_min``/``auc_max``;
``fusion_choice``: how many folds chose each fusion, with every fold's inner AUCs;
``auc_early`` (the early fusion, the former headline) with ``inner_median_auc`` (the inner-CV
AUC on the training rows, where the deep features are in-sample for the fold network: the gap
to the test AUC shows how much they flatter the fit);
``auc_radiomics_box``, ``auc_deep_features``, ``auc_deep_signature`` (with
``max_abs_diff_vs_busi_deep``: the recomputed out-of-fold probabilities against those
``busi-deep`` saved) and ``auc_late``; ``delong_p_vs_radiomics``: paired DeLong test of the
DLR against the radiomics model on the pooled out-of-fold predictions of repetition 0 (every
case once; ``p_by_repetition`` lists all repetitions; the headline model against radiomics);
``pca_explained_variance`` (mean share
of the deep-feature variance the 64 in-fold components keep); ``seconds``.

All models' predictions are written to ``<work_dir>/busi-dlr/predictions.parquet``.

``--quick``: repetition 0 only (the 5 networks ``busi-deep --quick`` trains).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.cohort_benches import require_data
from her2dlr.runfolder import BEST_CHECKPOINT, PREDICTIONS

__all__ = ["DLR_MODEL", "busi_dlr_bench", "pooled_delong"]

BENCH = "busi-dlr"
#: The classifier of every model of the benchmark.
DLR_MODEL = "lr"
N_COMPONENTS = 64


def _test_metrics(predictions: pd.DataFrame) -> pd.Series:
    from her2dlr.evaluate.metrics import metrics_table

    table = metrics_table(predictions[predictions["split"] == "test"])
    return table[(table["split"] == "test") & (table["scope"] == "mean")].iloc[0]


def pooled_delong(a: pd.DataFrame, b: pd.DataFrame) -> dict[int, Any]:
    """Paired DeLong test of two models' pooled out-of-fold test predictions, per repetition.

    Parameters
    ----------
    a, b : DataFrame
        Prediction rows (``fold, case_id, split, prob, label``) of two models on the same folds.

    Returns
    -------
    dict
        repetition -> :class:`her2dlr.evaluate.delong.DeLongTest`.
    """
    from her2dlr.errors import InputError
    from her2dlr.evaluate.delong import delong_test

    out = {}
    ta, tb = (p[p["split"] == "test"].assign(rep=lambda d: d["fold"].str.extract(r"^r(\d+)f")[0].astype(int))
              for p in (a, b))
    for rep, part in ta.groupby("rep"):
        other = tb[tb["rep"] == rep].set_index("case_id")
        part = part.set_index("case_id")
        if not part.index.is_unique or set(part.index) != set(other.index):
            raise InputError(f"Repetition {rep}: the two models were not tested on the same cases once each.")
        other = other.loc[part.index]
        out[int(rep)] = delong_test(part["label"].to_numpy(), part["prob"].to_numpy(), other["prob"].to_numpy())
    return out


def _checkpoints_ready(folder: Path, repeats: list[int]) -> bool:
    """All fold networks of ``repeats`` are saved, readable, chosen among busi-deep's recipes, and named in its predictions.

    A network from before the recipes (no ``recipe`` in its checkpoint) is not busi-deep's any more.
    """
    from her2dlr.deep.train import load_checkpoint
    from her2dlr.errors import InputError

    want = [folder / f"r{r}f{k}" / BEST_CHECKPOINT for r in repeats for k in range(5)]
    if not (all(p.is_file() for p in want) and (folder / PREDICTIONS).is_file()):
        return False
    try:
        if not all(dict(load_checkpoint(path).get("extra") or {}).get("recipe") for path in want):
            return False
    except InputError:
        return False
    folds = set(pd.read_parquet(folder / PREDICTIONS, columns=["fold"])["fold"])
    return {p.parent.name for p in want} <= folds


def train_busi_deep(opts: BenchOptions, data: Path, repeats: list[int]) -> None:
    """Train (or finish) busi-deep's fold networks of ``repeats`` as busi-deep does (recipes chosen per fold).

    Finished folds are reloaded, interrupted ones resumed (:func:`her2dlr.deep.cv.run_deep_cv`
    with ``resume=True``); when the saved ones cannot be resumed (other settings, unreadable)
    all are trained again. Writes ``<work_dir>/busi-deep/densenet3block/`` as ``busi-deep`` does.
    """
    from her2dlr.bench.deep_benches import run_busi_deep
    from her2dlr.errors import InputError

    try:
        run_busi_deep(opts, data, repeats, resume=True)
    except InputError:
        run_busi_deep(opts, data, repeats, resume=False)


def _inner_auc(res: Any) -> float | None:
    """Mean over outer folds of the chosen setting's median inner-CV AUC (on the fold's training rows)."""
    values = [f.inner_median_auc for f in getattr(res, "fits", [])]
    return float(np.mean(values)) if values else None


def dlr_lines(results: dict[str, Any], *, saved_predictions: pd.DataFrame | None, pca: Any,
              info: dict[str, Any], deep_model: str = "network") -> list[dict[str, Any]]:
    """The benchmark's quality lines from the fitted models (see the module docstring).

    Parameters
    ----------
    results : dict
        ``dlr``, ``radiomics_box``, ``deep_features``, ``deep_signature``, ``late`` -> CVResult,
        and optionally ``chosen`` -> :class:`~her2dlr.deep.dlr_fusion.ChosenFusion` (then the
        headline ``auc`` is the chosen fusion and the early fusion is ``auc_early``).
    saved_predictions : DataFrame or None
        busi-deep's predictions, to check the recomputed network probabilities against.
    pca : PCAReport
    info : dict
        Extra fields of every AUC line.
    deep_model : str
        Describes the deep signature.
    """
    dlr, rad, signature = results["dlr"], results["radiomics_box"], results["deep_signature"]
    chosen = results.get("chosen")
    head = chosen.result if chosen is not None else dlr
    m = _test_metrics(dlr.predictions)
    tests = pooled_delong(head.predictions, rad.predictions)
    kept = dlr.fits[0].features if dlr.fits else []
    deep_share = float(np.mean([sum(f.startswith("deep__") for f in fit.features) / max(len(fit.features), 1)
                                for fit in dlr.fits])) if dlr.fits else float("nan")
    lines = []
    if chosen is not None:
        h = _test_metrics(head.predictions)
        table = chosen.choice_table()
        lines.append(result(BENCH, "auc", float(h["auc"]), ci_low=float(h["ci_low"]), ci_high=float(h["ci_high"]),
                            auc_min=float(h["auc_min"]), auc_max=float(h["auc_max"]), target=0.93,
                            sensitivity=float(h["sensitivity"]), specificity=float(h["specificity"]),
                            model=head.model, fusion="chosen per fold by inner validation AUC: early, late or stacking",
                            **info))
        lines.append(result(BENCH, "fusion_choice", table["chosen"].value_counts().to_dict(), folds=len(table),
                            mean_n_inner=round(float(table["n_inner"].mean()), 1),
                            by_fold={c.fold: {"chosen": c.chosen, **{k: round(v, 4) for k, v in c.scores.items()}}
                                     for c in chosen.choices}))
    lines.append(result(BENCH, "auc_early" if chosen is not None else "auc", float(m["auc"]),
                        ci_low=float(m["ci_low"]), ci_high=float(m["ci_high"]),
                        auc_min=float(m["auc_min"]), auc_max=float(m["auc_max"]),
                        **({} if chosen is not None else {"target": 0.94}), inner_median_auc=_inner_auc(dlr),
                        sensitivity=float(m["sensitivity"]), specificity=float(m["specificity"]), model=dlr.model,
                        fusion="early: deep PCA-64 (in-fold) + radiomics -> seed-002 selection -> classifier",
                        median_features=float(np.median([len(f.features) for f in dlr.fits])) if dlr.fits else None,
                        deep_share_of_features=round(deep_share, 3), example_features=list(kept[:8]), **info))
    for metric, key in (("auc_radiomics_box", "radiomics_box"), ("auc_deep_features", "deep_features"),
                        ("auc_deep_signature", "deep_signature"), ("auc_late", "late")):
        res = results[key]
        row = _test_metrics(res.predictions)
        extra: dict[str, Any] = {"model": deep_model if key == "deep_signature" else res.model,
                                 "inner_median_auc": _inner_auc(res)}
        if key == "deep_signature" and saved_predictions is not None:
            saved = saved_predictions[saved_predictions["split"] == "test"].set_index(["fold", "case_id"])
            mine = signature.predictions[signature.predictions["split"] == "test"].set_index(["fold", "case_id"])
            both = mine.index.intersection(saved.index)
            extra["max_abs_diff_vs_busi_deep"] = (float((mine.loc[both, "prob"] - saved.loc[both, "prob"]).abs().max())
                                                  if len(both) else None)
        lines.append(result(BENCH, metric, float(row["auc"]), ci_low=float(row["ci_low"]),
                            ci_high=float(row["ci_high"]), auc_min=float(row["auc_min"]),
                            auc_max=float(row["auc_max"]), **extra, **info))
    rep = min(tests)
    first = tests[rep]
    lines.append(result(BENCH, "delong_p_vs_radiomics", float(first.p_value), model=head.model,
                        auc_dlr=float(first.auc_a),
                        auc_radiomics=float(first.auc_b), difference=float(first.difference), z=float(first.z),
                        repetition=rep, p_by_repetition={str(k): round(float(v.p_value), 6) for k, v in tests.items()},
                        n=info.get("n")))
    s = pca.summary()
    lines.append(result(BENCH, "pca_explained_variance", s["mean"], min=s["min"], max=s["max"],
                        n_components=s["n_components"], embed_dim=int(pca.table["n_features"].iloc[0]),
                        folds=len(pca.table)))
    return lines


@register(BENCH, "BUSI box ROIs: deep + radiomics, fusion (early / late / stacking) chosen per fold by inner "
                 "validation, vs radiomics alone, same folds")
def busi_dlr_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the benchmark's result lines (see the module docstring)."""
    from her2dlr.bench.breast_usg import labelled_cases
    from her2dlr.bench.busi_radiomics import default_work_dir, roi_features
    from her2dlr.bench.deep_benches import (
        BUSI_DEEP_ARCH,
        _busi_manifest,
        busi_deep_dir,
    )
    from her2dlr.deep.checkpoints import find_fold_checkpoints
    from her2dlr.deep.dlr import deep_signature, late_dlr, run_dlr_cv
    from her2dlr.deep.dlr_fusion import choose_fusion
    from her2dlr.deep.features import extract_fold_features, in_fold_pca
    from her2dlr.learn.cv import run_outer_cv
    from her2dlr.learn.settings import DEFAULT_SELECTION
    from her2dlr.learn.tuning import SearchSettings

    data = require_data(opts, BENCH, "the BUSI folder with benign/, malignant/, normal/")
    start = time.perf_counter()
    deep_work = busi_deep_dir(opts)
    deep_work.mkdir(parents=True, exist_ok=True)
    manifest = labelled_cases(_busi_manifest(data, deep_work, opts.n_jobs))
    repeats = [0] if opts.quick else list(range(len(manifest.fold_columns)))
    folder = deep_work / BUSI_DEEP_ARCH
    trained_now = False
    if not _checkpoints_ready(folder, repeats):
        train_busi_deep(opts, data, repeats)
        trained_now = True
    seconds_training = time.perf_counter() - start if trained_now else 0.0
    if opts.quick:
        keep = [c for c in manifest.table.columns if not str(c).startswith("fold_r") or c == "fold_r0"]
        manifest = manifest.copy(manifest.table[keep])

    t0 = time.perf_counter()
    radiomics, manifest, _ = roi_features(manifest, "bbox", "us2d", default_work_dir(opts) / "cache", opts.n_jobs,
                                          bench=BENCH)
    seconds_radiomics = time.perf_counter() - t0

    t0 = time.perf_counter()
    checkpoints = find_fold_checkpoints(folder, manifest=manifest)
    checkpoints = {f: c for f, c in checkpoints.items() if int(f[1:].partition("f")[0]) in repeats}
    folds = extract_fold_features(checkpoints, manifest, n_jobs=opts.n_jobs)
    pca = in_fold_pca(folds, manifest, n_components=N_COMPONENTS)
    seconds_features = time.perf_counter() - t0

    search = SearchSettings(inner_splits=5, n_jobs=1, random_state=opts.seed)
    common: dict[str, Any] = {"model": DLR_MODEL, "selection": DEFAULT_SELECTION, "search": search,
                              "n_jobs": opts.n_jobs}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dlr = run_dlr_cv(folds, radiomics, manifest, n_components=N_COMPONENTS, model_name=f"dlr-{DLR_MODEL}",
                         **common)
        seconds_dlr = time.perf_counter() - t0
        rad = run_outer_cv(radiomics, manifest, model_name=f"radiomics_box-{DLR_MODEL}", **common)
        deep = run_dlr_cv(folds, None, manifest, n_components=N_COMPONENTS, model_name=f"deep-{DLR_MODEL}", **common)
    signature = deep_signature(folds, manifest)
    late = late_dlr(signature, rad)
    chosen = choose_fusion(dlr, rad, folds, name=f"dlr-chosen-{DLR_MODEL}", seed=opts.seed)
    seconds_models = time.perf_counter() - t0

    from her2dlr.io.atomic import write_parquet_atomic

    models = [dlr, rad, deep, signature, late, chosen.result]
    write_parquet_atomic(pd.concat([r.predictions for r in models], ignore_index=True),
                         deep_work.parent / "busi-dlr" / ("predictions_quick.parquet" if opts.quick
                                                          else "predictions.parquet"), index=False)
    saved = pd.read_parquet(folder / "predictions.parquet")
    info = {"n": len(manifest.table), "positives": int(manifest.table["label"].sum()), "repeats": len(repeats),
            "folds": 5, "classifier": DLR_MODEL, "roi": "box", "quick": opts.quick}
    yield from dlr_lines({"dlr": dlr, "radiomics_box": rad, "deep_features": deep, "deep_signature": signature,
                          "late": late, "chosen": chosen}, saved_predictions=saved, pca=pca, info=info,
                         deep_model=f"{BUSI_DEEP_ARCH} (out-of-fold probability)")
    total = time.perf_counter() - start
    yield result(BENCH, "seconds", round(total, 1), seconds=round(total, 1), seconds_models=round(seconds_models, 1),
                 seconds_dlr=round(seconds_dlr, 1), seconds_radiomics=round(seconds_radiomics, 1),
                 seconds_deep_features=round(seconds_features, 1), seconds_training=round(seconds_training, 1),
                 trained_networks=trained_now, n_jobs=opts.n_jobs)
