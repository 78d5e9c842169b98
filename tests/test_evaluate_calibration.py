"""Calibration: Brier, Hosmer-Lemeshow by hand, binned and smoothed curves, slope and intercept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special, stats

from her2dlr.errors import InputError
from her2dlr.evaluate.calibration import (
    brier_score,
    calibration_curve_binned,
    calibration_loess,
    calibration_slope_intercept,
    calibration_summary,
    hosmer_lemeshow,
    r_quantile7,
)


def simulate(n: int, seed: int, scale: float = 1.0, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Outcomes drawn from true risks; predictions = expit(scale * true logit + shift)."""
    rng = np.random.default_rng(seed)
    lp = -0.7 + 1.2 * rng.normal(size=n)
    y = (rng.random(n) < special.expit(lp)).astype(int)
    return y, special.expit(scale * lp + shift)


def test_brier_hand_worked():
    # (0.2^2 + 0.2^2 + 0.4^2 + 0.4^2) / 4 = 0.1
    assert brier_score([1, 0, 1, 0], [0.8, 0.2, 0.6, 0.4]) == pytest.approx(0.1)
    assert brier_score(np.array([True, False]), [1.0, 0.0]) == 0.0


def test_hosmer_lemeshow_hand_worked():
    # p = 0.1 ... 0.9, g = 3: type-7 breaks 0.1, 0.3667, 0.6333, 0.9 -> groups of 3 cases
    # group 1: O1 = 1, E1 = 0.6 -> 0.4^2/0.6 + 0.4^2/2.4 = 1/3
    # group 2: O1 = 1, E1 = 1.5 -> 0.5^2/1.5 + 0.5^2/1.5 = 1/3
    # group 3: O1 = 3, E1 = 2.4 -> 0.6^2/2.4 + 0.6^2/0.6 = 0.75;  total 17/12 on 3 - 2 = 1 df
    p = np.arange(1, 10) / 10
    y = [0, 0, 1, 0, 1, 0, 1, 1, 1]
    hl = hosmer_lemeshow(y, p, n_groups=3)
    assert hl.statistic == pytest.approx(17 / 12)
    assert hl.df == 1
    assert hl.p_value == pytest.approx(stats.chi2.sf(17 / 12, 1))
    assert hl.table["n"].tolist() == [3, 3, 3]
    assert hl.table["observed"].tolist() == [1, 1, 3]
    np.testing.assert_allclose(hl.table["expected"], [0.6, 1.5, 2.4])
    np.testing.assert_allclose(hl.table[["lower", "upper"]].to_numpy()[:, 1], [11 / 30, 19 / 30, 0.9])
    assert hosmer_lemeshow(y, p, n_groups=3, df=3).p_value == pytest.approx(stats.chi2.sf(17 / 12, 3))


def test_r_quantile7_matches_numpy_linear_up_to_rounding():
    x = np.random.default_rng(0).random(101)
    probs = np.arange(11) * 0.1
    np.testing.assert_allclose(r_quantile7(x, probs), np.quantile(x, probs), rtol=0, atol=1e-15)


def test_hosmer_lemeshow_merges_tied_breaks():
    # 4 distinct predictions: at most 3 groups whatever g is asked for
    y = np.r_[np.zeros(30, int), np.ones(10, int)]
    p = np.tile([0.1, 0.2, 0.4, 0.6], 10)
    hl = hosmer_lemeshow(y, p, n_groups=10)
    assert len(hl.table) == 3 and hl.df == 1
    assert hl.table["n"].sum() == 40


def test_hosmer_lemeshow_null_distribution_and_power():
    # A model fitted on the same cases: g - 2 df (the default) gives uniform p-values.
    fitted = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=400)
        y = (rng.random(400) < special.expit(-0.7 + 1.2 * x)).astype(int)
        fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
        fitted.append(hosmer_lemeshow(y, fit.predict()).p_value)
    assert (np.array(fitted) < 0.05).mean() <= 0.12
    assert stats.kstest(fitted, "uniform").pvalue > 0.01
    # Fixed (true) risks, as in external validation: g df (Hosmer & Lemeshow); g - 2 would reject too often.
    fixed = [hosmer_lemeshow(*simulate(400, seed), df=10).p_value for seed in range(60)]
    assert (np.array(fixed) < 0.05).mean() <= 0.12
    assert stats.kstest(fixed, "uniform").pvalue > 0.01
    assert hosmer_lemeshow(*simulate(3000, 1, scale=2.0)).p_value < 1e-6


