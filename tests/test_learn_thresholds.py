"""Thresholds chosen on training predictions, applied unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from her2dlr.errors import InputError
from her2dlr.learn.thresholds import ThresholdRule, apply_threshold, choose_threshold


def test_youden_hand_worked():
    # scores 0.1(-) 0.35(+) 0.4(-) 0.8(+): cut 0.6 -> sens .5 spec 1; cut 0.225 -> sens 1 spec .5;
    # both J = 0.5, tie goes to the higher sensitivity
    thr = choose_threshold([0, 1, 0, 1], [0.1, 0.35, 0.4, 0.8])
    assert thr.value == pytest.approx(0.225)
    assert (thr.sensitivity, thr.specificity) == (1.0, 0.5)
    y = np.array([0, 0, 0, 1, 1, 1])
    thr = choose_threshold(y, [0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    assert thr.value == pytest.approx(0.45) and thr.sensitivity == thr.specificity == 1.0


def test_fixed_sensitivity_and_specificity():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.5, 0.7, 0.3, 0.6, 0.8, 0.9])
    sens = choose_threshold(y, p, ThresholdRule("sensitivity", 1.0))
    assert sens.sensitivity == 1.0 and sens.value == pytest.approx(0.25)
    spec = choose_threshold(y, p, ThresholdRule("specificity", 1.0))
    assert spec.specificity == 1.0 and spec.value == pytest.approx(0.75)
    assert choose_threshold(y, p, ThresholdRule("fixed", 0.5)).value == 0.5
    with pytest.raises(InputError, match="'target' parameter of ThresholdRule"):
        ThresholdRule("sensitivity")


def test_threshold_applied_unchanged():
    train = choose_threshold([0, 0, 1, 1], [0.2, 0.4, 0.6, 0.9])
    test_prob = np.array([0.49, 0.5, 0.51, 0.99, 0.0])
    np.testing.assert_array_equal(apply_threshold(test_prob, train), (test_prob >= train.value).astype(int))
    assert train.to_dict()["value"] == train.value
