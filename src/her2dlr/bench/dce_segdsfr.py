"""Out-of-fold 3D segmentation, DSFR rows and out-of-fold class probabilities for the ``dce-synthetic`` benchmark.

One fold assignment (:func:`stratified_folds`) serves every model of the benchmark. For each
outer fold :func:`out_of_fold_segmentation` trains a small 3D U-Net
(:func:`her2dlr.segment.train.train_segmenter`) on the other folds' volumes and masks and
runs it on every case:

* the fold's test cases get their out-of-fold mask (lesion probability pasted back onto the
  volume's grid and post-processed: threshold 0.5, largest component, holes filled), which is
  scored against the true mask (Dice, HD95 in mm; :mod:`her2dlr.segment.metrics`);
* every case gets a DSFR row from this fold network (seed 003): each channel of one activation
  layer averaged over the case's *predicted* lesion (:func:`her2dlr.segment.dsfr.lesion_channel_means`).
  The test cases' rows are out of fold; the training cases' rows come from a network that was
  trained on them (as in seed 003, whose network was trained on its training cohort), and
  their lesion is the network's in-sample prediction, so training and test rows are made the
  same way.

A predicted mask that is empty (or smaller than :data:`MIN_ROI_VOXELS`) still counts as Dice 0
in the segmentation lines; for the features only, the case gets a fallback lesion that uses no
truth: the component of voxels whose probability is at least half the case's highest, grown by
one-voxel dilations to :data:`MIN_ROI_VOXELS` (:func:`feature_roi`). How many test cases needed
it is reported.

:func:`oof_probabilities` fits one classifier per outer fold on the training cases' rows and
predicts the test cases, for the three tasks of the benchmark (:data:`TASKS`).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DSFR_LAYER",
    "MIN_ROI_VOXELS",
    "SEG_FEATURES",
    "SEG_SIZE",
    "TASKS",
    "FoldSegmentation",
    "feature_roi",
    "oof_probabilities",
    "out_of_fold_segmentation",
    "stratified_folds",
]

#: Level widths of the benchmark's 3D U-Net (three levels: 9 activation layers).
SEG_FEATURES: tuple[int, ...] = (8, 16, 32)
#: Network input side: the 12 x 32 x 32 volumes become 32^3 cubes (slices interpolated, in-plane kept).
SEG_SIZE = 32
#: DSFR layer: the last activation of the U-Net's bottom level (32 channels at a quarter of the
#: input side). Seed 003's 10th ReLU (index 9) does not exist in a three-level U-Net, which has 9.
DSFR_LAYER = 5
#: Smallest lesion (voxels) that features are computed on (the radiomics settings' minimumROISize).
MIN_ROI_VOXELS = 10
#: Task name -> what it scores.
TASKS: dict[str, str] = {
    "low_vs_zero": "HER2-low vs HER2-zero (HER2-positive cases left out)",
    "positive_vs_rest": "HER2-positive vs the rest",
    "3class": "HER2-zero / HER2-low / HER2-positive, one-vs-rest macro AUC",
}


def stratified_folds(labels: Sequence[int] | np.ndarray, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Outer fold of every case: ``n_splits``-fold stratified on the class label, shuffled with ``seed``.

    Parameters
    ----------
    labels : array-like of shape (n_cases,)
    n_splits : int, default=5
    seed : int, default=0

    Returns
    -------
    ndarray of int of shape (n_cases,)
        Fold index ``0 .. n_splits - 1``.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(labels)
    folds = np.full(len(y), -1, dtype=int)
    for k, (_, test) in enumerate(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)):
        folds[test] = k
    return folds


def feature_roi(mask: np.ndarray, prob: np.ndarray, min_voxels: int = MIN_ROI_VOXELS) -> tuple[np.ndarray, bool]:
    """The lesion features are computed on: the predicted mask, or a fallback made from the probability map.

    Parameters
    ----------
    mask : ndarray of bool
        The post-processed predicted mask.
    prob : ndarray of float, same shape
        Lesion probability.
    min_voxels : int, default=:data:`MIN_ROI_VOXELS`

    Returns
    -------
    roi : ndarray of bool
        ``mask`` when it has at least ``min_voxels`` voxels; else the largest component of the
        voxels with probability >= half the highest, dilated one voxel at a time until it has
        ``min_voxels`` (or fills the volume).
    fallback : bool
        Whether the fallback was used.

    Examples
    --------
    >>> prob = np.zeros((5, 5, 5)); prob[2, 2, 2] = 0.3
    >>> roi, fallback = feature_roi(prob > 0.5, prob, min_voxels=7)
    >>> int(roi.sum()), fallback
    (7, True)
    """
    from scipy import ndimage

    from her2dlr.segment.postprocess import PostSettings, postprocess

    mask = np.asarray(mask, dtype=bool)
    if mask.sum() >= min_voxels:
        return mask, False
    prob = np.asarray(prob, dtype=np.float32)
    top = float(prob.max())
    if top > 0:
        roi, _ = postprocess(prob, PostSettings(threshold=min(1.0, top / 2)))
        roi = np.asarray(roi, dtype=bool)
    else:
        roi = np.zeros(prob.shape, bool)
    if not roi.any():
        roi = np.zeros(prob.shape, bool)
        roi[tuple(s // 2 for s in prob.shape)] = True
    while roi.sum() < min(min_voxels, roi.size):
        roi = ndimage.binary_dilation(roi)
    return roi, True


@dataclass
class FoldSegmentation:
    """What :func:`out_of_fold_segmentation` computed.

    Attributes
    ----------
    masks : list of ndarray of bool
        Every case's out-of-fold predicted mask, on its volume's grid.
    rois : list of ndarray of bool
        The out-of-fold lesions features use (:func:`feature_roi`).
    fallback : ndarray of bool of shape (n_cases,)
        Cases whose out-of-fold lesion is the fallback.
    table : DataFrame
        :func:`her2dlr.segment.metrics.segmentation_table` of the out-of-fold masks.
    summary : dict
        :func:`her2dlr.segment.metrics.summarise` of ``table`` (case-bootstrap CIs).
    dsfr : dict
        Fold -> DataFrame of shape (n_cases, n_channels): every case's DSFR row from that fold's
        network (index: case position as str).
    best_epochs : list of int
    notes : list of str
    """

    masks: list[np.ndarray]
    rois: list[np.ndarray]
    fallback: np.ndarray
    table: pd.DataFrame
    summary: dict[str, float]
    dsfr: dict[int, pd.DataFrame]
    best_epochs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def dsfr_rows(self, fold: int, train: np.ndarray, test: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Fold ``fold``'s DSFR rows of the ``train`` and ``test`` case positions (see :func:`oof_probabilities`)."""
        table = self.dsfr[fold]
        return table.iloc[train], table.iloc[test]


