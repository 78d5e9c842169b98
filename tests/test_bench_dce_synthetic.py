"""Helpers of the ``dce-synthetic`` benchmark: shared folds, fallback lesions, out-of-fold models and 3D segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from her2dlr.bench.dce_segdsfr import feature_roi, oof_probabilities, out_of_fold_segmentation, stratified_folds


def test_stratified_folds_balance_every_class():
    labels = np.repeat([0, 1, 2], 10)
    folds = stratified_folds(labels, 5, seed=3)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    for k in range(5):
        assert np.bincount(labels[folds == k], minlength=3).tolist() == [2, 2, 2]
    assert np.array_equal(folds, stratified_folds(labels, 5, seed=3))


def test_feature_roi_keeps_a_mask_and_falls_back_around_the_peak():
    prob = np.zeros((6, 8, 8), np.float32)
    mask = np.zeros(prob.shape, bool)
    mask[1:4, 2:6, 2:6] = True
    roi, fallback = feature_roi(mask, prob)
    assert roi is mask or np.array_equal(roi, mask)
    assert not fallback
    # nothing above 0.5: the component at >= half the peak (two voxels), dilated to 10 voxels
    prob[3, 4, 4], prob[3, 4, 5], prob[0, 0, 0] = 0.4, 0.25, 0.1
    roi, fallback = feature_roi(prob >= 0.5, prob, min_voxels=10)
    assert fallback and roi[3, 4, 4] and roi[3, 4, 5] and not roi[0, 0, 0]
    assert roi.sum() >= 10
    # two voxels, one dilation with the 6-neighbourhood: 2 + 2 * 4 + 2 = 12 voxels
    assert roi.sum() == 12


def test_oof_probabilities_learn_and_never_see_the_test_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    x = np.column_stack([labels + rng.normal(0, 0.4, len(labels)), rng.normal(size=len(labels))])
    folds = stratified_folds(labels, 5, seed=0)

    def rows(_k, train, test):
        return x[train], x[test]

    def model():
        return LogisticRegression(max_iter=1000)

    probs = oof_probabilities(rows, labels, folds, model)
    pair = labels < 2
    assert probs["low_vs_zero"].shape == (pair.sum(),)
    assert probs["3class"].shape == (len(labels), 3)
    assert np.allclose(probs["3class"].sum(axis=1), 1.0)
    assert roc_auc_score(labels[pair], probs["low_vs_zero"]) > 0.85
    assert roc_auc_score(labels == 2, probs["positive_vs_rest"]) > 0.9
    assert roc_auc_score(labels, probs["3class"], multi_class="ovr") > 0.9
    # relabelling fold 0's cases changes no fold-0 prediction: they come from models fitted without them
    shuffled = labels.copy()
    shuffled[folds == 0] = rng.permutation(shuffled[folds == 0][::-1])
    again = oof_probabilities(rows, shuffled, folds, model)
    test0 = folds == 0
    assert np.allclose(again["positive_vs_rest"][test0], probs["positive_vs_rest"][test0])
    assert np.allclose(again["3class"][test0], probs["3class"][test0])


def _blob_volumes(n: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in (8, 16, 16)], indexing="ij"), axis=-1)
    volumes, masks = [], []
    for _ in range(n):
        centre = np.array([4.0, 8.0, 8.0]) + rng.uniform(-2, 2, 3) * np.array([0.5, 1, 1])
        mask = (((grid - centre) / np.array([2.5, 4.0, 4.0])) ** 2).sum(-1) <= 1
        volumes.append((rng.normal(0, 1, mask.shape) + 4.0 * mask).astype(np.float32))
        masks.append(mask.astype(np.uint8))
    return volumes, masks


def test_out_of_fold_segmentation_learns_blobs_and_gives_every_fold_network_rows():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(1)
        volumes, masks = _blob_volumes(10, rng)
        folds = np.repeat([0, 1], 5)
        seg = out_of_fold_segmentation(volumes, masks, folds, spacings=[(2.0, 1.0, 1.0)] * 10, epochs=20, patience=0,
                                       size=16, features=(4, 8, 16), layer=5, batch_size=3, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(seg.masks) == 10 and all(m.shape == (8, 16, 16) for m in seg.masks)
    assert seg.summary["dice_mean"] > 0.6
    assert seg.table["hd95_mm"].notna().all()
    assert sorted(seg.dsfr) == [0, 1]
    for k in (0, 1):
        table = seg.dsfr[k]
        assert table.shape == (10, 16) and np.isfinite(table.to_numpy()).all()
        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        x_train, x_test = seg.dsfr_rows(k, train, test)
        assert list(x_test.index) == [str(i) for i in test] and list(x_train.index) == [str(i) for i in train]
    # the two fold networks differ, so a case's rows from them differ
    assert not np.allclose(seg.dsfr[0].to_numpy(), seg.dsfr[1].to_numpy())
    assert all(r.sum() >= 10 for r in seg.rois)
