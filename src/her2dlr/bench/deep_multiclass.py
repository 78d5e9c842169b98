"""Benchmark ``deep-3class``: the deep stage on a three-class label (HER2-zero / low / positive).

``her2dlr bench deep-3class [--quick] [--seed N]``

Synthetic lesion images (48 x 48 px, speckle background, an elliptic lesion): 50 per class
(30 with ``--quick``), one image per patient, whose lesion brightness and texture rise with the
class, with a per-case spread wide enough that the classes overlap. Each line is one run of
:func:`her2dlr.deep.cv.run_deep_cv` with three outputs (a small 3-block DenseNet, 32 px ROIs,
weighted cross-entropy, epochs kept by the inner validation's macro one-vs-rest AUC) on a 5-fold
split by patient, scored on the pooled out-of-fold rows by
:mod:`her2dlr.evaluate.multiclass_tables`:

* ``macro_auc_3class_deep``: macro one-vs-rest AUC (bootstrap CI), with the per-class AUCs,
  accuracy and balanced accuracy;
* ``macro_auc_3class_deep_noise``: the same images with the labels permuted (nothing to learn):
  it must stay near 0.5, or something leaks.

``seconds`` is the run's wall time (ROI preparation, training 5 networks, the metric tables with their
bootstrap intervals) on a machine shared with other work. The images are
synthetic with a fixed signal: the numbers check the code, they are no claim about real data.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.bench import BenchOptions, register, result

BENCH = "deep-3class"
NAMES = ["HER2-zero", "HER2-low", "HER2-positive"]
SIZE = 48


def _lesion_image(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One image and its lesion mask; the lesion's mean and speckle rise with the class, with a wide spread."""
    img = rng.gamma(2.0, 30.0, size=(SIZE, SIZE))
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx = SIZE // 2 + rng.integers(-3, 4), SIZE // 2 + rng.integers(-3, 4)
    ry, rx = rng.uniform(8, 13, size=2)
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    mean = 60.0 + 25.0 * label + rng.normal(0.0, 18.0)
    sd = 10.0 + 6.0 * label + abs(rng.normal(0.0, 5.0))
    img[mask] = rng.normal(mean, sd, size=int(mask.sum()))
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255


def three_class_images(folder: Path, n_per_class: int, seed: int, *, permute: bool = False) -> pd.DataFrame:
    """Write the benchmark's images and masks under ``folder``; the manifest (``label`` 0/1/2, ``fold_r0``)."""
    from PIL import Image

    from her2dlr.cohort.splits import repeated_group_kfold

    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(3 * n_per_class) % 3)
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(y):
        img, mask = _lesion_image(rng, int(label))
        Image.fromarray(img).save(folder / f"c{i:04d}.png")
        Image.fromarray(mask).save(folder / f"c{i:04d}_mask.png")
        rows.append({"case_id": f"c{i:04d}", "patient_id": f"p{i:04d}", "image": str(folder / f"c{i:04d}.png"),
                     "mask": str(folder / f"c{i:04d}_mask.png"), "bbox": None, "label": int(label)})
    manifest = pd.DataFrame(rows)
    if permute:
        manifest["label"] = rng.permutation(manifest["label"].to_numpy())
    manifest["fold_r0"] = repeated_group_kfold(manifest["label"].to_numpy(), manifest["patient_id"].to_numpy(), 5, 1,
                                               seed)[0]
    return manifest


@register("deep-3class", "Deep stage on three classes (HER2-zero / low / positive), synthetic lesions: out-of-fold "
                         "macro one-vs-rest AUC of the network, noise control")
def deep_three_class_bench(options: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield ``macro_auc_3class_deep`` and ``macro_auc_3class_deep_noise`` (see the module docstring)."""
    import torch

    from her2dlr.deep.cv import run_deep_cv
    from her2dlr.deep.train import TrainSettings

    n_per_class = 30 if options.quick else 50
    settings = TrainSettings(image_size=32, epochs=12, batch_size=8, lr=1e-2, patience=0, progress=False,
                             num_threads=min(2, torch.get_num_threads()), seed=options.seed,
                             arch_options={"growth_rate": 4, "block_layers": (1, 1, 2)})
    with tempfile.TemporaryDirectory(dir=options.work_dir) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for metric, permute in (("macro_auc_3class_deep", False), ("macro_auc_3class_deep_noise", True)):
            manifest = three_class_images(Path(tmp) / metric, n_per_class, options.seed, permute=permute)
            start = time.perf_counter()
            res = run_deep_cv(manifest, settings=settings, keep_train=False, progress=False)
            seconds = time.perf_counter() - start
            row = res.metrics[(res.metrics["split"] == "test") & (res.metrics["scope"] == "r0")].iloc[0]
            per = pd.DataFrame(res.per_class)
            per = per[(per["split"] == "test") & (per["scope"] == "r0") & (per["class"] != "macro")]
            yield result(BENCH, metric, round(float(row["auc"]), 4), ci_low=round(float(row["ci_low"]), 4),
                         ci_high=round(float(row["ci_high"]), 4), accuracy=round(float(row["accuracy"]), 4),
                         balanced_accuracy=round(float(row["balanced_accuracy"]), 4),
                         per_class={n: round(float(a), 4) for n, a in zip(NAMES, per["auc"])},
                         n=len(manifest), folds=5, epochs=settings.epochs, seconds=round(seconds, 1))