def out_of_fold_segmentation(volumes: Sequence[np.ndarray], masks: Sequence[np.ndarray], folds: np.ndarray, *,
                             spacings: Sequence[Sequence[float]] | None = None, epochs: int = 30, patience: int = 8,
                             seed: int = 0, size: int = SEG_SIZE, features: Sequence[int] = SEG_FEATURES,
                             layer: int | str = DSFR_LAYER, batch_size: int = 8,
                             progress: bool = True) -> FoldSegmentation:
    """Train one 3D U-Net per outer fold; out-of-fold masks, their quality, and every fold network's DSFR rows.

    Parameters
    ----------
    volumes : sequence of ndarray of shape (D, H, W)
        The network's input (the benchmark: the post1 - pre subtraction).
    masks : sequence of ndarray of shape (D, H, W)
        True lesion masks (training targets, and the reference of the Dice).
    folds : ndarray of int of shape (n_cases,)
        Outer fold of every case (:func:`stratified_folds`).
    spacings : sequence of (z, y, x) spacing in mm, optional
        For ``hd95_mm``.
    epochs, patience : int
        Training length and early-stopping patience on the inner validation Dice.
    seed : int, default=0
    size : int, default=:data:`SEG_SIZE`
    features : sequence of int, default=:data:`SEG_FEATURES`
    layer : int or str, default=:data:`DSFR_LAYER`
    batch_size : int, default=8
    progress : bool, default=True
        A bar over the folds (stderr).

    Returns
    -------
    FoldSegmentation
    """
    from her2dlr.segment.data import SegSpec, load_seg_pairs, paste_back, prepare_seg_target
    from her2dlr.segment.dsfr import lesion_channel_means
    from her2dlr.segment.infer import predict_lesion_prob
    from her2dlr.segment.metrics import segmentation_table, summarise
    from her2dlr.segment.postprocess import postprocess
    from her2dlr.segment.train import SegTrainSettings, train_segmenter

    n = len(volumes)
    folds = np.asarray(folds)
    spec = SegSpec(size=size, spatial_dims=3)
    X, Y, crops = load_seg_pairs(list(volumes), list(masks), spec=spec, progress=False)
    ids = [str(i) for i in range(n)]
    oof_masks: list[Any] = [None] * n
    oof_rois: list[Any] = [None] * n
    fallback = np.zeros(n, bool)
    dsfr: dict[int, pd.DataFrame] = {}
    best_epochs, notes = [], []
    fold_ids = sorted(set(folds.tolist()))
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(fold_ids, desc="3D segmentation folds", unit="fold", leave=False, file=sys.stderr)
    for k in bar if bar is not None else fold_ids:
        train = np.flatnonzero(folds != k)
        settings = SegTrainSettings(arch="unet", spatial_dims=3, image_size=size, features=tuple(features),
                                    epochs=epochs, batch_size=batch_size, lr=3e-3, patience=patience,
                                    seed=seed + k, device="cpu", num_threads=1, progress=False)
        fit = train_segmenter(X[train], Y[train], settings=settings, spec=spec)
        best_epochs.append(fit.best_epoch)
        notes += [f"fold {k}: {note}" for note in fit.notes]
        prob = predict_lesion_prob(fit.model, X, batch_size=batch_size)
        grid_rois = []
        for i in range(n):
            full = paste_back(prob[i], crops[i], np.shape(volumes[i]))
            mask, _ = postprocess(full)
            roi, used_fallback = feature_roi(mask, full)
            if folds[i] == k:
                oof_masks[i], oof_rois[i], fallback[i] = np.asarray(mask, bool), roi, used_fallback
            grid_rois.append(prepare_seg_target(roi, crops[i], spec))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dsfr[k] = lesion_channel_means(fit.model, X, np.stack(grid_rois), layer=layer, case_ids=ids,
                                           batch_size=batch_size)
    if bar is not None:
        bar.close()
    table = segmentation_table(oof_masks, list(masks), ids, spacings=list(spacings) if spacings is not None else None)
    return FoldSegmentation(masks=oof_masks, rois=oof_rois, fallback=fallback, table=table,
                            summary=summarise(table, seed=seed), dsfr=dsfr, best_epochs=best_epochs, notes=notes)


