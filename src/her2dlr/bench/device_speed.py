"""Benchmark ``device-speed``: training and inference speed of the two networks on the CPU and on one GPU.

``her2dlr bench device-speed [--quick]`` measures the CPU, then the first CUDA GPU when one is
visible (else a line ``gpu_available`` = 0 says why), then the GPU's speed-up. ``python -m
her2dlr.bench.device_speed --device cpu|cuda [--quick]`` measures one device, and ``--compare
CPU.jsonl GPU.jsonl`` prints the speed-ups of two such runs (what ``benchmarks/gpu_check.sh``
runs, each device under its own time limit).

Per network - the seed-000 network (``densenet3block``, 64 px ROIs) and the segmentation U-Net
(128 px, default widths) - on synthetic lesions
(:func:`her2dlr.bench.torchrun_benches.synthetic_lesions`):

* ``train_seconds_per_epoch`` and ``train_images_per_s``: :func:`her2dlr.deep.train.train_network`
  / :func:`her2dlr.segment.train.train_segmenter` (augmentation, forward, backward, AdamW; no
  validation split), median epoch after the first; mixed precision on the GPU (``amp``);
* ``infer_images_per_s``: batched inference of prepared inputs (batch 64 / 32), mixed precision
  on the GPU, after a warm-up.

CPU threads: the idle CPUs (:func:`her2dlr.imaging.torchutil.default_threads`), said in each line.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from her2dlr.bench import BenchOptions, dumps, register, result

__all__ = ["device_lines", "device_speed_bench", "gpu_note", "speedup_lines"]

NAME = "device-speed"


def gpu_note() -> str | None:
    """Why no CUDA GPU can be used (None when one can)."""
    import torch

    if torch.cuda.is_available():
        return None
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    return (f"no CUDA GPU is visible to torch {torch.__version__} ({build}); install the CUDA wheel of torch "
            "for the GPU (see the README) and run again")


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"n_train": 64, "epochs": 2, "n_infer": 128}
    return {"n_train": 256, "epochs": 3, "n_infer": 1024}


def _images_per_s(fn: Any, n: int, device: str) -> float:
    import torch

    fn()  # warm-up (cuDNN picks its kernels, memory is allocated)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def _median_epoch(history: Any) -> float:
    secs = history["seconds"].to_numpy()
    return float(np.median(secs[1:] if len(secs) > 1 else secs))


def device_lines(device: str, *, quick: bool = False, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The speed lines of one device (``"cpu"`` or ``"cuda"``) for both networks."""
    import torch

    from her2dlr.bench.torchrun_benches import synthetic_lesions
    from her2dlr.deep.networks import build_network
    from her2dlr.deep.train import TrainSettings, predict_proba, train_network
    from her2dlr.imaging.roi import RoiSpec, prepare_roi
    from her2dlr.imaging.torchutil import default_threads, torch_threads
    from her2dlr.segment.data import SegSpec, load_seg_pairs
    from her2dlr.segment.infer import predict_lesion_prob
    from her2dlr.segment.networks import build_seg_network
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    z = _sizes(quick)
    threads = default_threads()
    info: dict[str, Any] = {"device": device, "threads": threads, "amp": device != "cpu"}
    if device != "cpu":
        info["gpu"] = torch.cuda.get_device_name(0)
    images, masks, labels = synthetic_lesions(z["n_train"], seed)

    spec = RoiSpec(size=64)
    rois = np.stack([prepare_roi(img, mask=m > 0, spec=spec) for img, m in zip(images, masks)]).astype(np.float32)
    settings = TrainSettings(image_size=64, epochs=z["epochs"], batch_size=32, patience=0, min_class_cases=z["n_train"],
                             seed=seed, device=device, num_threads=threads, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no inner validation split, on purpose
        res = train_network(rois, labels, settings=settings)
    epoch = _median_epoch(res.history)
    net_info = {**info, "network": "densenet3block", "image_size": 64}
    yield result(NAME, "train_seconds_per_epoch", round(epoch, 3), n=z["n_train"], batch_size=32, **net_info)
    yield result(NAME, "train_images_per_s", round(z["n_train"] / epoch, 1), n=z["n_train"], **net_info)
    model = build_network("densenet3block", image_size=64).to(device).eval()
    batch = np.resize(rois, (z["n_infer"], *rois.shape[1:]))
    with torch_threads(threads):
        speed = _images_per_s(lambda: predict_proba(model, batch, batch_size=64, device=device), z["n_infer"], device)
    yield result(NAME, "infer_images_per_s", round(speed, 1), n=z["n_infer"], batch_size=64, **net_info)

    seg_spec = SegSpec(size=128)
    X, Y, _ = load_seg_pairs(images, masks, spec=seg_spec, progress=False)
    seg_settings = SegTrainSettings(image_size=128, epochs=z["epochs"], batch_size=16, patience=0,
                                    min_val_cases=z["n_train"], seed=seed, device=device, num_threads=threads,
                                    progress=False)
    seg = train_segmenter(X, Y, settings=seg_settings)  # no validation split: every epoch is training only
    epoch = _median_epoch(seg.history)
    net_info = {**info, "network": "unet", "image_size": 128}
    yield result(NAME, "train_seconds_per_epoch", round(epoch, 3), n=z["n_train"], batch_size=16, **net_info)
    yield result(NAME, "train_images_per_s", round(z["n_train"] / epoch, 1), n=z["n_train"], **net_info)
    unet = build_seg_network("unet", spatial_dims=2, in_channels=X.shape[1]).to(device).eval()
    X_inf = np.resize(X, (z["n_infer"] // 4, *X.shape[1:]))
    with torch_threads(threads):
        speed = _images_per_s(lambda: predict_lesion_prob(unet, X_inf, batch_size=32, device=device), len(X_inf),
                              device)
    yield result(NAME, "infer_images_per_s", round(speed, 1), n=len(X_inf), batch_size=32, **net_info)


def speedup_lines(cpu: list[dict[str, Any]], gpu: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """GPU over CPU, per network and measurement (seconds per epoch: CPU / GPU; images per second: GPU / CPU)."""
    by_key = {(line["network"], line["metric"]): line["value"] for line in cpu}
    for line in gpu:
        key = (line["network"], line["metric"])
        if key not in by_key or key[1] == "train_images_per_s" or not line["value"] or not by_key[key]:
            continue
        ratio = by_key[key] / line["value"] if key[1] == "train_seconds_per_epoch" else line["value"] / by_key[key]
        what = "train" if key[1] == "train_seconds_per_epoch" else "infer"
        yield result(NAME, f"gpu_speedup_{what}", round(ratio, 2), network=key[0], gpu=line.get("gpu"))


@register(NAME, "Seed-000 network and U-Net: training s/epoch and inference images/s, CPU vs one GPU (AMP)")
def device_speed_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the CPU lines, the GPU lines (or ``gpu_available`` = 0 and why) and ``gpu_speedup_*``."""
    cpu = []
    for line in device_lines("cpu", quick=opts.quick, seed=opts.seed):
        cpu.append(line)
        yield line
    note = gpu_note()
    if note is not None:
        yield result(NAME, "gpu_available", 0, note=note)
        return
    gpu = []
    for line in device_lines("cuda", quick=opts.quick, seed=opts.seed):
        gpu.append(line)
        yield line
    yield from speedup_lines(cpu, gpu)


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Speed of the two networks on one device (JSON lines).")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare", nargs=2, metavar=("CPU_JSONL", "GPU_JSONL"),
                        help="Print the GPU's speed-ups from the lines of two runs, and nothing else.")
    args = parser.parse_args(argv)
    if args.compare:
        import json
        from pathlib import Path

        cpu, gpu = ([json.loads(t) for t in Path(path).read_text(encoding="utf-8").splitlines() if t.startswith("{")]
                    for path in args.compare)
        for line in speedup_lines([c for c in cpu if "network" in c], [g for g in gpu if "network" in g]):
            print(dumps(line), flush=True)
        return 0
    if args.device == "cuda" and (note := gpu_note()) is not None:
        print(dumps(result(NAME, "gpu_available", 0, note=note)), flush=True)
        return 0
    for line in device_lines(args.device, quick=args.quick, seed=args.seed):
        print(dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
