"""Baseline table and odds-ratio table: hand-worked tests, layout, selection, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from her2dlr.errors import InputError
from her2dlr.evaluate.tables import baseline_table, infer_types, odds_ratio_table


def two_by_two(a: int, b: int, c: int, d: int) -> pd.DataFrame:
    """Rows for the table [[a, b], [c, d]]: rows = finding yes/no, columns = group pos/neg."""
    finding = ["yes"] * (a + b) + ["no"] * (c + d)
    group = ["pos"] * a + ["neg"] * b + ["pos"] * c + ["neg"] * d
    return pd.DataFrame({"group": group, "finding": finding})


def row(table: pd.DataFrame, variable: str, level: str | None = None) -> pd.Series:
    sel = table["variable"] == variable
    if level is not None:
        sel &= table["level"] == level
    return table.loc[sel].iloc[0]


def test_chi_square_2x2_by_hand():
    # [[20, 10], [10, 20]]: every expected count 15; X2 = 4 * 5^2 / 15 = 6.667 on 1 df, p = 0.009823
    t = baseline_table(two_by_two(20, 10, 10, 20), "group")
    r = row(t, "finding")
    assert r["test"] == "chi-square"
    assert r["p"] == pytest.approx(0.009823274507519235, rel=1e-12)
    assert r["p"] == pytest.approx(stats.chi2.sf(20 / 3, 1), rel=1e-12)
    assert row(t, "finding", "yes")["pos"] == "20 (66.7%)"
    assert row(t, "finding", "no")["neg"] == "20 (66.7%)"
    assert row(t, "n")[["neg", "pos", "overall"]].tolist() == ["30", "30", "60"]
    # with Yates' correction: (|20 - 15| - 0.5)^2 * 4 / 15 = 5.4
    yates = row(baseline_table(two_by_two(20, 10, 10, 20), "group", correction=True), "finding")
    assert yates["p"] == pytest.approx(stats.chi2.sf(5.4, 1), rel=1e-12)


def test_fisher_exact_2x2_by_hand():
    # [[3, 1], [1, 3]], expected counts 2 < 5 -> Fisher. Hypergeometric probabilities of the
    # top-left cell 0..4: 1, 16, 36, 16, 1 (/70); two-sided p = (1 + 16 + 16 + 1) / 70
    r = row(baseline_table(two_by_two(3, 1, 1, 3), "group"), "finding")
    assert r["test"] == "Fisher exact"
    assert r["p"] == pytest.approx(34 / 70, rel=1e-12)


def test_larger_table_with_small_expected_counts_keeps_chi_square_and_says_so():
    df = pd.DataFrame({"group": ["a"] * 12 + ["b"] * 12,
                       "grade": ["I"] * 2 + ["II"] * 5 + ["III"] * 5 + ["I"] * 6 + ["II"] * 4 + ["III"] * 2})
    r = row(baseline_table(df, "group"), "grade")
    assert r["test"].startswith("chi-square (expected count < 5 in")
    table = np.array([[2, 6], [5, 4], [5, 2]])
    assert r["p"] == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


def test_welch_t_test_by_hand():
    # a = 1..5 (mean 3, var 2.5), b = 3..8 (mean 5.5, var 3.5): se^2 = 2.5/5 + 3.5/6 = 1.0833,
    # t = -2.5 / 1.0408 = -2.4019, Welch df = 1.0833^2 / (0.5^2/4 + 0.5833^2/5) = 8.989, p = 0.03980
    df = pd.DataFrame({"group": ["a"] * 5 + ["b"] * 6, "x": [1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8]})
    r = row(baseline_table(df, "group"), "x")
    assert r["test"] == "Welch t-test" and r["level"] == "mean ± SD"
    assert r["p"] == pytest.approx(2 * stats.t.sf(2.401922307076307, 8.98936170212766), rel=1e-9)
    assert r["p"] == pytest.approx(0.039803082024136245, rel=1e-9)
    assert r["a"] == "3.0 ± 1.6" and r["b"] == "5.5 ± 1.9"


def test_mann_whitney_exact_by_hand():
    # every value of a is below every value of b: U = 0; 2 of the C(7, 3) = 35 orderings are as
    # extreme (U = 0 or U = 12), so the exact two-sided p = 2 / 35
    df = pd.DataFrame({"group": ["a"] * 3 + ["b"] * 4, "x": [1.1, 2.3, 3.5, 4.2, 5.1, 6.3, 7.7]})
    r = row(baseline_table(df, "group", types={"x": "nonnormal"}), "x")
    assert r["test"] == "Mann-Whitney U" and r["level"] == "median [IQR]"
    assert r["p"] == pytest.approx(2 / 35, rel=1e-12)
    assert r["a"] == "2.3 [1.7, 2.9]"  # type-7 quartiles of 1.1, 2.3, 3.5


def test_skewed_variable_gets_median_and_three_groups_get_kruskal():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"group": np.repeat(["x", "y", "z"], 60), "size": rng.lognormal(3, 0.9, 180),
                       "age": rng.normal(50, 8, 180)})
    t = baseline_table(df, "group", types={"age": "normal"})
    size, age = row(t, "size"), row(t, "age")
    assert size["test"] == "Kruskal-Wallis" and size["level"] == "median [IQR]"
    samples = [df.loc[df["group"] == g, "size"] for g in "xyz"]
    assert size["p"] == pytest.approx(stats.kruskal(*samples).pvalue)
    assert age["test"] == "Welch ANOVA"  # R: oneway.test(age ~ group) (checked in test_evaluate_reference.py)
    assert list(t.columns) == ["variable", "level", "x", "y", "z", "overall", "p", "test"]


def test_missing_values_are_counted_and_left_out():
    df = pd.DataFrame({"group": ["a"] * 4 + ["b"] * 4 + [None],
                       "grade": ["I", "II", None, "I", "II", "II", "I", None, "I"]})
    t = baseline_table(df, "group")
    assert row(t, "n")["overall"] == "8"
    miss = row(t, "grade", "missing")
    assert (miss["a"], miss["b"], miss["overall"]) == ("1 (25.0%)", "1 (25.0%)", "2 (25.0%)")
    assert row(t, "grade", "I")["a"] == "2 (66.7%)"  # of the 3 non-missing in group a
    assert t.attrs["notes"] == ["1 row(s) with missing 'group' left out"]


def test_infer_types():
    df = pd.DataFrame({"a": [1.0, 2.5, 3.1], "b": [0, 1, 0], "c": ["x", "y", "x"], "d": [True, False, True]})
    assert infer_types(df) == {"a": "numeric", "b": "categorical", "c": "categorical", "d": "categorical"}
    assert infer_types(df, ["a"], {"a": "nonnormal"}) == {"a": "nonnormal"}
    with pytest.raises(InputError, match="'type'.*'categorical'"):
        infer_types(df, ["a"], {"a": "categoric"})


def test_baseline_errors():
    df = pd.DataFrame({"group": ["a", "b"], "age": [50, 60]})
    with pytest.raises(InputError, match=r"\['agee'\].*Did you mean 'age'"):
        baseline_table(df, "group", ["agee"])
    with pytest.raises(InputError, match="1 group"):
        baseline_table(df.assign(group="a"), "group")
    with pytest.raises(InputError, match="non-numeric"):
        baseline_table(df.assign(age=["50", "old"]), "group", types={"age": "numeric"})


# ---------------------------------------------------------------------------- odds ratios
def test_univariable_or_of_a_2x2_table_by_hand():
    # palpable: 7 of 10 events vs 2 of 10 without: OR = (7 * 8) / (3 * 2) = 9.333
    df = pd.DataFrame({"her2": [0] * 8 + [1] * 2 + [0] * 3 + [1] * 7, "palpable": ["no"] * 10 + ["yes"] * 10})
    res = odds_ratio_table(df, "her2", ["palpable"])
    uni = res.univariable
    assert uni["level"].tolist() == ["no", "yes"]
    assert uni.loc[0, "note"] == "reference" and uni.loc[0, "OR"] == 1.0
    assert uni.loc[1, "reference"] == "no"
    assert uni.loc[1, "OR"] == pytest.approx(56 / 6)
    se = np.sqrt(1 / 7 + 1 / 8 + 1 / 3 + 1 / 2)  # Woolf's standard error of the log OR
    assert uni.loc[1, "ci_low"] == pytest.approx(np.exp(np.log(56 / 6) - 1.959964 * se), rel=1e-5)
    assert uni.loc[1, "p"] == pytest.approx(2 * stats.norm.sf(np.log(56 / 6) / se), rel=1e-6)
    assert res.n == 20 and res.n_events == 9


def simulated_clinical(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.lognormal(3, 0.4, n)
    grade = rng.choice(["I", "II", "III"], n)
    noise = rng.normal(size=n)
    lp = -4 + 0.12 * size + np.where(grade == "III", 1.2, 0.0)
    her2 = np.where(rng.random(n) < 1 / (1 + np.exp(-lp)), "positive", "negative")
    return pd.DataFrame({"her2": her2, "size": size, "grade": grade, "noise": noise,
                         "centre": rng.choice(["A", "B"], n)})


def test_stepwise_keeps_the_real_predictors():
    df = simulated_clinical()
    res = odds_ratio_table(df, "her2", ["size", "grade", "noise", "centre"], p_enter=0.1)
    assert res.event == "positive"
    assert {"size", "grade"} <= set(res.candidates)
    assert set(res.selected) == {"size", "grade"}
    multi = res.multivariable
    assert multi["variable"].unique().tolist() == ["size", "grade"]
    assert multi.loc[multi["level"] == "I", "note"].item() == "reference"
    assert multi.loc[multi["level"] == "III", "OR"].item() > 2
    assert res.steps is not None and res.steps.loc[0, "action"] == "start"
    combined = res.combined()
    assert len(combined) == len(res.univariable) and "multi_OR" in combined


def test_forward_none_and_options():
    df = simulated_clinical(seed=1)
    fwd = odds_ratio_table(df, "her2", ["size", "grade", "noise"], stepwise="forward")
    bwd = odds_ratio_table(df, "her2", ["size", "grade", "noise"], stepwise="backward")
    assert set(fwd.selected) == set(bwd.selected)
    everything = odds_ratio_table(df, "her2", ["size", "grade", "noise"], p_enter=0.99, stepwise=None)
    assert everything.selected == everything.candidates and everything.steps is None
    ref = odds_ratio_table(df, "her2", ["grade"], reference={"grade": "III"}, event="negative")
    assert ref.univariable["reference"].unique().tolist() == ["III"]
    assert ref.univariable.loc[ref.univariable["level"] == "I", "OR"].item() > 1  # negative more likely than in III


def test_complete_cases_and_notes():
    df = simulated_clinical(100, seed=2)
    df.loc[:4, "size"] = np.nan
    res = odds_ratio_table(df, "her2", ["size", "grade"])
    assert res.n == 95
    assert any("complete-case analysis: 5 of 100" in n for n in res.notes)


def test_separation_uses_firth():
    df = pd.DataFrame({"y": [0] * 10 + [1] * 10, "marker": ["no"] * 10 + ["yes"] * 10,
                       "x": np.r_[np.linspace(0, 1, 10), np.linspace(0.2, 1.2, 10)]})
    res = odds_ratio_table(df, "y", ["marker"])
    r = res.univariable.iloc[1]
    assert np.isfinite(r["OR"]) and r["note"].startswith("firth")
    assert r["OR"] == pytest.approx((10.5 * 10.5) / (0.5 * 0.5), rel=1e-4)  # Firth: 0.5 added to each cell


def test_odds_ratio_errors():
    df = simulated_clinical(50)
    with pytest.raises(InputError, match="Did you mean 'size'"):
        odds_ratio_table(df, "her2", ["sise"])
    with pytest.raises(InputError, match="'stepwise'"):
        odds_ratio_table(df, "her2", ["size"], stepwise="both-ways")
    with pytest.raises(InputError, match="two values"):
        odds_ratio_table(df.assign(her2="positive"), "her2", ["size"])
    with pytest.raises(InputError, match="reference level 'IV'"):
        odds_ratio_table(df, "her2", ["grade"], reference={"grade": "IV"})
    with pytest.raises(InputError, match="'p_enter'"):
        odds_ratio_table(df, "her2", ["size"], p_enter=1.5)
