"""Propensity matching, treatment benefit by risk group, and HER2-low prognosis (GBSG2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError
from her2dlr.survival import (
    RiskStratifier,
    her2low_prognosis,
    out_of_fold_cox_risk,
    propensity_match,
    treatment_benefit,
)
from her2dlr.survival.matching import standardised_differences
from her2dlr.survival.treatment import benefit_sentence

FIX = Path(__file__).parent / "fixtures" / "survival"
CLINICAL = ["age", "menostat", "tsize", "tgrade", "pnodes", "progrec", "estrec"]


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    df = pd.read_csv(FIX / "gbsg2.csv")
    oof = out_of_fold_cox_risk(df, "time", "cens", CLINICAL, seed=0)
    df["risk"] = oof["risk"]
    df["risk_group"] = RiskStratifier(5 * 365.25).fit_transform(df["risk"], df["time"], df["cens"])
    return df


# ---- matching ---------------------------------------------------------------------------------
def test_matching_balances_gbsg2(gbsg2: pd.DataFrame) -> None:
    m = propensity_match(gbsg2, "horTh", CLINICAL)
    assert (m.treated_value, m.control_value) == ("yes", "no")
    assert m.max_smd_before > 0.5  # age / menopause differ a lot between arms
    assert m.max_smd_after < 0.1  # issue target
    assert m.n_treated_matched >= 0.95 * m.n_treated
    # 1:1 without replacement: each control used once, two rows per set
    ctrl = m.matched[m.matched["horTh"] == "no"]
    assert ctrl.index.is_unique and len(ctrl) == m.n_treated_matched
    assert (m.matched.groupby("match_set").size() == 2).all()
    assert list(m.balance.index[:3]) == ["logit(propensity)", "age", "menostat[Post]"]


def test_matching_variants(gbsg2: pd.DataFrame) -> None:
    rep = propensity_match(gbsg2, "horTh", CLINICAL, replace=True)
    assert rep.n_control_matched < rep.n_treated_matched  # controls reused
    two = propensity_match(gbsg2, "horTh", CLINICAL, ratio=2, caliper=None)
    # no caliper, 1:2 without replacement: treated cases take two controls each until the 440 run out
    assert two.n_control_matched == two.n_control == 440
    assert two.n_treated_matched == 220 and any("no control" in n for n in two.notes)
    assert (two.matched.groupby("match_set").size() == 3).all()
    w = two.matched.groupby("match_set")["match_weight"].sum()
    np.testing.assert_allclose(w, 2.0)  # treated 1 + controls 1/k each
    rnd = propensity_match(gbsg2, "horTh", CLINICAL, order="random", seed=1)
    assert rnd.max_smd_after < 0.15


def test_smd_formula() -> None:
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    treated = np.array([True, True, True, False, False, False])
    got = standardised_differences(X, treated).loc["a"]
    expected = (2.0 - 5.0) / np.sqrt((np.var([1, 2, 3]) + np.var([4, 5, 6])) / 2)
    assert got["smd"] == pytest.approx(expected)
    w = np.array([1, 1, 1, 0, 0, 2.0])  # weights: control mean becomes 6
    assert standardised_differences(X, treated, w).loc["a", "mean_control"] == 6.0


def test_matching_bad_input(gbsg2: pd.DataFrame) -> None:
    one = gbsg2.copy()
    one["arm"] = "none"
    one.loc[0, "arm"] = "trastuzumab"
    with pytest.raises(InputError, match="Arm arm = 'trastuzumab' has 1 case"):
        propensity_match(one, "arm", CLINICAL)
    three = gbsg2.assign(arm=np.resize(["none", "T", "TP"], len(gbsg2)))
    with pytest.raises(InputError, match="has 3 arms.*give treated_value and control_value"):
        propensity_match(three, "arm", CLINICAL)
    m = propensity_match(three, "arm", ["age", "pnodes"], treated_value="TP", control_value="none")
    assert set(m.matched["arm"]) == {"TP", "none"}
    with pytest.raises(InputError, match="Covariate 'site' is constant"):
        propensity_match(gbsg2.assign(site="A"), "horTh", ["age", "site"])
    with pytest.raises(InputError, match="separates the arms perfectly|could not be fitted"):
        propensity_match(gbsg2.assign(leak=(gbsg2["horTh"] == "yes").astype(float)), "horTh", ["age", "leak"])
    with pytest.raises(InputError, match="'order' parameter of propensity_match.*Did you mean 'random'"):
        propensity_match(gbsg2, "horTh", CLINICAL, order="randm")  # type: ignore[arg-type]


# ---- treatment benefit ------------------------------------------------------------------------
def test_benefit_sentence() -> None:
    s = benefit_sentence("trastuzumab", "the high-risk group", 0.91, 0.60, 1.38, 0.66)
    assert s == "no significant benefit from trastuzumab in the high-risk group (HR 0.91, 95% CI 0.60-1.38, p = 0.66)"
    assert benefit_sentence("X", "g", 0.5, 0.3, 0.8, 0.004).startswith("significant benefit from X in g (HR 0.50")
    assert "p = 0.004" in benefit_sentence("X", "g", 0.5, 0.3, 0.8, 0.004)
    assert benefit_sentence("X", "g", 2.0, 1.3, 3.0, 0.001).startswith("significantly worse outcome with X")


def test_treatment_benefit_by_risk_group(gbsg2: pd.DataFrame) -> None:
    res = treatment_benefit(gbsg2, "time", "cens", "horTh", group="risk_group", treatment_name="hormonal therapy",
                            group_phrase="the {group}-risk group")
    assert list(res.groups) == ["low", "moderate", "high"]  # categorical order kept
    s = res.summary
    per_group = s[s["status"] == "ok"].set_index("group")
    assert {"low", "moderate", "high"} <= set(per_group.index)
    assert per_group.loc["low", "n_arm"] + per_group.loc["low", "n_reference"] == per_group.loc["low", "n"]
    assert all(0 < p <= 1 for p in per_group["logrank_p"].iloc[:3])
    assert res.stratified is not None and res.interaction is not None
    assert res.stratified.summary.loc["horTh[yes]", "hr"] < 1  # hormonal therapy protective overall
    sentences = res.sentences
    assert len(sentences) == 3
    assert all("benefit from hormonal therapy in the" in x and "-risk group (HR " in x for x in sentences)
    fig = res.plot(time_scale=365.25, time_label="Years")
    assert len(fig.axes) == 6  # 3 groups x (curves + at-risk table)


def test_treatment_benefit_with_matching_and_multi_arm(gbsg2: pd.DataFrame) -> None:
    res = treatment_benefit(gbsg2, "time", "cens", "horTh", group="risk_group", match={"caliper": 0.2},
                            match_covariates=CLINICAL)
    low = res.groups["low"]
    assert low.match is not None and low.matched_cox is not None
    row = res.summary.set_index("group").loc["low"]
    assert row["estimate"] == "matched Cox (robust SE)"
    assert np.isfinite(row["hr_unmatched"])
    arms = gbsg2.assign(arm=np.resize(["none", "T", "TP"], len(gbsg2)))
    multi = treatment_benefit(arms, "time", "cens", "arm", reference="none", treatment_name="anti-HER2")
    assert multi.arms == ["none", "T", "TP"]
    assert len(multi.sentences) == 2
    assert "anti-HER2 = T (vs none)" in multi.sentences[0]


def test_treatment_arm_with_one_patient_is_not_assessed(gbsg2: pd.DataFrame) -> None:
    df = gbsg2.copy()
    high_yes = df.index[(df["risk_group"] == "high") & (df["horTh"] == "yes")]
    df = df.drop(index=high_yes[1:])  # one treated patient left in the high-risk group
    res = treatment_benefit(df, "time", "cens", "horTh", group="risk_group")
    high = res.groups["high"]
    assert high.status == "not assessed"
    assert "arm 'yes' has 1 case(s)" in high.reason and "need at least 2" in high.reason
    assert any(x.startswith("high: not assessed") for x in res.sentences)
    assert res.groups["low"].status == "ok"
    res.plot()  # a not-assessed panel is drawn with its reason


def test_treatment_arm_without_events(gbsg2: pd.DataFrame) -> None:
    df = gbsg2.copy()
    df.loc[(df["risk_group"] == "low") & (df["horTh"] == "yes"), "cens"] = 0
    res = treatment_benefit(df, "time", "cens", "horTh", group="risk_group")
    low = res.groups["low"]
    assert low.logrank is not None  # log-rank still reported
    assert "not estimable" in low.rows[0]["conclusion"]
    assert any("monotone likelihood" in n for n in low.notes)


def test_treatment_bad_input(gbsg2: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="The treatment column 'horTH' is not in the table.*Did you mean 'horTh'"):
        treatment_benefit(gbsg2, "time", "cens", "horTH")
    with pytest.raises(InputError, match="single arm"):
        treatment_benefit(gbsg2.assign(arm="A"), "time", "cens", "arm")
    with pytest.raises(InputError, match="Reference arm 'maybe'"):
        treatment_benefit(gbsg2, "time", "cens", "horTh", reference="maybe")


# ---- HER2-low prognosis -----------------------------------------------------------------------
def with_status(df: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    out = df.copy()
    out["status"] = np.where(out["progrec"] > 20, "HER2-low", "HER2-zero")
    flip = rng.random(len(out)) < 0.15
    out["pred"] = np.where(flip, np.where(out["status"] == "HER2-low", "HER2-zero", "HER2-low"), out["status"])
    return out


def test_her2low_true_vs_predicted(gbsg2: pd.DataFrame) -> None:
    df = with_status(gbsg2)
    res = her2low_prognosis(df, "time", "cens", true_col="status", pred_col="pred",
                            covariates=["age", "tsize", "tgrade", "pnodes"], positive="HER2-low", n_bootstrap=100)
    s = res.summary
    assert list(s.index) == ["true status", "predicted status"]
    assert s.loc["true status", "hr_status"] < 1 and s.loc["predicted status", "hr_status"] < 1
    # the noisy copy is less informative: smaller log-rank statistic, higher AIC
    assert s.loc["predicted status", "logrank_chi2"] < s.loc["true status", "logrank_chi2"]
    assert s.loc["predicted status", "aic"] > s.loc["true status", "aic"]
    assert (s["c_ci_low"] < s["c_index"]).all() and (s["c_index"] < s["c_ci_high"]).all()
    assert "status" in res.cox_true.covariates and "pred" in res.cox_pred.covariates  # kept in
    assert res.agreement["accuracy"] == pytest.approx((df["status"] == df["pred"]).mean())
    assert res.km_true.groups == ["HER2-zero", "HER2-low"]  # reference first
    assert len(res.plot().axes) == 4


def test_her2low_bad_status_columns(gbsg2: pd.DataFrame) -> None:
    df = with_status(gbsg2)
    df["prob"] = np.linspace(0, 1, len(df))
    with pytest.raises(InputError, match="Predicted status column 'prob' has values.*thresholded first"):
        her2low_prognosis(df, "time", "cens", true_col="status", pred_col="prob", stepwise=False, n_bootstrap=0)
    df["three"] = np.resize(["a", "b", "c"], len(df))
    with pytest.raises(InputError, match="Status column 'three' must hold two values"):
        her2low_prognosis(df, "time", "cens", true_col="three", pred_col="pred", stepwise=False, n_bootstrap=0)
