"""Patient-clustered intervals of the multi-class metrics: weighted AUCs against scikit-learn, and
duplicated images that must not narrow the interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.evaluate.multiclass import _weighted_aucs, multiclass_metrics


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    logits = rng.normal(size=(n, 3)) + 1.0 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, np.round(proba, 2)  # rounded: ties between cases


def test_weighted_aucs_equal_scikit_learn_with_sample_weights():
    y, proba = _scores(90, seed=0)
    weights = np.random.default_rng(1).integers(0, 4, size=(5, len(y))).astype(float)
    got = _weighted_aucs(y == 1, proba[:, 1], weights)
    ref = [roc_auc_score(y == 1, proba[:, 1], sample_weight=w) for w in weights]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_duplicated_images_do_not_narrow_the_clustered_intervals():
    y, proba = _scores(150, seed=2)
    single = multiclass_metrics(y, proba, n_boot=2000)
    y2, p2, patients = np.repeat(y, 2), np.repeat(proba, 2, axis=0), np.repeat(np.arange(len(y)), 2)
    naive = multiclass_metrics(y2, p2, n_boot=2000)
    clustered = multiclass_metrics(y2, p2, n_boot=2000, clusters=patients)
    assert clustered.ci_method == "obuchowski / patient bootstrap" and single.ci_method.startswith("delong")
    assert clustered.macro_auc == pytest.approx(single.macro_auc, abs=1e-12)
    width = {k: r.macro_ci_high - r.macro_ci_low for k, r in (("single", single), ("naive", naive),
                                                              ("clustered", clustered))}
    assert width["naive"] < 0.85 * width["single"]  # two copies of each case look like twice the evidence
    assert width["clustered"] == pytest.approx(width["single"], rel=0.15)
    per = {k: (r.per_class["ci_high"] - r.per_class["ci_low"]).to_numpy() for k, r in
           (("single", single), ("clustered", clustered))}
    np.testing.assert_allclose(per["clustered"], per["single"], rtol=0.15)
