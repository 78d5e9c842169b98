"""Deep learning benchmarks: ``busi-deep`` (quality) and ``deep-speed`` (throughput, latency).

``her2dlr bench busi-deep --data ../shared/data/busi [--quick] [--work-dir DIR]``

BUSI benign vs malignant (normal images are not labelled), the default cohort build of
:func:`her2dlr.bench.cohort_benches.busi_study` (near-duplicates grouped by QC, repeated 3 x
stratified group 5-fold CV). The seed-000 network (``densenet3block``) is trained from scratch
on box ROIs - the bounding rectangle of each mask plus a margin, padded at the border, resized
directly (bilinear), z-scored - with the toolkit's defaults: class-weighted cross-entropy,
AdamW (lr 1e-3), cosine schedule, at most 40 epochs, early stopping (patience 10) on a 20 %
inner validation split of each training fold, on-the-fly augmentation.

Recipes (:data:`BUSI_DEEP_RECIPES`, fixed before any outer-fold score of them was seen, by
this principle: today's network, then the same network with the standard from-scratch
regularisers for a few hundred images, then the same with more context around the lesion):

1. ``seed000``: 64 x 64, 10 px margin, the defaults above (the network measured at 0.870);
2. ``regularised``: as 1 plus mixup (Beta(0.2, 0.2)), label smoothing 0.1, an exponential
   moving average of the weights (decay 0.99, validated and kept) and test-time left-right flips;
3. ``context96``: as 2 on 96 x 96 inputs whose margin is a quarter of the box's side on every
   side (surrounding tissue, margins and posterior shadowing in proportion to the lesion).

In each outer fold the three are trained on the same inner training part and the one with the
best inner validation AUC is the fold's network as trained (:mod:`her2dlr.deep.recipes`); the
outer test fold is predicted only by that network. ``recipe_choice`` lines name the winner of
every fold with the inner scores. Candidates already trained in the work folder with the same
settings are reloaded (interrupted ones resumed), so a stopped run goes on where it stopped.

Metrics: ``auc``: the mean over repetitions of the pooled out-of-fold AUC (every case
predicted once per repetition by the fold network that did not see it); ``ci_low``/``ci_high``
the mean per-repetition DeLong limits, ``auc_min``/``auc_max`` the range over repetitions,
``auc_fold_mean`` the mean of the per-fold AUCs. ``sensitivity``/``specificity`` at each fold's
Youden threshold (chosen on its inner validation predictions). ``seconds_per_fold``: mean
wall time of one fold (training, early stopping, predictions); ``seconds`` the whole run.
``--quick``: repetition 0 only (5 folds).

Work folder (``--work-dir``, default a fixed folder in the system temp directory), reused by
the ``busi-dlr`` benchmark::

    <work_dir>/busi-deep/cohort/manifest.parquet      the cohort (rebuilt only when absent)
    <work_dir>/busi-deep/rois_64.npz, rois_96_f0.25.npz   the prepared ROIs of each recipe (cache)
    <work_dir>/busi-deep/densenet3block/predictions.parquet   out-of-fold (test), inner validation
                                                      (train_oof) and training predictions
    <work_dir>/busi-deep/densenet3block/<fold>/best.pt       each fold's chosen network (r0f0 .. r2f4)
    <work_dir>/busi-deep/densenet3block/<fold>/recipes/<name>/best.pt   every candidate
    <work_dir>/busi-deep/densenet3block/{metrics,folds,history}.csv, settings.json

``her2dlr bench deep-speed``: synthetic 64 x 64 ROIs, the seed-000 network, at most 2 torch
threads (fewer when the machine is busy; the line says how many). ``train_images_per_s``:
training throughput (augmentation, forward, backward, AdamW; batch 32; first epoch excluded);
``infer_ms_per_image``: batch inference (batch 64); ``infer_ms_single``: one image at a time
(median); ``predict_ms_per_image``: :func:`her2dlr.deep.cv.predict_images` from PNG files and
masks (reading, ROI, inference).
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.cohort_benches import busi_study, require_data
from her2dlr.runfolder import BEST_CHECKPOINT

__all__ = ["BUSI_DEEP_ARCH", "BUSI_DEEP_RECIPES", "busi_deep_bench", "busi_deep_dir", "deep_speed_bench",
           "run_busi_deep"]

BUSI_DEEP_ARCH = "densenet3block"
_REGULARISED = {"mixup": 0.2, "label_smoothing": 0.1, "ema": 0.99, "tta_flips": True}
#: The candidate recipes of busi-deep (see the module docstring), in order: ties go to the first.
BUSI_DEEP_RECIPES: list[dict[str, Any]] = [
    {"name": "seed000"},
    {"name": "regularised", **_REGULARISED},
    {"name": "context96", **_REGULARISED, "image_size": 96, "margin": 0, "margin_fraction": 0.25},
]


def busi_deep_dir(opts: BenchOptions) -> Path:
    """``<work_dir>/busi-deep`` (default work dir: a fixed folder in the system temp directory)."""
    base = Path(opts.work_dir) if opts.work_dir else Path(tempfile.gettempdir()) / "her2dlr-bench"
    return base / "busi-deep"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _busi_manifest(data: Path, work: Path, n_jobs: int) -> Any:
    from her2dlr.cohort.build import build_cohort, manifest_path
    from her2dlr.cohort.manifest import Manifest

    study = busi_study(data, work)
    path = manifest_path(study)
    stamp = study.paths.cohort / "source.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("data") == str(data):
        return Manifest.load(path)
    manifest = build_cohort(study, n_jobs=n_jobs, progress=False).manifest
    stamp.write_text(json.dumps({"data": str(data)}))
    return manifest


def _cached_rois(table: Any, spec: Any, work: Path, n_jobs: int) -> np.ndarray:
    from her2dlr.deep.data import manifest_rois

    path = work / (f"rois_{spec.size}.npz" if not spec.margin_fraction else
                   f"rois_{spec.size}_f{spec.margin_fraction:g}.npz")
    key = json.dumps({"spec": spec.to_dict(), "cases": table["case_id"].tolist(),
                      "images": table["image"].astype(str).tolist()}, sort_keys=True)
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                return z["rois"]
    rois = manifest_rois(table, spec, n_jobs=n_jobs)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, rois=rois, key=np.array(key))
    tmp.replace(path)
    return rois


def run_busi_deep(opts: BenchOptions, data: Path, repeats: list[int], *, resume: bool = False) -> tuple[Any, float]:
    """Train busi-deep's fold networks of ``repeats`` (recipes chosen per fold); the result and the prep seconds.

    Writes ``<work_dir>/busi-deep/densenet3block/`` (see the module docstring); ``resume``
    reloads finished candidates and resumes interrupted ones.
    """
    from her2dlr.deep.cv import deep_table, run_deep_cv
    from her2dlr.deep.recipes import recipes_from_dicts
    from her2dlr.deep.train import TrainSettings
    from her2dlr.imaging.roi import RoiSpec

    work = busi_deep_dir(opts)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    manifest = _busi_manifest(data, work, opts.n_jobs)
    spec = RoiSpec(size=64, margin=10)
    settings = TrainSettings(arch=BUSI_DEEP_ARCH, image_size=64, seed=opts.seed, progress=False)
    recipes = recipes_from_dicts(BUSI_DEEP_RECIPES)
    table = deep_table(manifest)
    prepared = {}
    for recipe in recipes:
        roi = recipe.apply(settings, spec)[1]
        if roi not in prepared:
            prepared[roi] = _cached_rois(table, roi, work, opts.n_jobs)
    seconds_prep = time.perf_counter() - start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = run_deep_cv(manifest, settings=settings, roi=spec, scheme="kfold", out_dir=work / BUSI_DEEP_ARCH,
                          rois=prepared[spec], repeats=repeats, progress=False, resume=resume, recipes=recipes,
                          recipe_rois=prepared)
    return res, seconds_prep


@register("busi-deep", "BUSI benign vs malignant: seed-000 3-block DenseNet, recipe chosen per fold on the inner "
                       "validation split, box ROIs, repeated group 5-fold CV")
def busi_deep_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``auc`` (with CI), ``sensitivity``, ``specificity``, ``seconds_per_fold`` (see the module docstring)."""
    from sklearn.metrics import roc_auc_score


    name = "busi-deep"
    data = require_data(opts, name, "the BUSI folder with benign/, malignant/, normal/")
    start = time.perf_counter()
    manifest = _busi_manifest(data, busi_deep_dir(opts), opts.n_jobs)
    repeats = [0] if opts.quick else list(range(len(manifest.fold_columns)))
    from her2dlr.errors import InputError

    try:  # finished candidates of an earlier run with the same settings are reloaded, not retrained
        res, seconds_prep = run_busi_deep(opts, data, repeats, resume=True)
    except InputError:
        res, seconds_prep = run_busi_deep(opts, data, repeats, resume=False)
    seconds = time.perf_counter() - start - seconds_prep
    m = res.metrics
    row = m[(m["split"] == "test") & (m["scope"] == "mean")].iloc[0]
    test = res.predictions[res.predictions["split"] == "test"]
    fold_aucs = [roc_auc_score(f["label"], f["prob"]) for _, f in test.groupby("fold")]
    folds = res.fold_table()
    info = {"n": int(row["n"]), "n_pos": int(row["n_pos"]), "repeats": len(repeats), "folds": len(folds),
            "arch": BUSI_DEEP_ARCH, "recipes": [r["name"] for r in BUSI_DEEP_RECIPES]}
    chosen = folds["recipe"].value_counts().to_dict()
    yield result(name, "auc", float(row["auc"]), ci_low=float(row["ci_low"]), ci_high=float(row["ci_high"]),
                 auc_min=float(row["auc_min"]), auc_max=float(row["auc_max"]),
                 auc_fold_mean=float(np.mean(fold_aucs)), scope="mean over repetitions of pooled out-of-fold AUC",
                 **info, seconds=round(seconds, 1), peak_mb=round(_peak_mb(), 1))
    yield result(name, "sensitivity", float(row["sensitivity"]), **info)
    yield result(name, "specificity", float(row["specificity"]), **info)
    yield result(name, "recipe_choice", chosen, folds=len(folds), n=info["n"],
                 by_fold={f.fold: {"recipe": f.recipe, "inner_val_auc": {k: round(v, 4) for k, v in
                                                                         f.recipe_scores.items()}}
                          for f in res.folds})
    yield result(name, "seconds_per_fold", round(float(folds["seconds"].mean()), 1), n=info["n"],
                 folds=len(folds), mean_epochs=round(float(folds["epochs_run"].mean()), 1),
                 mean_best_epoch=round(float(folds["best_epoch"].mean()), 1),
                 seconds=round(seconds, 1), seconds_prep=round(seconds_prep, 1))


