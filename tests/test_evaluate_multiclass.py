"""Multi-class metrics (3-class HER2 task) against scikit-learn, and their intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score

from her2dlr.errors import InputError
from her2dlr.evaluate.multiclass import multiclass_metrics


def _scores(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    logits = rng.normal(size=(len(y), 3)) + signal * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_values_match_scikit_learn() -> None:
    y, proba = _scores(150, 1.0, seed=1)
    r = multiclass_metrics(y, proba, class_names=["HER2-zero", "HER2-low", "HER2-positive"], n_boot=500)
    for c in range(3):
        assert r.per_class["auc"][c] == pytest.approx(roc_auc_score(y == c, proba[:, c]), abs=1e-12)
    assert r.macro_auc == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"), abs=1e-12)
    np.testing.assert_array_equal(r.confusion.to_numpy(), confusion_matrix(y, proba.argmax(axis=1)))
    assert r.balanced_accuracy == pytest.approx(balanced_accuracy_score(y, proba.argmax(axis=1)))
    assert list(r.confusion.index) == ["HER2-zero", "HER2-low", "HER2-positive"]
    assert list(r.summary["class"]) == [0, 1, 2, "macro"]


def test_intervals_hold_the_estimate_and_narrow_with_more_cases() -> None:
    small = multiclass_metrics(*_scores(60, 1.0, seed=2), n_boot=1000)
    large = multiclass_metrics(*_scores(600, 1.0, seed=2), n_boot=1000)
    for r in (small, large):
        assert r.macro_ci_low <= r.macro_auc <= r.macro_ci_high
        assert ((r.per_class["ci_low"] <= r.per_class["auc"]) & (r.per_class["auc"] <= r.per_class["ci_high"])).all()
    assert large.macro_ci_high - large.macro_ci_low < 0.6 * (small.macro_ci_high - small.macro_ci_low)


def test_signal_and_noise_are_told_apart() -> None:
    informative = multiclass_metrics(*_scores(150, 3.0, seed=3), n_boot=500)
    noise = multiclass_metrics(*_scores(150, 0.0, seed=3), n_boot=500)
    assert informative.macro_ci_low > 0.85
    assert noise.macro_ci_low < 0.5 < noise.macro_ci_high


@pytest.mark.parametrize(("y", "proba", "message"), [
    ([0, 1, 0, 1], [[0.5, 0.5]] * 4, "n_classes >= 3"),
    ([0, 1, 1, 0], [[0.2, 0.3, 0.5]] * 4, r"class\(es\) \[2\] have no case"),
    ([0, 1, 2, 3], [[0.2, 0.3, 0.5]] * 4, "class numbers 0 .. 2"),
    ([0, 1, 2], [[0.2, 0.3, np.nan]] * 3, "missing or infinite"),
    ([0, 1, 2, 0], [[0.2, 0.3, 0.5]] * 3, "3 rows but y_true has 4"),
])
def test_bad_input_is_named(y, proba, message: str) -> None:
    with pytest.raises(InputError, match=message):
        multiclass_metrics(y, proba)
