"""Benchmark ``torchrun``: the seed-000 network and the segmentation U-Net trained by one and by two processes.

``her2dlr bench torchrun [--quick] [--seed N]``

Both runs go through the launcher a user types, ``python -m torch.distributed.run --standalone
--nproc_per_node P`` (P = 1, then 2), each process running this module's :func:`run_worker` with
``distributed=True`` (gloo on the CPU, NCCL on GPUs). Same synthetic cases (speckled images with
an elliptic lesion, smooth or rough inside: :func:`her2dlr.bench.serve_benches.lesion_case`), same
seed, same effective batch (each of two processes takes half), and one torch thread per process:
what is compared is the number of processes (one per GPU on a GPU server), not threads. One
process with two threads is no fair baseline on a shared machine: threads that wait for busy
cores slow small convolutions down many-fold (measured here at load 8.8: 2.7 s per epoch of the
quick seed-000 run with two threads, against 0.24 s for two one-thread processes).

Lines: ``auc_1_process`` / ``auc_2_processes``: AUC of the seed-000 network (``densenet3block``,
mask ROIs) on held-out synthetic cases; ``dice_1_process`` / ``dice_2_processes``: mean Dice of
the U-Net's thresholded output on held-out images (at the network's input size);
``seconds_per_epoch_1`` / ``seconds_per_epoch_2`` for each network (``network`` key): median wall
time of an epoch (training and validation) after the first; ``seconds`` of each launch (process
start and imports included). Each line carries the 1-minute load average before the run: two
processes can only be faster where two cores are idle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.bench import BenchOptions, register, result

__all__ = ["run_worker", "synthetic_lesions", "torchrun_bench"]

NAME = "torchrun"
LAUNCH_TIMEOUT_S = 1200
THREADS_PER_PROCESS = 1


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"n_train": 64, "n_test": 32, "deep_size": 32, "deep_epochs": 4, "deep_batch": 16,
                "deep_options": {"growth_rate": 4, "block_layers": [1, 1, 2]}, "seg_size": 32, "seg_epochs": 6,
                "seg_batch": 8, "seg_features": [8, 16, 32]}
    return {"n_train": 160, "n_test": 80, "deep_size": 32, "deep_epochs": 8, "deep_batch": 16, "deep_options": {},
            "seg_size": 64, "seg_epochs": 12, "seg_batch": 8, "seg_features": [16, 32, 64, 128]}


def synthetic_lesions(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """``n`` speckled images with an elliptic lesion (rough inside for label 1, smooth for 0), masks and labels."""
    from her2dlr.bench.serve_benches import lesion_case

    labels = np.arange(n) % 2
    pairs = [lesion_case(seed * 100_000 + i, bool(lab)) for i, lab in enumerate(labels)]
    return [p[0] for p in pairs], [p[1] for p in pairs], labels


def _deep_rois(images: list[np.ndarray], masks: list[np.ndarray], size: int) -> np.ndarray:
    from her2dlr.imaging.roi import RoiSpec, prepare_roi

    spec = RoiSpec(size=size)
    return np.stack([prepare_roi(img, mask=m > 0, spec=spec) for img, m in zip(images, masks)]).astype(np.float32)


def _epoch_seconds(history: Any) -> float:
    secs = history["seconds"].to_numpy()
    return float(np.median(secs[1:] if len(secs) > 1 else secs))


def run_worker(out: Path, *, quick: bool, seed: int, threads: int) -> None:
    """One launched process: train both networks with DistributedDataParallel; rank 0 writes ``out/result.json``."""
    from sklearn.metrics import roc_auc_score

    from her2dlr.deep.train import TrainSettings, predict_proba, train_network
    from her2dlr.imaging.distributed import is_main_process, launched_world_size
    from her2dlr.io.atomic import write_text_atomic
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from her2dlr.segment.infer import predict_lesion_prob
    from her2dlr.segment.postprocess import dice_score
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    z = _sizes(quick)
    world = launched_world_size()
    images, masks, labels = synthetic_lesions(z["n_train"], seed)
    test_images, test_masks, test_labels = synthetic_lesions(z["n_test"], seed + 1)

    deep_settings = TrainSettings(image_size=z["deep_size"], arch_options=z["deep_options"], epochs=z["deep_epochs"],
                                  batch_size=max(1, z["deep_batch"] // world), patience=0, seed=seed,
                                  num_threads=threads, progress=False, distributed=True)
    deep = train_network(_deep_rois(images, masks, z["deep_size"]), labels, settings=deep_settings)
    prob = predict_proba(deep.model, _deep_rois(test_images, test_masks, z["deep_size"]))[:, 1]
    auc = float(roc_auc_score(test_labels, prob))

    spec = SegSpec(size=z["seg_size"])
    X, Y, _ = load_seg_pairs(images, masks, spec=spec, progress=False)
    seg_settings = SegTrainSettings(image_size=z["seg_size"], features=z["seg_features"], epochs=z["seg_epochs"],
                                    batch_size=max(1, z["seg_batch"] // world), lr=3e-3, patience=0, seed=seed,
                                    num_threads=threads, progress=False, distributed=True)
    seg = train_segmenter(X, Y, settings=seg_settings)
    X_test, Y_test, _ = load_seg_pairs(test_images, test_masks, spec=spec, progress=False)
    seg_prob = predict_lesion_prob(seg.model, X_test)
    dice = float(np.mean([dice_score(p >= 0.5, t > 0) for p, t in zip(seg_prob, Y_test)]))

    if is_main_process():
        write_text_atomic(out / "result.json", json.dumps({
            "world": world, "threads_per_process": threads, "auc": auc, "dice": dice,
            "deep_seconds_per_epoch": _epoch_seconds(deep.history), "seg_seconds_per_epoch": _epoch_seconds(seg.history),
            "deep_val_auc": float(deep.history["val_auc"].iloc[-1]), "seg_val_dice": float(seg.val_dice),
            "device": deep.device}))


def _launch(nproc: int, out: Path, opts: BenchOptions, threads: int) -> tuple[dict[str, Any], float]:
    import her2dlr

    src = str(Path(her2dlr.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "her2dlr.bench.torchrun_benches", str(out), "--seed", str(opts.seed), "--threads", str(threads)]
    if opts.quick:
        cmd.append("--quick")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"torchrun with {nproc} process(es) failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    return json.loads((out / "result.json").read_text()), seconds


@register(NAME, "Seed-000 network and U-Net trained by 1 vs 2 torchrun processes (DDP): AUC, Dice, seconds per epoch")
def torchrun_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``auc_1_process``, ``auc_2_processes``, ``dice_1_process``, ``dice_2_processes``, ``seconds_per_epoch_*``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    runs: dict[int, tuple[dict[str, Any], float]] = {}
    with tempfile.TemporaryDirectory(prefix="her2dlr-torchrun-") as tmp:
        for nproc in (1, 2):
            out = Path(tmp) / f"p{nproc}"
            out.mkdir()
            runs[nproc] = _launch(nproc, out, opts, THREADS_PER_PROCESS)
    z = _sizes(opts.quick)
    common = {"load_1min": round(load, 2), "cpus": cpus, "device": runs[1][0]["device"], "quick": opts.quick}
    for nproc, label in ((1, "1_process"), (2, "2_processes")):
        res, seconds = runs[nproc]
        info = {**common, "processes": nproc, "threads_per_process": res["threads_per_process"]}
        yield result(NAME, f"auc_{label}", round(res["auc"], 4), n=z["n_test"], network="densenet3block",
                     val_auc=round(res["deep_val_auc"], 4), **info)
        yield result(NAME, f"dice_{label}", round(res["dice"], 4), n=z["n_test"], network="unet",
                     val_dice=round(res["seg_val_dice"], 4), **info)
        yield result(NAME, f"seconds_per_epoch_{nproc}", round(res["deep_seconds_per_epoch"], 3),
                     network="densenet3block", n=z["n_train"], **info)
        yield result(NAME, f"seconds_per_epoch_{nproc}", round(res["seg_seconds_per_epoch"], 3), network="unet",
                     n=z["n_train"], **info)
        yield result(NAME, f"seconds_launch_{nproc}", round(seconds, 1), **info)


def _main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A torchrun worker of `her2dlr bench torchrun`.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # few-cases notes are expected on the quick data
    run_worker(args.out, quick=args.quick, seed=args.seed, threads=args.threads)


if __name__ == "__main__":
    _main(sys.argv[1:])