@register("deep-speed", "Seed-000 network, 64x64, CPU: train_images_per_s, infer_ms_per_image (batch and single)")
def deep_speed_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``train_images_per_s``, ``infer_ms_per_image``, ``infer_ms_single``, ``predict_ms_per_image``."""
    import torch

    from her2dlr.deep.data import torch_threads
    from her2dlr.deep.networks import build_network
    from her2dlr.deep.train import TrainSettings, default_threads, predict_proba, train_network

    name = "deep-speed"
    threads = min(2, default_threads())
    rng = np.random.default_rng(opts.seed)
    n_train = 128 if opts.quick else 384
    epochs = 2 if opts.quick else 3
    rois = rng.normal(size=(n_train, 1, 64, 64)).astype(np.float32)
    labels = np.arange(n_train) % 2
    settings = TrainSettings(arch=BUSI_DEEP_ARCH, image_size=64, epochs=epochs, batch_size=32, patience=0,
                             min_class_cases=n_train, seed=opts.seed, device="cpu", num_threads=threads,
                             progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no inner validation on purpose
        res = train_network(rois, labels, settings=settings)
    secs = res.history["seconds"].to_numpy()[1:]
    info = {"threads": threads, "image_size": 64, "arch": BUSI_DEEP_ARCH, "device": "cpu"}
    yield result(name, "train_images_per_s", round(n_train * len(secs) / float(secs.sum()), 1), n=n_train,
                 batch_size=32, epochs_timed=len(secs), **info)

    model = build_network(BUSI_DEEP_ARCH, image_size=64).eval()
    n_inf = 256 if opts.quick else 1024
    batch = rng.normal(size=(n_inf, 1, 64, 64)).astype(np.float32)
    with torch_threads(threads):
        predict_proba(model, batch[:64], batch_size=64)  # warm-up
        t0 = time.perf_counter()
        predict_proba(model, batch, batch_size=64)
        per_image = (time.perf_counter() - t0) * 1000 / n_inf
        single = []
        x = torch.as_tensor(batch[:1])
        with torch.inference_mode():
            for i in range(10 + (20 if opts.quick else 100)):
                t0 = time.perf_counter()
                model(x)
                if i >= 10:
                    single.append((time.perf_counter() - t0) * 1000)
    yield result(name, "infer_ms_per_image", round(per_image, 3), n=n_inf, batch_size=64, **info)
    yield result(name, "infer_ms_single", round(float(np.median(single)), 3), n=len(single), batch_size=1, **info)

    from PIL import Image

    from her2dlr.deep.cv import predict_images
    from her2dlr.deep.train import make_checkpoint, save_checkpoint

    with tempfile.TemporaryDirectory() as tmp, torch_threads(threads):
        folder = Path(tmp)
        ckpt = save_checkpoint(make_checkpoint(model, settings, epoch=0, kind="best"), folder / BEST_CHECKPOINT)
        images, masks = [], []
        n_files = 16 if opts.quick else 64
        for i in range(n_files):
            img = rng.integers(0, 255, size=(360, 480), dtype=np.uint8)
            mask = np.zeros((360, 480), dtype=np.uint8)
            mask[100:200, 150:300] = 255
            images.append(folder / f"img{i}.png")
            masks.append(folder / f"img{i}_mask.png")
            Image.fromarray(img).save(images[-1])
            Image.fromarray(mask).save(masks[-1])
        predict_images(ckpt, images[:2], masks[:2])  # warm-up
        t0 = time.perf_counter()
        predict_images(ckpt, images, masks)
        per_file = (time.perf_counter() - t0) * 1000 / n_files
    yield result(name, "predict_ms_per_image", round(per_file, 2), n=n_files, image="480x360 PNG + mask", **info,
                 peak_mb=round(_peak_mb(), 1))
