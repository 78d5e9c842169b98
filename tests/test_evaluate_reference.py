"""her2dlr.evaluate against R: pROC (DeLong), rms (val.prob), base stats (tests, glm, lowess).

R values come from ``scripts/r/evaluate_reference.R`` (R 4.2.2, pROC 1.18.0, rms 6.5.0; see
``tests/fixtures/evaluate/r_versions.csv``) run on the committed inputs that
``tests/fixtures/evaluate/make_inputs.py`` writes. R is not needed to run these tests. Each
test quotes the R call it reproduces. Tolerances are absolute unless said otherwise; the
values observed when the fixtures were made are noted next to them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from her2dlr.evaluate.calibration import (
    calibration_loess,
    calibration_slope_intercept,
    calibration_summary,
    hosmer_lemeshow,
)
from her2dlr.evaluate.compare import delong_unpaired
from her2dlr.evaluate.delong import delong_auc_ci, delong_test
from her2dlr.evaluate.tables import baseline_table, odds_ratio_table

FIX = Path(__file__).parent / "fixtures" / "evaluate"
DELONG_TOL = 1e-6  # observed < 2e-12
HL_TOL = 1e-9  # observed ~5e-14: same groups, same sums
VALPROB_TOL = 1e-6  # observed < 5e-9 (both sides iterate Newton / IRLS to convergence)
SE_TOL = 1e-8  # observed < 1e-12 (R glm run with epsilon = 1e-14; statsmodels IRLS with tol = 1e-12)
TEST_RTOL = 1e-9  # p-values of the classical tests, relative
OR_RTOL = 1e-6  # glm vs statsmodels Logit, relative; observed 3e-12 (one variable), 3e-8 (all five)


@pytest.fixture(scope="module")
def pred() -> dict[str, pd.DataFrame]:
    return {k: pd.read_csv(FIX / f"predictions_{k}.csv") for k in ("a", "b", "small")}


@pytest.fixture(scope="module")
def clinical() -> pd.DataFrame:
    return pd.read_csv(FIX / "clinical.csv")


def r_table(name: str) -> pd.DataFrame:
    return pd.read_csv(FIX / name)


def test_inputs_are_what_make_inputs_writes(pred, clinical):
    spec = importlib.util.spec_from_file_location("make_inputs", FIX / "make_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np.testing.assert_allclose(pred["a"].to_numpy(), module.predictions(240, 20240501).to_numpy(), atol=5e-7)
    np.testing.assert_allclose(pred["small"]["p_model"], module.small(20240503)["p_model"], atol=1e-12)
    made = module.clinical(20240504)
    made["grade"] = made["grade"].fillna(np.nan)
    pd.testing.assert_frame_equal(clinical, made, check_dtype=False)


# ---------------------------------------------------------------------------- pROC
def test_auc_and_delong_ci_match_proc(pred):
    # r <- roc(y, p, direction = "<", levels = c(0, 1)); auc(r); var(r); ci.auc(r, method = "delong")
    for r in r_table("r_auc_delong.csv").itertuples():
        d = pred[r.dataset]
        res = delong_auc_ci(d["y"], d[r.predictor])
        assert res.auc == pytest.approx(r.auc, abs=DELONG_TOL)
        assert res.se**2 == pytest.approx(r.var, abs=DELONG_TOL)
        assert res.ci_low == pytest.approx(r.ci_low, abs=DELONG_TOL)
        assert res.ci_high == pytest.approx(r.ci_high, abs=DELONG_TOL)  # 1 for 'small': both clip at 1


def test_paired_delong_matches_proc_roc_test(pred):
    # roc.test(roc(y, p1), roc(y, p2), method = "delong", paired = TRUE)
    for r in r_table("r_roc_test_paired.csv").itertuples():
        d = pred[r.dataset]
        t = delong_test(d["y"], d[r.a], d[r.b])
        assert (t.auc_a, t.auc_b) == pytest.approx((r.auc_a, r.auc_b), abs=DELONG_TOL)
        assert t.z == pytest.approx(r.z, abs=DELONG_TOL)
        assert t.p_value == pytest.approx(r.p, abs=DELONG_TOL)


def test_unpaired_delong_matches_proc_roc_test(pred):
    # roc.test(roc(y1, p1), roc(y2, p2), method = "delong", paired = FALSE): statistic D and
    # p = 2 * pt(-|D|, df) with Welch-Satterthwaite df (pROC's delong.unpaired.test)
    for r in r_table("r_roc_test_unpaired.csv").itertuples():
        args = (pred[r.d1]["y"], pred[r.d1][r.p1], pred[r.d2]["y"], pred[r.d2][r.p2])
        t = delong_unpaired(*args, distribution="t")
        assert (t["auc_1"], t["auc_2"]) == pytest.approx((r.auc_1, r.auc_2), abs=DELONG_TOL)
        assert t["z"] == pytest.approx(r.z, abs=DELONG_TOL)
        assert t["p_value"] == pytest.approx(r.p, abs=DELONG_TOL)
        z = delong_unpaired(*args)  # the default z-test: same statistic, normal reference
        assert z["z"] == t["z"] and z["p_value"] == pytest.approx(2 * stats.norm.sf(abs(r.z)), abs=1e-12)
        assert abs(z["p_value"] - r.p) < 0.006  # observed 0.0005-0.005 with 150-240 cases per cohort


# ---------------------------------------------------------------------------- calibration
def test_hosmer_lemeshow_matches_r(pred):
    # qq <- unique(quantile(p, seq(0, 1, 1/g))); cut(p, qq, include.lowest = TRUE); textbook X2, df = groups - 2
    for r in r_table("r_hosmer_lemeshow.csv").itertuples():
        d = pred[r.dataset]
        hl = hosmer_lemeshow(d["y"], d[r.predictor], int(r.g))
        assert hl.df == r.df
        assert hl.statistic == pytest.approx(r.statistic, abs=HL_TOL)
        assert hl.p_value == pytest.approx(r.p, abs=HL_TOL)


def test_hosmer_lemeshow_groups_match_r(pred):
    groups = r_table("r_hosmer_lemeshow_groups.csv")
    for (dataset, predictor, g), ref in groups.groupby(["dataset", "predictor", "g"]):
        d = pred[dataset]
        table = hosmer_lemeshow(d["y"], d[predictor], int(g)).table
        assert table["n"].tolist() == ref["n"].tolist()
        assert table["observed"].tolist() == ref["observed"].tolist()
        np.testing.assert_allclose(table["expected"], ref["expected"], rtol=0, atol=1e-9)
    # 'small' has 1-decimal scores: tied quantile breaks leave 5 of the 10 groups
    assert (groups["dataset"] == "small").sum() == 5


def test_val_prob_matches_rms(pred):
    # val.prob(p, y, pl = FALSE)[c("Brier", "Intercept", "Slope", "Eavg", "E90", "Emax")]
    # glm(y ~ offset(qlogis(p)), family = binomial)  (calibration-in-the-large)
    for r in r_table("r_val_prob.csv").itertuples():
        d = pred[r.dataset]
        s = calibration_summary(d["y"], d[r.predictor])
        si = calibration_slope_intercept(d["y"], d[r.predictor])
        for key in ("brier", "slope", "intercept_recal", "eavg", "e90", "emax"):
            assert s[key] == pytest.approx(getattr(r, key), abs=VALPROB_TOL), (r.dataset, r.predictor, key)
        assert si["intercept"] == pytest.approx(r.intercept_citl, abs=VALPROB_TOL)
        assert si["intercept_se"] == pytest.approx(r.intercept_citl_se, abs=SE_TOL)
        assert si["slope_se"] == pytest.approx(r.slope_se, abs=SE_TOL)


def test_overfit_predictions_have_slope_about_one_half(pred):
    # p_overfit doubles the logit of a calibrated model: val.prob's slope 0.570
    ref = r_table("r_val_prob.csv").set_index("predictor").loc["p_overfit"]
    assert ref["slope"] < 0.6 and calibration_slope_intercept(pred["a"]["y"], pred["a"]["p_overfit"])["slope"] < 0.6


def test_lowess_matches_r(pred):
    # lowess(p, y, iter = 0)  (f = 2/3, delta = 0.01 * diff(range(p)))
    ref = r_table("r_lowess.csv")
    curve = calibration_loess(pred["a"]["y"], pred["a"]["p_model"], clip=False)
    np.testing.assert_allclose(curve["pred"], ref["x"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve["obs"], ref["y"], rtol=0, atol=1e-8)  # observed 1.4e-10


# ---------------------------------------------------------------------------- tables
def r_test(variable: str, test: str) -> float:
    t = r_table("r_baseline_tests.csv")
    return float(t.loc[(t["variable"] == variable) & (t["test"] == test), "p"].item())


def cell(table: pd.DataFrame, variable: str, column: str = "p"):
    return table.loc[table["variable"] == variable, column].iloc[0]


def test_baseline_tests_match_r(clinical):
    t = baseline_table(clinical, "her2", types={"age": "normal", "size": "nonnormal"})
    # t.test(age ~ her2); wilcox.test(size ~ her2)
    assert cell(t, "age", "test") == "Welch t-test"
    assert cell(t, "age") == pytest.approx(r_test("age", "welch_t"), rel=TEST_RTOL)
    assert cell(t, "size", "test") == "Mann-Whitney U"
    assert cell(t, "size") == pytest.approx(r_test("size", "wilcoxon"), rel=TEST_RTOL)
    # chisq.test(table(grade, her2), correct = FALSE); same for palpable
    assert cell(t, "grade") == pytest.approx(r_test("grade", "chisq"), rel=TEST_RTOL)
    assert cell(t, "palpable") == pytest.approx(r_test("palpable", "chisq"), rel=TEST_RTOL)
    # fisher.test(table(calcification, her2)): an expected count is 4.9 < 5
    assert cell(t, "calcification", "test") == "Fisher exact"
    assert cell(t, "calcification") == pytest.approx(r_test("calcification", "fisher"), rel=TEST_RTOL)
    yates = baseline_table(clinical, "her2", ["palpable"], correction=True)
    assert cell(yates, "palpable") == pytest.approx(r_test("palpable", "chisq_yates"), rel=TEST_RTOL)


def test_baseline_three_groups_and_normality_match_r(clinical):
    by_grade = baseline_table(clinical, "grade", ["age", "size"], types={"age": "normal", "size": "nonnormal"})
    # oneway.test(age ~ grade) (Welch); kruskal.test(size ~ grade)
    assert cell(by_grade, "age") == pytest.approx(r_test("age", "welch_anova_by_grade"), rel=1e-7)
    assert cell(by_grade, "size") == pytest.approx(r_test("size", "kruskal_by_grade"), rel=TEST_RTOL)
    # shapiro.test(x[her2 == k]): scipy and R share Royston's algorithm
    for var in ("age", "size"):
        for k in (0, 1):
            x = clinical.loc[clinical["her2"] == k, var].dropna()
            assert stats.shapiro(x).pvalue == pytest.approx(r_test(f"{var}_her2_{k}", "shapiro"), rel=1e-4)
    auto = baseline_table(clinical, "her2", ["age", "size"])
    normal_age = r_test("age_her2_0", "shapiro") > 0.05 and r_test("age_her2_1", "shapiro") > 0.05
    assert cell(auto, "age", "level") == ("mean ± SD" if normal_age else "median [IQR]")
    assert cell(auto, "size", "level") == "median [IQR]"  # log-normal sizes: Shapiro rejects


def _term(variable: str, level: str) -> str:
    return variable + level  # R's treatment-contrast names: gradeII, palpableyes, age


def test_odds_ratios_match_glm(clinical):
    # glm(her2 ~ x, family = binomial, data = na.omit(clinical)); exp(coef); exp(confint.default(fit))
    variables = ["age", "size", "grade", "palpable", "calcification"]
    ref = r_table("r_odds_ratios.csv")
    res = odds_ratio_table(clinical, "her2", variables, p_enter=0.999, stepwise=None)
    assert res.n == len(clinical.dropna())
    for model, table in (("univariable", res.univariable), ("all", res.multivariable)):
        expect = ref[ref["model"] == model].set_index("term")
        rows = table[table["note"] != "reference"]
        got = rows.set_axis(pd.Index([_term(v, lev) for v, lev in zip(rows["variable"], rows["level"])]), axis=0)
        assert sorted(got.index) == sorted(expect.index)
        for col, rcol in (("OR", "or"), ("ci_low", "ci_low"), ("ci_high", "ci_high"), ("p", "p")):
            np.testing.assert_allclose(got.loc[expect.index, col], expect[rcol], rtol=OR_RTOL, err_msg=f"{model} {col}")
    # joint Wald test of grade: b' V^-1 b on 2 df
    wald = r_table("r_wald_grade.csv").iloc[0]
    p_grade = res.univariable.loc[res.univariable["variable"] == "grade", "p_overall"].iloc[0]
    assert p_grade == pytest.approx(wald["p"], rel=OR_RTOL)


# ---------------------------------------------------------------------------- bench
def test_reference_bench_reports_small_differences():
    from her2dlr.bench import BenchOptions, run_bench

    lines = {line["metric"]: line for line in run_bench("reference", BenchOptions())}
    assert set(lines) == {"delong_max_abs_diff", "hl_max_abs_diff", "calibration_max_abs_diff", "dca_max_abs_diff"}
    assert lines["delong_max_abs_diff"]["value"] < DELONG_TOL and lines["delong_max_abs_diff"]["n"] == 48
    assert lines["hl_max_abs_diff"]["value"] < HL_TOL
    assert lines["calibration_max_abs_diff"]["value"] < VALPROB_TOL
    if importlib.util.find_spec("dcurves") is not None:
        assert lines["dca_max_abs_diff"]["value"] < 1e-9 and lines["dca_max_abs_diff"]["n"] == 495