def test_slope_near_one_when_calibrated_and_below_one_when_overconfident():
    y, p = simulate(4000, 2)
    good = calibration_slope_intercept(y, p)
    assert good["slope"] == pytest.approx(1.0, abs=0.1)
    assert good["intercept"] == pytest.approx(0.0, abs=0.1)
    over = calibration_slope_intercept(*simulate(4000, 2, scale=2.0))
    assert over["slope"] == pytest.approx(0.5, abs=0.06) and over["slope"] < 1
    under = calibration_slope_intercept(*simulate(4000, 2, scale=0.5))
    assert under["slope"] > 1.6
    shifted = calibration_slope_intercept(*simulate(4000, 2, shift=-1.0))  # predictions too low
    assert shifted["intercept"] == pytest.approx(1.0, abs=0.12)
    assert shifted["slope"] == pytest.approx(1.0, abs=0.1)


def test_slope_leaves_out_probabilities_of_zero_and_one():
    y, p = simulate(300, 3)
    p = p.copy()
    p[:3] = [0.0, 1.0, 1.0]
    res = calibration_slope_intercept(y, p)
    assert res["n_excluded"] == 3 and res["n"] == 297
    ref = calibration_slope_intercept(y[3:], p[3:])
    assert res["slope"] == pytest.approx(ref["slope"])


def test_binned_curve_quantile_and_uniform():
    y, p = simulate(1000, 4)
    curve = calibration_curve_binned(y, p, n_bins=10)
    assert list(curve.columns[:6]) == ["bin", "lower", "upper", "n", "n_events", "mean_pred"]
    assert curve["n"].sum() == 1000 and len(curve) == 10
    assert curve["n"].between(99, 101).all()
    assert (curve["ci_low"] <= curve["obs_rate"]).all() and (curve["obs_rate"] <= curve["ci_high"]).all()
    assert np.corrcoef(curve["mean_pred"], curve["obs_rate"])[0, 1] > 0.95
    uniform = calibration_curve_binned(y, p, n_bins=5, strategy="uniform")
    assert uniform["n"].sum() == 1000
    assert ((uniform["mean_pred"] >= uniform["lower"]) & (uniform["mean_pred"] <= uniform["upper"])).all()
    with pytest.raises(InputError, match="'strategy'.*'quantile'"):
        calibration_curve_binned(y, p, strategy="quantiles")


def test_loess_follows_the_diagonal_for_calibrated_predictions():
    y, p = simulate(3000, 5)
    grid = np.linspace(0.1, 0.8, 8)
    curve = calibration_loess(y, p, grid=grid)
    assert curve["pred"].tolist() == pytest.approx(grid.tolist())
    np.testing.assert_allclose(curve["obs"], grid, atol=0.06)
    full = calibration_loess(y, p)
    assert len(full) == 3000 and full["pred"].is_monotonic_increasing
    assert full["obs"].between(0, 1).all()
    outside = calibration_loess(y, p, grid=[-0.5, 0.5])
    assert np.isnan(outside["obs"].iloc[0]) and np.isfinite(outside["obs"].iloc[1])


def test_summary_keys():
    y, p = simulate(500, 6)
    s = calibration_summary(y, p)
    assert {"brier", "slope", "intercept", "hl_statistic", "hl_p", "n"} <= set(s)
    assert s["n"] == 500 and s["brier"] == pytest.approx(brier_score(y, p))
    # constant predictions: no Hosmer-Lemeshow groups, the rest still computed
    s = calibration_summary([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.6])
    assert np.isnan(s["hl_p"])


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], "binary"),
        ([0, 1, 1], [0.1, 0.2], "length mismatch"),
        ([1, 1, 1], [0.1, 0.2, 0.3], "single class"),
        ([0, 1, 1], [0.1, 1.2, 0.3], r"probabilities in \[0, 1\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], "missing"),
        ([0, np.nan, 1], [0.1, 0.2, 0.3], "missing label"),
        (["a", "b", "a"], [0.1, 0.2, 0.3], "0/1"),
    ],
)
def test_input_errors(y, p, message):
    with pytest.raises(InputError, match=message):
        brier_score(y, p)


def test_hosmer_lemeshow_needs_three_groups():
    with pytest.raises(InputError, match="only 1 group"):
        hosmer_lemeshow([0, 1, 0, 1], [0.5] * 4)
    with pytest.raises(InputError, match="'n_groups'"):
        hosmer_lemeshow([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], n_groups=2)


def test_accepts_series():
    y, p = simulate(200, 7)
    assert brier_score(pd.Series(y), pd.Series(p, index=np.arange(200) + 5)) == pytest.approx(brier_score(y, p))
