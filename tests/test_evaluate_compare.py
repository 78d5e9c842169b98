"""Wilson intervals, threshold metrics with CIs, paired bootstrap comparison, unpaired DeLong."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.evaluate.compare import (
    bootstrap_compare,
    delong_unpaired,
    threshold_metrics_ci,
    wilson_ci,
)
from her2dlr.evaluate.delong import delong_auc_ci, delong_test


def cohort(n: int, seed: int, strength: float = 1.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    good = 1 / (1 + np.exp(-(strength * (y - 0.5) * 2 + rng.normal(size=n))))
    return y, good, rng.random(n)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # Newcombe (1998) / Agresti & Coull (1998) textbook value
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_textbook_values(k, n, low, high):
    lo, hi = wilson_ci(k, n)
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_wilson_by_formula_and_against_statsmodels():
    # 8/10, z = 1.959964: centre (0.8 + z^2/20) / (1 + z^2/10), half-width z/(1 + z^2/10) sqrt(0.016 + z^2/400)
    z = stats.norm.ppf(0.975)
    centre = (0.8 + z**2 / 20) / (1 + z**2 / 10)
    half = z / (1 + z**2 / 10) * np.sqrt(0.8 * 0.2 / 10 + z**2 / 400)
    assert wilson_ci(8, 10) == pytest.approx((centre - half, centre + half), abs=1e-15)
    from statsmodels.stats.proportion import proportion_confint

    for k, n, level in [(3, 17, 0.95), (40, 41, 0.9), (12, 50, 0.99)]:
        ref = proportion_confint(k, n, alpha=1 - level, method="wilson")
        assert wilson_ci(k, n, level) == pytest.approx(ref, abs=1e-12)
    assert all(np.isnan(wilson_ci(0, 0)))


@pytest.mark.parametrize(("k", "n"), [(3, 2), (-1, 5), (1.5, 3)])
def test_wilson_bad_counts(k, n):
    with pytest.raises(InputError):
        wilson_ci(k, n)


def test_threshold_metrics_ci_hand_worked():
    # 20 TP, 1 FN, 28 TN, 14 FP
    y = np.r_[np.ones(21), np.zeros(42)].astype(int)
    p = np.r_[np.full(20, 0.9), 0.1, np.full(28, 0.2), np.full(14, 0.7)]
    t = threshold_metrics_ci(y, p, 0.5)
    assert t.index.tolist() == ["sensitivity", "specificity", "ppv", "npv", "accuracy", "youden"]
    assert (t.loc["sensitivity", "k"], t.loc["sensitivity", "n"]) == (20, 21)
    assert (t.loc["ppv", "k"], t.loc["ppv", "n"]) == (20, 34)
    assert (t.loc["npv", "k"], t.loc["npv", "n"]) == (28, 29)
    assert t.loc["accuracy", "value"] == pytest.approx(48 / 63)
    assert (t.loc["specificity", "ci_low"], t.loc["specificity", "ci_high"]) == pytest.approx(wilson_ci(28, 42))
    sens, spec = 20 / 21, 28 / 42
    se = np.sqrt(sens * (1 - sens) / 21 + spec * (1 - spec) / 42)
    assert t.loc["youden", "value"] == pytest.approx(sens + spec - 1)
    assert t.loc["youden", "ci_low"] == pytest.approx(sens + spec - 1 - 1.959964 * se, abs=1e-6)


def test_threshold_metrics_ci_empty_denominator():
    t = threshold_metrics_ci([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], 0.9)  # nothing called positive
    assert t.loc["ppv", "n"] == 0 and np.isnan(t.loc["ppv", "value"]) and np.isnan(t.loc["ppv", "ci_low"])


def test_bootstrap_finds_good_vs_random_and_nothing_for_identical():
    y, good, rand = cohort(200, 0)
    res = bootstrap_compare(y, good, rand, n_boot=500, seed=1)
    assert res.index.tolist() == ["auc", "accuracy", "youden"]
    assert list(res.columns[:6]) == ["a", "b", "diff", "ci_low", "ci_high", "p_value"]
    assert (res["diff"] > 0).all() and (res["ci_low"] > 0).all() and (res["p_value"] < 0.01).all()
    assert res["p_value"].min() >= 2 / 501  # never 0
    same = bootstrap_compare(y, good, good.copy(), n_boot=200, seed=1)
    assert (same["diff"] == 0).all() and (same["p_value"] == 1).all()
    assert (same["ci_low"] == 0).all() and (same["ci_high"] == 0).all()


def test_bootstrap_p_values_under_the_null():
    # two equally good, different models: about 5% of p-values below 0.05, close to paired DeLong's
    pvals, delong = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = rng.permutation(np.arange(150) % 2)
        a, b = y + rng.normal(size=150), y + rng.normal(size=150)
        res = bootstrap_compare(y, a, b, n_boot=400, seed=seed, metrics=["auc", "accuracy"])
        assert (res["ci_low"] <= res["diff"]).all() and (res["diff"] <= res["ci_high"]).all()
        pvals.append(res.loc["auc", "p_value"])
        delong.append(delong_test(y, a, b).p_value)
    assert (np.array(pvals) < 0.05).mean() <= 0.15
    assert np.median(np.abs(np.array(pvals) - np.array(delong))) < 0.05


def test_bootstrap_auc_difference_agrees_with_paired_delong():
    y, good, _ = cohort(300, 3, strength=0.8)
    weaker = good + np.random.default_rng(4).normal(scale=0.25, size=300)
    res = bootstrap_compare(y, good, weaker, n_boot=1000, seed=0, metrics=["auc"])
    dl = delong_test(y, good, weaker)
    assert res.loc["auc", "diff"] == pytest.approx(dl.difference)
    assert res.loc["auc", "se"] == pytest.approx(dl.se, rel=0.2)
    assert res.loc["auc", "a"] == pytest.approx(delong_auc_ci(y, good).auc)


def test_bootstrap_is_reproducible_and_checks_input():
    y, good, rand = cohort(60, 7)
    a = bootstrap_compare(y, good, rand, n_boot=100, seed=3, metrics=["auc", "brier", "sensitivity"])
    b = bootstrap_compare(y, good, rand, n_boot=100, seed=3, metrics=["auc", "brier", "sensitivity"])
    assert a.equals(b)
    with pytest.raises(InputError, match="'metrics'.*'auc'"):
        bootstrap_compare(y, good, rand, metrics=["aucc"])
    with pytest.raises(InputError, match="length mismatch"):
        bootstrap_compare(y, good, rand[:-1])
    with pytest.raises(InputError, match="'n_boot'"):
        bootstrap_compare(y, good, rand, n_boot=0)


def test_delong_unpaired_by_formula():
    y1, p1, _ = cohort(120, 8)
    y2, p2, _ = cohort(90, 9, strength=0.5)
    res = delong_unpaired(y1, p1, y2, p2)
    a, b = delong_auc_ci(y1, p1), delong_auc_ci(y2, p2)
    se = np.sqrt(a.se**2 + b.se**2)
    assert res["difference"] == pytest.approx(a.auc - b.auc)
    assert res["z"] == pytest.approx((a.auc - b.auc) / se)
    assert res["p_value"] == pytest.approx(2 * stats.norm.sf(abs(res["z"])))
    df = se**4 / (a.se**4 / 119 + b.se**4 / 89)
    t = delong_unpaired(y1, p1, y2, p2, distribution="t")
    assert t["df"] == pytest.approx(df) and t["p_value"] == pytest.approx(2 * stats.t.sf(abs(res["z"]), df))
    same = delong_unpaired(y1, p1, y1, p1)
    assert same["z"] == 0 and same["p_value"] == 1


def test_delong_unpaired_errors():
    with pytest.raises(InputError, match="cohort 2.*single class"):
        delong_unpaired([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.7], [1, 1, 1], [0.2, 0.3, 0.4])
    with pytest.raises(InputError, match="'distribution'"):
        delong_unpaired([0, 1, 0, 1], [0.1, 0.8, 0.3, 0.7], [0, 1, 0, 1], [0.1, 0.8, 0.3, 0.7], distribution="z")
