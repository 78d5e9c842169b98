"""Segmentation benchmark ``seg-speed``: inference latency and training throughput on the CPU.

``her2dlr bench seg-speed [--quick]``: synthetic inputs, the default U-Net
(:func:`her2dlr.segment.networks.build_seg_network`, widths 16-256, five levels), at most 2 torch
threads (fewer when the machine is busy; each line says how many).

* ``infer_ms_per_image``: :func:`her2dlr.segment.infer.segment_images` on one 480 x 360 image at a
  time (batch 1) with a 128 px network - input preparation, network, paste-back to full
  resolution, post-processing - median over repeats (target <= 30 ms); ``forward_ms`` in the
  same line is the network alone;
* ``infer_ms_per_image_box_prompt``: the same with a box-prompted network (crop around a box,
  two input channels);
* ``infer_s_per_volume``: a 3D U-Net at 64^3 on one 48 x 128 x 128 volume (batch 1), median;
* ``train_images_per_s``: :func:`her2dlr.segment.train.train_segmenter` at 128 px (augmentation,
  forward, backward, AdamW; batch 16; no validation split; first epoch excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from her2dlr.bench import BenchOptions, register, result

__all__ = ["seg_speed_bench"]

NAME = "seg-speed"


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def _image(rng: np.random.Generator, shape: tuple[int, ...], centre: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Speckle with a bright ellipse (ellipsoid) of a fifth of each side around ``centre``; and its mask."""
    centre = [s / 2 for s in shape] if centre is None else centre
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    inside = sum(((g - c) / (s / 5)) ** 2 for g, c, s in zip(grids, centre, shape)) <= 1
    img = rng.gamma(2.0, 20.0, size=shape)
    img[inside] += 100
    return np.clip(img, 0, 255).astype(np.float32), inside.astype(np.uint8)


def _trained(rng: np.random.Generator, spec: Any, threads: int, opts: BenchOptions) -> tuple[Any, float, int, int]:
    """A U-Net trained briefly on synthetic lesions (so inference sees a real mask); images/s of the timed epochs."""
    from her2dlr.segment.data import load_seg_pairs
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    n_train = 32 if opts.quick else 96
    epochs = 2 if opts.quick else 4
    pairs = [_image(rng, (128, 128), rng.uniform(40, 88, 2)) for _ in range(n_train)]
    X, Y, _ = load_seg_pairs([p[0] for p in pairs], [p[1] for p in pairs], spec=spec, progress=False)
    settings = SegTrainSettings(image_size=spec.size, box_prompt=spec.box_prompt, epochs=epochs, batch_size=16,
                                lr=3e-3, patience=0, min_val_cases=n_train, seed=opts.seed, device="cpu",
                                num_threads=threads, progress=False)
    res = train_segmenter(X, Y, settings=settings)  # no validation split: every epoch is training only
    secs = res.history["seconds"].to_numpy()[1:]
    return res.model, n_train * len(secs) / float(secs.sum()), n_train, len(secs)


@register(NAME, "Segmentation U-Net, CPU: infer_ms_per_image (128 px, target 30), box prompt, 64^3 volume, training")
def seg_speed_bench(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``infer_ms_per_image``, ``infer_ms_per_image_box_prompt``, ``infer_s_per_volume``, ``train_images_per_s``."""
    import torch

    from her2dlr.imaging.torchutil import default_threads, torch_threads
    from her2dlr.segment.data import SegSpec
    from her2dlr.segment.infer import segment_images
    from her2dlr.segment.networks import build_seg_network

    threads = min(2, default_threads())
    rng = np.random.default_rng(opts.seed)
    repeats = 10 if opts.quick else 40
    info = {"threads": threads, "arch": "unet", "device": "cpu"}
    torch.manual_seed(opts.seed)
    image, _ = _image(rng, (360, 480))
    lines = []
    for prompt, metric in ((False, "infer_ms_per_image"), (True, "infer_ms_per_image_box_prompt")):
        spec = SegSpec(size=128, box_prompt=prompt)
        net, per_s, n_train, timed = _trained(rng, spec, threads, opts)
        if not prompt:
            lines.append(result(NAME, "train_images_per_s", round(per_s, 1), n=n_train, batch_size=16,
                                epochs_timed=timed, image_size=128, **info))
        boxes = [(144, 108, 192, 144)] if prompt else None  # the ellipse's bounding box
        with torch_threads(threads):
            ms = _median_ms(lambda net=net, spec=spec, boxes=boxes: segment_images(
                net, [image], boxes=boxes, spec=spec, batch_size=1, device="cpu", progress=False), repeats)
            x = torch.zeros((1, spec.in_channels, 128, 128))
            with torch.inference_mode():
                forward = _median_ms(lambda net=net, x=x: net(x), repeats)
        extra = {"target": 30} if not prompt else {}
        yield result(NAME, metric, round(ms, 2), **extra, forward_ms=round(forward, 2), image_size=128,
                     image="480x360", batch_size=1, n=repeats, **info)

    spec3 = SegSpec(size=64, spatial_dims=3)
    net3 = build_seg_network(spatial_dims=3).eval()
    volume, _ = _image(rng, (48, 128, 128))
    reps3 = 2 if opts.quick else 5
    with torch_threads(threads):
        ms3 = _median_ms(lambda: segment_images(net3, [volume], spec=spec3, batch_size=1, device="cpu",
                                                progress=False), reps3, warmup=1)
    yield result(NAME, "infer_s_per_volume", round(ms3 / 1000, 3), image_size=64, image="128x128x48",
                 batch_size=1, n=reps3, weights="untrained", **info)
    yield from lines
