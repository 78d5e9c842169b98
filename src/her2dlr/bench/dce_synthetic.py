"""Benchmark ``dce-synthetic``: a simulated DCE cohort with a known class signal, end to end from DICOM.

``her2dlr bench dce-synthetic [--data ../shared/data/mri-breast1] [--quick]``

150 studies (45 with ``--quick``), HER2-zero / HER2-low / HER2-positive in turn, written as DICOM
in the four vendor layouts over the real breast volume's anatomy (``--data``, else
``../shared/data/mri-breast1`` when present, else a simulated background), read back and split
into phases by :mod:`her2dlr.io.dce`. The class kinetics are brought towards each other
(``separation=0.3`` of the generator's distance), so that the task is not trivial. Every case
gives its post1 - pre subtraction volume (12 x 32 x 32) and its lesion mask.

**One split for every line**: 5 outer folds stratified on the 3-class label, shuffled with
``--seed`` (:func:`her2dlr.bench.dce_segdsfr.stratified_folds`). The HER2-low vs zero lines use
the same folds restricted to the HER2-zero and HER2-low cases. Each model family gives three
lines: ``<family>_auc_low_vs_zero`` and ``<family>_auc_positive_vs_rest`` (pooled out-of-fold
probabilities, DeLong CI) and ``<family>_macro_auc_3class`` (one-vs-rest macro AUC, bootstrap CI,
with per-class AUCs and balanced accuracy; :mod:`her2dlr.evaluate.multiclass`).

* ``radiomics``: PyRadiomics first-order + GLCM on the original subtraction image inside the
  given mask (a small set, so the benchmark runs in minutes on 2 cores; the shipped ``mri3d``
  set's speed is in ``mri-speed``), standardised logistic regression (C 0.3) per fold.
* ``dice_3d``, ``hd95_mm``: a 3D U-Net (MONAI, widths 8-16-32) per outer fold, trained by
  :func:`her2dlr.segment.train.train_segmenter` (Dice + cross-entropy, augmentation, AdamW; 20
  epochs, early stopping with patience 6 on an inner validation split; ``--quick``: 12 epochs,
  no early stopping) on the other folds' subtraction volumes and masks, the volume resized to a
  32^3 cube. Input: the subtraction, not a post-contrast phase, because it is the image the
  radiomics reads and it shows the enhancing lesion with the unenhanced anatomy (bright fat and
  glands of the real background) subtracted out. Each case is segmented by the network of its
  own fold (threshold 0.5, largest component, holes filled, pasted back on the 12 x 32 x 32
  grid): ``dice_3d`` is the mean Dice over cases with a case-bootstrap 95 % CI
  (``n_pred_empty``: empty predictions, scored 0); ``hd95_mm`` the median HD95 in mm.
* ``dsfr`` (seed 003): each channel of the fold network's 6th activation layer (the bottom
  level, 32 channels; a three-level U-Net has no 10th) averaged over the case's *out-of-fold
  predicted* lesion (:func:`her2dlr.segment.dsfr.lesion_channel_means`); the training cases'
  rows come from the same fold network over its predictions on them, i.e. a network that was
  trained on them, as in seed 003 (its network was trained on its training cohort), so the
  training rows are more optimistic than the test rows. A predicted lesion that is empty or
  under 10 voxels is replaced, for features only, by the component of voxels at >= half the
  case's peak probability, grown to 10 voxels (``n_fallback_roi`` counts the test cases that
  needed it). Model per fold: :class:`~her2dlr.segment.dsfr.DSFRSelector` (k-means on the
  channels, the larger cluster kept) -> standardisation -> the same logistic regression as
  radiomics (seed 003's mutual-information / LASSO steps live in the study's DSFR models,
  :mod:`her2dlr.deep.dsfr`; here one classifier for every family keeps the lines comparable).
* ``radiomics_auto``: the radiomics set on the same out-of-fold lesions (seed 003 extracts both
  feature sets from the segmented tumour). A training case's features come from its own
  out-of-fold lesion, drawn by a network that saw the test fold's images and masks, never their
  labels.
* ``dlr`` (seed 003's DLR model): the mean of the ``radiomics_auto`` and ``dsfr`` out-of-fold
  probabilities (3 classes: the mean of the probability vectors); fully automatic, from the
  predicted lesion only.
* the DeepTEPP-style network (:mod:`her2dlr.deep.deeptepp`) on 2.5D mosaics of the tumour patch
  (centred on the given mask), HER2-positive vs the rest, on the same 5 folds, one line per
  variant: ``base`` (no multi-view, no jigsaw, no clinical fusion), ``multi_view`` (training
  patches balanced with views), ``jigsaw`` (training mosaics shuffled every epoch),
  ``clinical`` (age fused at the head; the generator makes age unrelated to the class, so no
  gain is expected) and ``all``. The network is trained by a short loop of its own (Adam, 40
  epochs, full batch; ``--quick``: 25), not by the study's deep training stage.

``seconds`` is the wall time of the whole benchmark, with the parts' times (torch on one
thread). Limits: a simulated cohort; its class signal lies in the lesion's enhancement
amplitude, wash-in / wash-out and texture. The segmentation network sees each volume z-scored
and normalises every layer per case (instance norm), so its features hardly keep the
enhancement amplitude: in the full run DSFR separates HER2-low from zero somewhat (0.71) and
HER2-positive from the rest not at all (0.52), and averaging it into the DLR model costs AUC
against ``radiomics_auto`` on every task. The lesion is an easy segmentation target (a bright
ellipsoid on the subtraction: ``dice_3d`` 0.98), so ``radiomics_auto`` stays close to
``radiomics``. The weak DSFR is not a matter of the layer: a pilot (seed 1, 60
cases, 12 epochs; not the reported run) gave DSFR AUCs low vs zero / positive vs rest / 3-class
macro of 0.72 / 0.50 / 0.60 at layer index 0, 0.54 / 0.46 / 0.50 (1), 0.50 / 0.28 / 0.42 (2),
0.52 / 0.30 / 0.43 (3), 0.49 / 0.38 / 0.44 (4), 0.48 / 0.39 / 0.44 (5), 0.61 / 0.50 / 0.53 (6),
0.61 / 0.45 / 0.53 (7).

Development runs (seed 0, 2 CPU cores shared with other work, so ``seconds`` is pessimistic),
``her2dlr bench dce-synthetic --quick`` (390.7 s)::

    {"bench": "dce-synthetic", "metric": "radiomics_auc_low_vs_zero", "value": 0.7689, "ci_low": 0.5923, "ci_high": 0.9455, "n": 30, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auc_positive_vs_rest", "value": 0.9044, "ci_low": 0.8158, "ci_high": 0.9931, "n": 45, "task": "HER2-positive vs the rest", "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_macro_auc_3class", "value": 0.803, "ci_low": 0.7037, "ci_high": 0.897, "n": 45, "per_class": {"HER2-zero": 0.8556, "HER2-low": 0.6511, "HER2-positive": 0.9022}, "balanced_accuracy": 0.6667, "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dice_3d", "value": 0.855, "ci_low": 0.837, "ci_high": 0.8746, "dice_median": 0.8653, "n": 45, "n_pred_empty": 0, "detection_rate": 1.0, "input": "post1 - pre subtraction", "image_size": 32, "features": [8, 16, 32], "epochs": 12, "patience": 0, "best_epochs": [11, 12, 12, 10, 12], "folds": 5}
    {"bench": "dce-synthetic", "metric": "hd95_mm", "value": 1.06, "statistic": "median", "n": 45, "input": "post1 - pre subtraction", "image_size": 32, "features": [8, 16, 32], "epochs": 12, "patience": 0, "best_epochs": [11, 12, 12, 10, 12], "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_auc_low_vs_zero", "value": 0.4622, "ci_low": 0.2447, "ci_high": 0.6797, "n": 30, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_auc_positive_vs_rest", "value": 0.4978, "ci_low": 0.3216, "ci_high": 0.674, "n": 45, "task": "HER2-positive vs the rest", "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_macro_auc_3class", "value": 0.4896, "ci_low": 0.357, "ci_high": 0.6215, "n": 45, "per_class": {"HER2-zero": 0.5089, "HER2-low": 0.4378, "HER2-positive": 0.5222}, "balanced_accuracy": 0.2889, "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_auc_low_vs_zero", "value": 0.7111, "ci_low": 0.5176, "ci_high": 0.9046, "n": 30, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_auc_positive_vs_rest", "value": 0.8578, "ci_low": 0.7496, "ci_high": 0.966, "n": 45, "task": "HER2-positive vs the rest", "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_macro_auc_3class", "value": 0.743, "ci_low": 0.64, "ci_high": 0.843, "n": 45, "per_class": {"HER2-zero": 0.8556, "HER2-low": 0.5311, "HER2-positive": 0.8422}, "balanced_accuracy": 0.5778, "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_auc_low_vs_zero", "value": 0.6133, "ci_low": 0.4025, "ci_high": 0.8242, "n": 30, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_auc_positive_vs_rest", "value": 0.7756, "ci_low": 0.6277, "ci_high": 0.9235, "n": 45, "task": "HER2-positive vs the rest", "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_macro_auc_3class", "value": 0.6719, "ci_low": 0.5481, "ci_high": 0.7852, "n": 45, "per_class": {"HER2-zero": 0.7711, "HER2-low": 0.4778, "HER2-positive": 0.7667}, "balanced_accuracy": 0.4444, "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_base", "value": 0.7578, "ci_low": 0.6105, "ci_high": 0.9051, "n": 45, "task": "HER2-positive vs the rest", "seconds": 9.2, "multi_view": false, "jigsaw": false, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_multi_view", "value": 0.6667, "ci_low": 0.4992, "ci_high": 0.8341, "n": 45, "task": "HER2-positive vs the rest", "seconds": 14.5, "multi_view": true, "jigsaw": false, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_jigsaw", "value": 0.68, "ci_low": 0.5114, "ci_high": 0.8486, "n": 45, "task": "HER2-positive vs the rest", "seconds": 12.1, "multi_view": false, "jigsaw": true, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_clinical", "value": 0.6867, "ci_low": 0.5173, "ci_high": 0.8561, "n": 45, "task": "HER2-positive vs the rest", "seconds": 13.0, "multi_view": false, "jigsaw": false, "clinical": true}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_all", "value": 0.5822, "ci_low": 0.3871, "ci_high": 0.7773, "n": 45, "task": "HER2-positive vs the rest", "seconds": 17.7, "multi_view": true, "jigsaw": true, "clinical": true}
    {"bench": "dce-synthetic", "metric": "seconds", "value": 390.7, "n": 45, "background": "breast1_image.nrrd", "separation": 0.3, "seconds": 390.7, "seconds_radiomics": 10.8, "seconds_segmentation": 235.2, "seconds_dsfr": 7.8, "seconds_radiomics_auto": 11.5, "seconds_deeptepp": 66.6}

``her2dlr bench dce-synthetic`` (1101.8 s)::

    {"bench": "dce-synthetic", "metric": "radiomics_auc_low_vs_zero", "value": 0.86, "ci_low": 0.7887, "ci_high": 0.9313, "n": 100, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auc_positive_vs_rest", "value": 0.9228, "ci_low": 0.8798, "ci_high": 0.9658, "n": 150, "task": "HER2-positive vs the rest", "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_macro_auc_3class", "value": 0.8708, "ci_low": 0.8251, "ci_high": 0.9115, "n": 150, "per_class": {"HER2-zero": 0.9266, "HER2-low": 0.764, "HER2-positive": 0.9218}, "balanced_accuracy": 0.7333, "roi": "given mask", "n_features": 23, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dice_3d", "value": 0.9824, "ci_low": 0.9808, "ci_high": 0.9842, "dice_median": 0.9847, "n": 150, "n_pred_empty": 0, "detection_rate": 1.0, "input": "post1 - pre subtraction", "image_size": 32, "features": [8, 16, 32], "epochs": 20, "patience": 6, "best_epochs": [19, 19, 20, 20, 20], "folds": 5}
    {"bench": "dce-synthetic", "metric": "hd95_mm", "value": 0.0, "statistic": "median", "n": 150, "input": "post1 - pre subtraction", "image_size": 32, "features": [8, 16, 32], "epochs": 20, "patience": 6, "best_epochs": [19, 19, 20, 20, 20], "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_auc_low_vs_zero", "value": 0.706, "ci_low": 0.6022, "ci_high": 0.8098, "n": 100, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_auc_positive_vs_rest", "value": 0.5186, "ci_low": 0.4183, "ci_high": 0.6189, "n": 150, "task": "HER2-positive vs the rest", "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dsfr_macro_auc_3class", "value": 0.6116, "ci_low": 0.5459, "ci_high": 0.6742, "n": 150, "per_class": {"HER2-zero": 0.6894, "HER2-low": 0.6194, "HER2-positive": 0.526}, "balanced_accuracy": 0.44, "roi": "out-of-fold predicted lesion", "layer": 5, "n_channels": 32, "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_auc_low_vs_zero", "value": 0.838, "ci_low": 0.7611, "ci_high": 0.9149, "n": 100, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_auc_positive_vs_rest", "value": 0.858, "ci_low": 0.7983, "ci_high": 0.9177, "n": 150, "task": "HER2-positive vs the rest", "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "radiomics_auto_macro_auc_3class", "value": 0.8298, "ci_low": 0.7797, "ci_high": 0.8741, "n": 150, "per_class": {"HER2-zero": 0.9002, "HER2-low": 0.722, "HER2-positive": 0.8672}, "balanced_accuracy": 0.68, "roi": "out-of-fold predicted lesion", "n_fallback_roi": 0, "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_auc_low_vs_zero", "value": 0.8308, "ci_low": 0.7494, "ci_high": 0.9122, "n": 100, "task": "HER2-low vs HER2-zero (HER2-positive cases left out)", "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_auc_positive_vs_rest", "value": 0.8152, "ci_low": 0.7458, "ci_high": 0.8846, "n": 150, "task": "HER2-positive vs the rest", "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "dlr_macro_auc_3class", "value": 0.808, "ci_low": 0.757, "ci_high": 0.8561, "n": 150, "per_class": {"HER2-zero": 0.8876, "HER2-low": 0.7134, "HER2-positive": 0.823}, "balanced_accuracy": 0.6267, "fusion": "mean of radiomics_auto and dsfr probabilities", "folds": 5}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_base", "value": 0.7078, "ci_low": 0.6187, "ci_high": 0.7969, "n": 150, "task": "HER2-positive vs the rest", "seconds": 13.7, "multi_view": false, "jigsaw": false, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_multi_view", "value": 0.7146, "ci_low": 0.6255, "ci_high": 0.8037, "n": 150, "task": "HER2-positive vs the rest", "seconds": 19.4, "multi_view": true, "jigsaw": false, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_jigsaw", "value": 0.7224, "ci_low": 0.6318, "ci_high": 0.813, "n": 150, "task": "HER2-positive vs the rest", "seconds": 20.9, "multi_view": false, "jigsaw": true, "clinical": false}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_clinical", "value": 0.6842, "ci_low": 0.5868, "ci_high": 0.7816, "n": 150, "task": "HER2-positive vs the rest", "seconds": 18.5, "multi_view": false, "jigsaw": false, "clinical": true}
    {"bench": "dce-synthetic", "metric": "deeptepp_auc_all", "value": 0.687, "ci_low": 0.5957, "ci_high": 0.7783, "n": 150, "task": "HER2-positive vs the rest", "seconds": 16.7, "multi_view": true, "jigsaw": true, "clinical": true}
    {"bench": "dce-synthetic", "metric": "seconds", "value": 1101.8, "n": 150, "background": "breast1_image.nrrd", "separation": 0.3, "seconds": 1101.8, "seconds_radiomics": 27.2, "seconds_segmentation": 794.1, "seconds_dsfr": 3.9, "seconds_radiomics_auto": 16.9, "seconds_deeptepp": 89.3}
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from her2dlr.bench import BenchOptions, register, result
from her2dlr.bench.dce_benches import background_volume
from her2dlr.bench.dce_segdsfr import (
    DSFR_LAYER,
    SEG_FEATURES,
    SEG_SIZE,
    TASKS,
    FoldSegmentation,
    oof_probabilities,
    out_of_fold_segmentation,
    stratified_folds,
)

BENCH = "dce-synthetic"
#: Class kinetics at a third of the generator's full distance from HER2-low: a task no method solves perfectly.
SEPARATION = 0.3
#: Outer folds shared by every line (stratified on the 3-class label, seeded).
N_FOLDS = 5
CLASS_NAMES = ["HER2-zero", "HER2-low", "HER2-positive"]
SMALL_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"firstorder": None, "glcm": ["Contrast", "Correlation", "Idm", "JointEntropy", "ClusterShade"]},
    "setting": {"binWidth": 25.0, "label": 1, "minimumROISize": 10, "additionalInfo": False},
}
VARIANTS = {
    "base": {"multi_view": False, "jigsaw": False, "clinical": False},
    "multi_view": {"multi_view": True, "jigsaw": False, "clinical": False},
    "jigsaw": {"multi_view": False, "jigsaw": True, "clinical": False},
    "clinical": {"multi_view": False, "jigsaw": False, "clinical": True},
    "all": {"multi_view": True, "jigsaw": True, "clinical": True},
}


def _read_cases(root: Path, truth: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[str], list[tuple[float, ...]]]:
    """Subtraction volumes (also written as ``subtraction.nrrd``), masks, subtraction paths, (z, y, x) spacings."""
    from her2dlr.io.dce import kinetic_maps, read_dce_folder

    subtractions, masks, paths, spacings = [], [], [], []
    for _, row in truth.iterrows():
        folder = root / row["folder"]
        dce = read_dce_folder(folder)
        subtraction = kinetic_maps(dce, ["subtraction"], phase=dce.index("post1"))["subtraction"]
        path = folder / "subtraction.nrrd"
        sitk.WriteImage(subtraction, str(path))
        subtractions.append(sitk.GetArrayFromImage(subtraction))
        masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "mask.nrrd"))))
        paths.append(str(path))
        spacings.append(tuple(float(s) for s in reversed(subtraction.GetSpacing())))
    return subtractions, masks, paths, spacings


def _radiomics_table(paths: list[str], masks: list[Path]) -> np.ndarray:
    """The small PyRadiomics set of every (subtraction, mask) pair, columns in name order."""
    from her2dlr.radiomics.extract import extract_case

    rows = [extract_case(p, m, params=SMALL_PARAMS) for p, m in zip(paths, masks)]
    names = sorted(rows[0])
    return np.array([[r[n] for n in names] for r in rows], dtype=float)


def _linear_model() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))


def _dsfr_model(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from her2dlr.segment.dsfr import DSFRSelector

    return make_pipeline(DSFRSelector(2, random_state=seed), StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))


def _fixed_rows(x: np.ndarray) -> Any:
    return lambda _fold, train, test: (x[train], x[test])


def _task_lines(family: str, probs: dict[str, np.ndarray], labels: np.ndarray, seed: int,
                **info: Any) -> Iterator[dict[str, Any]]:
    """``<family>_auc_low_vs_zero``, ``<family>_auc_positive_vs_rest`` (DeLong CIs), ``<family>_macro_auc_3class``."""
    from her2dlr.evaluate.delong import delong_auc_ci
    from her2dlr.evaluate.multiclass import multiclass_metrics

    pair = labels < 2
    for task, y, p in (("low_vs_zero", labels[pair], probs["low_vs_zero"]),
                       ("positive_vs_rest", (labels == 2).astype(int), probs["positive_vs_rest"])):
        r = delong_auc_ci(y, p)
        yield result(BENCH, f"{family}_auc_{task}", round(r.auc, 4), ci_low=round(r.ci_low, 4),
                     ci_high=round(r.ci_high, 4), n=len(y), task=TASKS[task], **info)
    m = multiclass_metrics(labels, probs["3class"], class_names=CLASS_NAMES, seed=seed)
    yield result(BENCH, f"{family}_macro_auc_3class", round(m.macro_auc, 4), ci_low=round(m.macro_ci_low, 4),
                 ci_high=round(m.macro_ci_high, 4), n=len(labels),
                 per_class={str(k): round(float(v), 4) for k, v in zip(m.per_class["name"], m.per_class["auc"])},
                 balanced_accuracy=round(m.balanced_accuracy, 4), **info)


def _segmentation_lines(seg: FoldSegmentation, info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    s = seg.summary
    yield result(BENCH, "dice_3d", round(s["dice_mean"], 4), ci_low=round(s["dice_ci_low"], 4),
                 ci_high=round(s["dice_ci_high"], 4), dice_median=round(s["dice_median"], 4), n=s["n_cases"],
                 n_pred_empty=s["n_pred_empty"], detection_rate=round(s["detection_rate"], 4), **info)
    yield result(BENCH, "hd95_mm", round(s["hd95_mm_median"], 2), statistic="median", n=s["n_hd95"], **info)


def _write_auto_masks(seg: FoldSegmentation, paths: list[str]) -> list[Path]:
    """The out-of-fold feature lesions as ``auto_mask.nrrd`` next to each subtraction, with its geometry."""
    from her2dlr.segment.data import write_mask

    return [write_mask(roi.astype(np.uint8), p, Path(p).parent / "auto_mask.nrrd") for roi, p in zip(seg.rois, paths)]


def _network_scores(patches: list[np.ndarray], y: np.ndarray, age: np.ndarray, switches: dict[str, bool],
                    folds: np.ndarray, seed: int, epochs: int) -> np.ndarray:
    import torch

    from her2dlr.deep.deeptepp import MMResNet, balance_with_views, jigsaw_shuffle, slice_mosaic

    rng = np.random.default_rng(seed)
    scores = np.zeros(len(y))
    age_z = ((age - age.mean()) / age.std()).astype(np.float32)
    for k in sorted(set(folds.tolist())):
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        torch.manual_seed(seed)
        train_p, train_y, source = [patches[i] for i in train], [int(y[i]) for i in train], list(range(len(train)))
        if switches["multi_view"]:
            train_p, train_y, source = balance_with_views(train_p, train_y, seed=seed)
        train_clin = torch.tensor(age_z[train][source])[:, None]
        mosaics = np.stack([slice_mosaic(p, 2) for p in train_p])
        y_t = torch.tensor(train_y)
        net = MMResNet(1, 2, spatial_dims=2, widths=(4, 8, 8, 16), proj_dim=8,
                       n_clinical=1 if switches["clinical"] else 0)
        opt = torch.optim.Adam(net.parameters(), lr=0.003)
        for _ in range(epochs):
            batch = np.stack([jigsaw_shuffle(m, 2, rng) for m in mosaics]) if switches["jigsaw"] else mosaics
            net.train()
            opt.zero_grad()
            logits = net(torch.tensor(batch)[:, None], train_clin if switches["clinical"] else None)
            torch.nn.functional.cross_entropy(logits, y_t).backward()
            opt.step()
        net.eval()
        test_x = torch.tensor(np.stack([slice_mosaic(patches[i], 2) for i in test]))[:, None]
        with torch.no_grad():
            logits = net(test_x, torch.tensor(age_z[test])[:, None] if switches["clinical"] else None)
        scores[test] = torch.softmax(logits, 1)[:, 1].numpy()
    return scores


def _deeptepp_lines(subtractions: list[np.ndarray], masks: list[np.ndarray], labels: np.ndarray, age: np.ndarray,
                    folds: np.ndarray, opts: BenchOptions) -> Iterator[dict[str, Any]]:
    from her2dlr.deep.deeptepp import tumour_patch
    from her2dlr.evaluate.delong import delong_auc_ci

    patches = [(tumour_patch(s, m, 12) / 300.0).astype(np.float32) for s, m in zip(subtractions, masks)]
    positive = (labels == 2).astype(int)
    for name, switches in VARIANTS.items():
        t0 = time.perf_counter()
        scores = _network_scores(patches, positive, age, switches, folds, opts.seed, epochs=25 if opts.quick else 40)
        r = delong_auc_ci(positive, scores)
        yield result(BENCH, f"deeptepp_auc_{name}", round(r.auc, 4), ci_low=round(r.ci_low, 4),
                     ci_high=round(r.ci_high, 4), n=len(labels), task=TASKS["positive_vs_rest"],
                     seconds=round(time.perf_counter() - t0, 1), **switches)


@register(BENCH, "Synthetic DCE cohort from DICOM: out-of-fold 3D segmentation (dice_3d), radiomics, DSFR and DLR "
                 "AUCs (low vs zero, positive vs rest, 3-class macro), DeepTEPP network with/without each switch")
def dce_synthetic(opts: BenchOptions) -> Iterator[dict[str, Any]]:
    """Yield the benchmark's result lines (see the module docstring)."""
    import torch

    from her2dlr.io.synthetic_dce import write_synthetic_cohort

    start = time.perf_counter()
    background, source = background_volume(opts)
    n_cases = 45 if opts.quick else 150
    epochs, patience = (12, 0) if opts.quick else (20, 6)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    seconds: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(opts.work_dir or tmp) / BENCH
            truth = write_synthetic_cohort(root, n_cases=n_cases, seed=opts.seed, shape=(12, 32, 32),
                                           background=background, separation=SEPARATION)
            subtractions, masks, paths, spacings = _read_cases(root, truth)
            labels = truth["label"].to_numpy(int)
            folds = stratified_folds(labels, N_FOLDS, opts.seed)
            common = {"folds": N_FOLDS}

            t0 = time.perf_counter()
            x_given = _radiomics_table(paths, [root / f / "mask.nrrd" for f in truth["folder"]])
            rad = oof_probabilities(_fixed_rows(x_given), labels, folds, _linear_model)
            seconds["radiomics"] = time.perf_counter() - t0
            yield from _task_lines("radiomics", rad, labels, opts.seed, roi="given mask",
                                   n_features=x_given.shape[1], **common)

            t0 = time.perf_counter()
            seg = out_of_fold_segmentation(subtractions, masks, folds, spacings=spacings, epochs=epochs,
                                           patience=patience, seed=opts.seed)
            seconds["segmentation"] = time.perf_counter() - t0
            seg_info = {"input": "post1 - pre subtraction", "image_size": SEG_SIZE, "features": list(SEG_FEATURES),
                        "epochs": epochs, "patience": patience, "best_epochs": seg.best_epochs, **common}
            yield from _segmentation_lines(seg, seg_info)

            t0 = time.perf_counter()
            dsfr = oof_probabilities(seg.dsfr_rows, labels, folds, lambda: _dsfr_model(opts.seed))
            seconds["dsfr"] = time.perf_counter() - t0
            n_fallback = int(seg.fallback.sum())
            yield from _task_lines("dsfr", dsfr, labels, opts.seed, roi="out-of-fold predicted lesion",
                                   layer=DSFR_LAYER, n_channels=seg.dsfr[0].shape[1], n_fallback_roi=n_fallback,
                                   **common)

            t0 = time.perf_counter()
            x_auto = _radiomics_table(paths, _write_auto_masks(seg, paths))
            rad_auto = oof_probabilities(_fixed_rows(x_auto), labels, folds, _linear_model)
            seconds["radiomics_auto"] = time.perf_counter() - t0
            yield from _task_lines("radiomics_auto", rad_auto, labels, opts.seed,
                                   roi="out-of-fold predicted lesion", n_fallback_roi=n_fallback, **common)

            dlr = {task: (rad_auto[task] + dsfr[task]) / 2 for task in TASKS}
            yield from _task_lines("dlr", dlr, labels, opts.seed, fusion="mean of radiomics_auto and dsfr "
                                   "probabilities", **common)

            t0 = time.perf_counter()
            yield from _deeptepp_lines(subtractions, masks, labels, truth["age"].to_numpy(float), folds, opts)
            seconds["deeptepp"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    total = round(time.perf_counter() - start, 1)
    yield result(BENCH, "seconds", total, n=n_cases, background=source, separation=SEPARATION,
                 seconds=total, **{f"seconds_{k}": round(v, 1) for k, v in seconds.items()})
