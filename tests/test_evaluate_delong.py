"""DeLong AUC variance (Sun & Xu midrank algorithm): hand-worked example, bootstrap, paired test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.errors import InputError
from her2dlr.evaluate.delong import (
    delong_auc_ci,
    delong_covariance,
    delong_test,
    placement_values,
)
from her2dlr.evaluate.metrics import bootstrap_auc_ci


def test_hand_worked_tiny_example():
    # positives 0.9, 0.8, 0.4; negatives 0.7, 0.3.
    # V10 (negatives below each positive): 1, 1, 1/2 -> AUC = 5/6, var(V10) = 1/12
    # V01 (positives above each negative): 2/3, 1 -> var(V01) = 1/18
    # var(AUC) = (1/12)/3 + (1/18)/2 = 1/18
    y = [1, 1, 1, 0, 0]
    s = [0.9, 0.8, 0.4, 0.7, 0.3]
    aucs, v10, v01 = placement_values(y, s)
    np.testing.assert_allclose(v10[0], [1, 1, 0.5])
    np.testing.assert_allclose(v01[0], [2 / 3, 1])
    aucs, cov = delong_covariance(y, s)
    assert aucs[0] == pytest.approx(5 / 6)
    assert cov[0, 0] == pytest.approx(1 / 18)


def test_ties_count_one_half():
    y = [1, 1, 0, 0]
    s = [0.5, 0.9, 0.5, 0.1]
    aucs, v10, _ = placement_values(y, s)
    np.testing.assert_allclose(v10[0], [0.75, 1.0])
    assert aucs[0] == pytest.approx(roc_auc_score(y, s))


def _brute_force_variance(y, s):
    y, s = np.asarray(y), np.asarray(s, float)
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)


def test_matches_the_quadratic_definition_and_sklearn_auc():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 150)
    s = np.round(y * 0.8 + rng.normal(size=150), 1)  # rounding makes ties
    aucs, cov = delong_covariance(y, s)
    assert aucs[0] == pytest.approx(roc_auc_score(y, s))
    assert cov[0, 0] == pytest.approx(_brute_force_variance(y, s), rel=1e-10)


def test_ci_close_to_bootstrap_on_a_moderate_sample():
    rng = np.random.default_rng(1)
    n = 300
    y = rng.permutation(np.arange(n) % 2)
    s = y * 1.0 + rng.normal(size=n)
    dl = delong_auc_ci(y, s)
    bs = bootstrap_auc_ci(y, s, n_boot=2000, seed=2)
    assert dl.auc == pytest.approx(bs.auc)
    assert dl.ci_low == pytest.approx(bs.ci_low, abs=0.02)
    assert dl.ci_high == pytest.approx(bs.ci_high, abs=0.02)
    assert dl.se == pytest.approx(bs.se, rel=0.15)


def test_paired_test():
    rng = np.random.default_rng(3)
    y = rng.permutation(np.arange(200) % 2)
    strong = y * 1.5 + rng.normal(size=200)
    weak = y * 0.2 + rng.normal(size=200)
    res = delong_test(y, strong, weak)
    assert res.auc_a > res.auc_b and res.p_value < 0.001
    same = delong_test(y, strong, strong)
    assert same.p_value == 1.0 and same.z == 0.0


def test_bad_input():
    with pytest.raises(InputError, match="single class"):
        delong_auc_ci([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="at least 2 cases of each class"):
        delong_auc_ci([1, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="scores have 2 values"):
        delong_covariance([1, 0, 0, 1], [0.1, 0.2])
