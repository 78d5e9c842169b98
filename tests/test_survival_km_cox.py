"""Kaplan-Meier, log-rank, Cox and stepwise selection: behaviour and bad input on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines.statistics import multivariate_logrank_test

from her2dlr.errors import InputError
from her2dlr.survival import fit_cox, kaplan_meier, logrank_test, stepwise_cox, univariate_cox
from her2dlr.survival.km import logrank_table


def cohort(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Exponential survival driven by x (strong) and grade (moderate); uniform censoring."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    grade = rng.choice(["G1", "G2", "G3"], size=n)
    noise = rng.normal(size=n)
    lin = 0.8 * x + np.select([grade == "G2", grade == "G3"], [0.4, 0.9], 0.0)
    t_event = rng.exponential(np.exp(-lin))
    t_cens = rng.uniform(0.5, 3.0, size=n)
    return pd.DataFrame({
        "time": np.minimum(t_event, t_cens),
        "event": (t_event <= t_cens).astype(int),
        "x": x, "grade": grade, "noise": noise,
        "arm": rng.choice(["A", "B"], size=n),
    })


def test_km_summary_and_horizons() -> None:
    df = cohort()
    km = kaplan_meier(df, "time", "event", "grade", horizons=[0.5, 1.0, 10.0], horizon_labels=["6m", "1y", "10y"])
    s = km.summary
    assert list(s.index) == ["G1", "G2", "G3"]
    assert s["n"].sum() == len(df) and s["events"].sum() == df["event"].sum()
    # survival falls with grade at 1 year; CIs bracket the estimate
    assert s.loc["G1", "S(1y)"] > s.loc["G3", "S(1y)"]
    assert (s["S(1y) lower"] <= s["S(1y)"]).all() and (s["S(1y)"] <= s["S(1y) upper"]).all()
    # beyond the last follow-up survival is not estimable
    assert s["S(10y)"].isna().all()
    assert km.logrank is not None and km.trend is not None  # 3 groups -> trend added
    assert km.logrank.p_value < 0.05


def test_km_overall_and_at_risk_table() -> None:
    df = cohort()
    km = kaplan_meier(df, "time", "event")
    table = km.at_risk_table([0.0, 1.0, 2.0])
    assert table.loc["all", 0.0] == len(df)
    assert table.loc["all", 1.0] == (df["time"] >= 1.0).sum()
    assert km.logrank is None


def test_logrank_table_reproduces_lifelines_chi2() -> None:
    # the hand-written O/E/V table gives the same k-group statistic as lifelines
    df = cohort(seed=3)
    levels = ["G1", "G2", "G3"]
    obs, exp, var = logrank_table(df["time"].to_numpy(), df["event"].to_numpy() == 1, df["grade"].to_numpy(), levels)
    u = (obs - exp)[:-1]
    chi2 = float(u @ np.linalg.solve(var[:-1, :-1], u))
    ref = multivariate_logrank_test(df["time"], df["grade"], df["event"]).test_statistic
    assert chi2 == pytest.approx(ref, rel=1e-10)
    assert obs.sum() == pytest.approx(exp.sum())


def test_trend_scores_follow_numeric_levels() -> None:
    df = cohort()
    df["g"] = df["grade"].map({"G1": 1, "G2": 2, "G3": 3})
    a = logrank_test(df, "time", "event", "g", trend=True)
    b = logrank_test(df, "time", "event", "grade", trend=True)
    assert a.test_statistic == pytest.approx(b.test_statistic)
    c = logrank_test(df, "time", "event", "grade", trend=True, scores=[0, 1, 5])
    assert c.test_statistic != pytest.approx(b.test_statistic)
    assert list(c.table["score"]) == [0, 1, 5]


def test_result_objects_do_not_print(capsys: pytest.CaptureFixture[str]) -> None:
    df = cohort()
    res = logrank_test(df, "time", "event", "arm")
    fit = fit_cox(df, "time", "event", ["x"])
    assert capsys.readouterr().out == ""
    res.print_summary()
    fit.print_summary()
    out = capsys.readouterr().out
    assert "log-rank" in out and "Cox" in out
    assert "<table>" in fit._repr_html_()
    assert list(res.summary.columns[:3]) == ["test", "group", "test_statistic"]


# ---- bad input --------------------------------------------------------------------------------
def test_no_events_in_a_group_is_documented_not_an_error() -> None:
    df = cohort()
    df.loc[df["grade"] == "G1", "event"] = 0
    km = kaplan_meier(df, "time", "event", "grade")
    assert np.isnan(km.summary.loc["G1", "median"])
    assert any("G1" in n and "no events" in n for n in km.notes)
    assert km.logrank is not None  # still computable: other groups have events
    # ... but a Cox model cannot estimate that level's HR: a clear error naming it
    with pytest.raises(InputError, match=r"No events \(column 'event'\) among the \d+ cases with grade = 'G1'"):
        fit_cox(df, "time", "event", ["grade"])
    # a penalised fit is allowed
    assert fit_cox(df, "time", "event", ["grade"], penalizer=0.1).notes


def test_all_censored() -> None:
    df = cohort()
    df["event"] = 0
    km = kaplan_meier(df, "time", "event", "arm")
    assert km.logrank is None and any("no events" in n for n in km.notes)
    with pytest.raises(InputError, match="Event column 'event' has no events: all 300 cases are censored"):
        logrank_test(df, "time", "event", "arm")
    with pytest.raises(InputError, match="no events"):
        fit_cox(df, "time", "event", ["x"])


@pytest.mark.parametrize(
    ("value", "match"),
    [(-1.0, r"Time column 'time' has negative follow-up times at row 7"),
     (np.nan, r"Time column 'time' has 1 missing values at row 7"),
     ("soon", r"Time column 'time' has non-numeric values at row 7")],
)
def test_bad_times_name_column_and_row(value: object, match: str) -> None:
    df = cohort()
    df["time"] = df["time"].astype(object)
    df.loc[7, "time"] = value
    with pytest.raises(InputError, match=match):
        kaplan_meier(df, "time", "event")


def test_bad_events_and_missing_columns() -> None:
    df = cohort()
    df.loc[3, "event"] = 2
    with pytest.raises(InputError, match=r"Event column 'event' must hold 1 \(event\) or 0 \(censored\); got 2 at row 3"):
        fit_cox(df, "time", "event", ["x"])
    with pytest.raises(InputError, match="The covariate 'xx' is not in the table.*Did you mean 'x'"):
        fit_cox(cohort(), "time", "event", ["xx"])
    with pytest.raises(InputError, match="needs at least two groups"):
        logrank_test(cohort().assign(one="a"), "time", "event", "one")


def test_constant_covariate_is_named() -> None:
    df = cohort().assign(site="X", dose=5.0)
    with pytest.raises(InputError, match="Covariate 'site' is constant"):
        fit_cox(df, "time", "event", ["x", "site"])
    with pytest.raises(InputError, match="Covariate 'dose' is constant"):
        fit_cox(df, "time", "event", ["x", "dose"])
    uni = univariate_cox(df, "time", "event", ["x", "dose"])
    assert "constant" in uni.summary.loc["dose", "note"]


def test_missing_covariate_is_named() -> None:
    df = cohort()
    df.loc[[4, 9], "x"] = np.nan
    with pytest.raises(InputError, match=r"Covariate 'x' has 2 missing values at rows 4, 9"):
        fit_cox(df, "time", "event", ["x"])


# ---- Cox features -----------------------------------------------------------------------------
def test_cox_recovers_effects_reference_and_ph_test() -> None:
    df = cohort(n=600, seed=1)
    fit = fit_cox(df, "time", "event", ["x", "grade", "noise"], reference={"grade": "G1"})
    s = fit.summary
    assert s.loc["x", "hr"] == pytest.approx(np.exp(0.8), rel=0.2)
    assert s.loc["grade[G3]", "hr"] > s.loc["grade[G2]", "hr"] > 1
    assert s.loc["noise", "p"] > 0.01
    assert "ph_p" in s.columns and s["ph_p"].notna().all()
    # reference level changes the encoding, not the fit
    fit2 = fit_cox(df, "time", "event", ["x", "grade", "noise"], reference={"grade": "G3"})
    assert fit2.log_likelihood == pytest.approx(fit.log_likelihood)
    assert "grade[G1]" in fit2.summary.index
    # predict_risk on new rows uses the stored levels; unseen levels are named
    lp = fit.predict_risk(df.head(3))
    assert lp.shape == (3,)
    with pytest.raises(InputError, match="level 'G9'.*not seen"):
        fit.predict_risk(df.head(3).assign(grade="G9"))


def test_penalised_cox_shrinks() -> None:
    df = cohort()
    plain = fit_cox(df, "time", "event", ["x", "noise"])
    ridge = fit_cox(df, "time", "event", ["x", "noise"], penalizer=1.0)
    assert abs(ridge.params["x"]) < abs(plain.params["x"])
    assert any("penalised" in n for n in ridge.notes)


def test_forest_and_km_figures() -> None:
    df = cohort()
    fig = fit_cox(df, "time", "event", ["x", "grade"]).plot()
    assert len(fig.axes) == 1
    fig = kaplan_meier(df, "time", "event", "grade").plot(time_label="Years")
    assert len(fig.axes) == 2  # curves + number-at-risk table


def test_stepwise_drops_noise_and_keeps_forced_terms() -> None:
    df = cohort(n=400, seed=2)
    res = stepwise_cox(df, "time", "event", ["x", "grade", "noise"], direction="backward")
    assert "x" in res.selected and "noise" not in res.selected
    assert res.steps["aic"].is_monotonic_decreasing
    forced = stepwise_cox(df, "time", "event", ["x", "grade", "noise"], direction="forward", keep=["noise"])
    assert "noise" in forced.selected
    assert forced.steps.iloc[0]["terms"] == "noise"
    with pytest.raises(InputError, match="'direction' parameter of stepwise_cox must be one of.*Did you mean 'both'"):
        stepwise_cox(df, "time", "event", ["x"], direction="bth")  # type: ignore[arg-type]


def test_stepwise_skips_models_that_cannot_be_fitted() -> None:
    # 'rare' has a level without events: models containing it are skipped with a note
    df = cohort(n=300, seed=4)
    df["rare"] = "common"
    idx = df.index[df["event"] == 0][:5]
    df.loc[idx, "rare"] = "rare"
    res = stepwise_cox(df, "time", "event", ["x", "rare"], direction="forward")
    assert res.selected == ["x"]
    assert any("rare" in n for n in res.notes)