Rows = Callable[[int, np.ndarray, np.ndarray], tuple[Any, Any]]


def oof_probabilities(rows: Rows, labels: np.ndarray, folds: np.ndarray,
                      make_model: Callable[[], Any]) -> dict[str, np.ndarray]:
    """Out-of-fold class probabilities of the three tasks of :data:`TASKS`, on the given folds.

    Parameters
    ----------
    rows : callable
        ``rows(fold, train, test) -> (X_train, X_test)``: the feature rows of the case positions
        ``train`` and ``test`` for outer fold ``fold`` (fixed features: the same table sliced;
        DSFR: that fold network's rows, :meth:`FoldSegmentation.dsfr_rows`).
    labels : ndarray of int of shape (n_cases,)
        0 HER2-zero, 1 HER2-low, 2 HER2-positive.
    folds : ndarray of int of shape (n_cases,)
    make_model : callable
        Returns a fresh unfitted scikit-learn classifier with ``predict_proba``.

    Returns
    -------
    dict
        ``low_vs_zero``: P(HER2-low) of the HER2-zero and HER2-low cases, in case order;
        ``positive_vs_rest``: P(HER2-positive) of every case; ``3class``: ndarray of shape
        (n_cases, 3).
    """
    labels = np.asarray(labels, dtype=int)
    folds = np.asarray(folds)
    pair = labels < 2
    out = {"low_vs_zero": np.full(len(labels), np.nan), "positive_vs_rest": np.full(len(labels), np.nan),
           "3class": np.full((len(labels), 3), np.nan)}
    targets = {"low_vs_zero": (labels, pair), "positive_vs_rest": ((labels == 2).astype(int), np.ones_like(pair)),
               "3class": (labels, np.ones_like(pair))}
    for k in sorted(set(folds.tolist())):
        for task, (y, keep) in targets.items():
            train = np.flatnonzero((folds != k) & keep)
            test = np.flatnonzero((folds == k) & keep)
            if not len(test):
                continue
            x_train, x_test = rows(k, train, test)
            proba = make_model().fit(x_train, y[train]).predict_proba(x_test)
            out[task][test] = proba if task == "3class" else proba[:, 1]
    out["low_vs_zero"] = out["low_vs_zero"][pair]
    return out
