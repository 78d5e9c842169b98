"""Benchmark ``deep-slices``: 2.5D inputs (k slices as channels) against a 3D cube, through the deep stage.

``her2dlr bench deep-slices [--quick]``

A synthetic DCE cohort (:func:`her2dlr.io.synthetic_dce.simulate_case`, 90 studies, 45 with
``--quick``; HER2-zero / -low / -positive in turn, ``separation=1.0``; the task is HER2-positive
against the rest) gives the post1 - pre subtraction and the lesion mask of each case, as in
``deeptepp-stage``. The same lesions become four network inputs
(:func:`her2dlr.imaging.roi.prepare_roi`, 2-voxel margin, 16 px sides): ``cube`` (16^3, a 3D
network), ``slices5`` and ``slices3`` (5 or 3 slices around the lesion's largest cross-section as
the channels of a 2D network: ``deep.slices``) and ``slice1`` (that slice alone). Each is trained
by :func:`her2dlr.deep.cv.run_deep_cv` on the same 3 outer folds with ``mm_resnet`` of the same
small widths (2D or 3D). One line per input: the out-of-fold AUC with its DeLong CI, the
variant's seconds (preparing its inputs and training every fold) and the inputs' size in MB.
The cohort is simulated, not real: the numbers rank the inputs on this generator only.

Development run (2 shared CPU cores): the full run (90 studies, 30 epochs) gave out-of-fold AUC
cube 0.80 (44 s), slices5 0.51 (7.5 s), slices3 0.68 (14.6 s), slice1 0.58 (10.8 s); ``--quick``
(45 studies, 15 epochs) cube 0.80, slices5 0.63, slices3 0.62, slice1 0.68. The 2D inputs train
3 to 6 times faster, but on this generator (an ellipsoid lesion whose class shows in its 3D
texture and whose enhancement amplitude the per-patch z-score removes) the whole-lesion cube
carries more of the signal than any slab of slices; the 2.5D inputs' CIs overlap each other and
chance. Which input a real cohort needs is a question this benchmark answers for its data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.deeptepp_stage import dealt_folds

BENCH = "deep-slices"
#: Input name -> (spatial_dims, slices).
INPUTS = {"cube": (3, None), "slices5": (2, 5), "slices3": (2, 3), "slice1": (2, 1)}


def _cohort(n: int, seed: int) -> tuple[pd.DataFrame, list[np.ndarray], list[np.ndarray]]:
    """Manifest rows (3 stratified outer folds), subtraction volumes and lesion masks of ``n`` simulated studies."""
    from her2dlr.io.synthetic_dce import simulate_case

    rng = np.random.default_rng(seed)
    her2 = np.arange(n) % 3
    positive = (her2 == 2).astype(int)
    volumes, masks, rows = [], [], []
    for i in range(n):
        case = simulate_case(int(her2[i]), rng, shape=(16, 32, 32))
        volumes.append(case.phases[1].astype(np.float32) - case.phases[0].astype(np.float32))
        masks.append(case.mask)
        rows.append({"case_id": f"s{i:03d}", "patient_id": f"p{i:03d}", "image": f"s{i:03d}", "modality": "MR",
                     "label": int(positive[i])})
    table = pd.DataFrame(rows)
    table["fold_r0"] = dealt_folds(positive, 3, rng)
    return table, volumes, masks


@register(BENCH, "2.5D inputs (k slices as channels of a 2D network) against a 3D cube, synthetic DCE")
def deep_slices(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    import torch

    from her2dlr.deep.cv import run_deep_cv
    from her2dlr.deep.train import TrainSettings
    from her2dlr.evaluate.delong import delong_auc_ci
    from her2dlr.imaging.roi import RoiSpec, prepare_roi

    n = 45 if opts.quick else 90
    epochs = 15 if opts.quick else 30
    table, volumes, masks = _cohort(n, opts.seed)
    threads = torch.get_num_threads()
    for name, (dims, slices) in INPUTS.items():
        start = time.perf_counter()
        roi = RoiSpec(size=16, margin=2, spatial_dims=dims, slices=slices)
        rois = np.stack([prepare_roi(v, mask=m, spec=roi) for v, m in zip(volumes, masks)]).astype(np.float32)
        settings = TrainSettings(arch="mm_resnet", spatial_dims=dims, image_size=16, in_channels=roi.in_channels,
                                 epochs=epochs, batch_size=16, lr=3e-3, patience=8, min_class_cases=4, seed=opts.seed,
                                 device="cpu", progress=False,
                                 arch_options={"widths": (8, 16, 16, 32), "proj_dim": 16})
        run = run_deep_cv(table, settings=settings, roi=roi, rois=rois, progress=False, keep_train=False,
                          model_name=f"deep-mm_resnet-{name}")
        torch.set_num_threads(threads)
        test = run.predictions[run.predictions["split"] == "test"]
        r = delong_auc_ci(test["label"].to_numpy(), test["prob"].to_numpy())
        yield result(BENCH, f"auc_{name}", round(r.auc, 4), ci_low=round(r.ci_low, 4), ci_high=round(r.ci_high, 4),
                     n=len(test), n_positive=int(test["label"].sum()), spatial_dims=dims, slices=slices,
                     input_shape=list(roi.shape), input_mb=round(rois.nbytes / 2**20, 2),
                     seconds=round(time.perf_counter() - start, 1), epochs=epochs)
