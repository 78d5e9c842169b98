"""RiskStratifier: Youden cut-off at a horizon, k-means above it, fitted state reused unchanged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from her2dlr.errors import InputError
from her2dlr.survival import RiskStratifier, time_dependent_roc


def data(n: int = 400, seed: int = 0, censor: bool = True) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    t_event = rng.exponential(np.exp(-1.2 * score))
    t_cens = rng.uniform(0.2, 4.0, size=n) if censor else np.full(n, np.inf)
    t = np.minimum(t_event, t_cens)
    return pd.Series(score, name="dlr_score"), t, (t_event <= t_cens).astype(int)


def test_youden_equals_plain_roc_without_censoring() -> None:
    score, t, e = data(censor=False)
    horizon = 1.0
    y = (t <= horizon).astype(int)
    fpr, tpr, _ = roc_curve(y, score)
    best_j = float(np.max(tpr - fpr))
    for mode in ("ipcw", "exclude"):
        strat = RiskStratifier(horizon, censoring=mode).fit(score, t, e)  # type: ignore[arg-type]
        assert strat.youden_ == pytest.approx(best_j, abs=1e-12)
        # the cut-off lies between two observed scores, so it splits them exactly as the ROC point
        pred = score >= strat.cutoff_
        sens = pred[y == 1].mean()
        spec = (~pred[y == 0]).mean()
        assert sens + spec - 1 == pytest.approx(best_j, abs=1e-12)


def test_ipcw_reweights_cases_under_censoring() -> None:
    score, t, e = data()
    roc_ipcw = time_dependent_roc(score.to_numpy(), t, e == 1, 1.5, censoring="ipcw")
    roc_excl = time_dependent_roc(score.to_numpy(), t, e == 1, 1.5, censoring="exclude")
    # specificity does not depend on the weights (all controls share one weight) ...
    np.testing.assert_allclose(roc_ipcw["specificity"], roc_excl["specificity"])
    # ... sensitivity does
    assert not np.allclose(roc_ipcw["sensitivity"], roc_excl["sensitivity"])
    assert roc_ipcw["sensitivity"].is_monotonic_decreasing


def test_groups_are_ordered_and_state_is_reused() -> None:
    score, t, e = data()
    train = np.arange(len(score)) < 300
    strat = RiskStratifier(1.5, random_state=0).fit(score[train], t[train], e[train])
    state = json.loads(json.dumps(strat.to_dict()))  # JSON-serialisable
    assert state["state"]["cutoff_"] == strat.cutoff_
    groups = strat.transform(score)
    assert list(groups.cat.categories) == ["low", "moderate", "high"]
    assert groups.cat.ordered
    # low below the cut-off, moderate/high split at the midpoint of the two centres
    assert (score[groups == "low"] < strat.cutoff_).all()
    assert (score[groups != "low"] >= strat.cutoff_).all()
    assert strat.centers_[0] < strat.boundaries_[0] < strat.centers_[1]
    assert (score[groups == "high"] >= strat.boundaries_[0]).all()
    # test cases transformed with the training state: fitting is not touched by them
    before = strat.to_dict()
    strat.transform(score[~train])
    assert strat.to_dict() == before
    # risk increases across groups in the training data
    med = pd.Series(t[train]).groupby(groups[train].to_numpy(), observed=True).median()
    assert med["low"] > med["moderate"] > med["high"]
    # a reloaded stratifier gives the same groups
    again = RiskStratifier.from_dict(state)
    assert (again.transform(score) == groups).all()


def test_save_load(tmp_path) -> None:
    score, t, e = data()
    strat = RiskStratifier(1.5).fit(score, t, e)
    path = strat.save(tmp_path / "risk.json")
    loaded = RiskStratifier.load(path)
    assert loaded.cutoff_ == strat.cutoff_ and loaded.centers_ == strat.centers_
    with pytest.raises(InputError, match="not fitted yet"):
        RiskStratifier(1.0).transform([1.0])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="Not a saved RiskStratifier state"):
        RiskStratifier.load(tmp_path / "bad.json")


def test_ties_stay_on_one_side() -> None:
    score, t, e = data()
    tied = pd.Series(np.round(score, 0), name="tied")  # 5-7 distinct values
    strat = RiskStratifier(1.5).fit(tied, t, e)
    values = np.unique(tied)
    assert not np.isin(strat.cutoff_, values)  # a midpoint, never an observed value
    groups = strat.transform(tied)
    per_value = pd.Series(groups.astype(str).to_numpy()).groupby(tied.to_numpy()).nunique()
    assert (per_value == 1).all()  # equal scores -> equal group


def test_lower_is_riskier_mirrors() -> None:
    score, t, e = data()
    a = RiskStratifier(1.5).fit_transform(score, t, e)
    b = RiskStratifier(1.5, higher_is_riskier=False).fit_transform(-score, t, e)
    assert (a.astype(str) == b.astype(str)).all()


def test_bad_input_messages() -> None:
    score, t, e = data()
    with pytest.raises(InputError, match="Score 'dlr_score' takes a single value"):
        RiskStratifier(1.0).fit(score * 0 + 1, t, e)
    with pytest.raises(InputError, match="No training case has an event by the horizon"):
        RiskStratifier(1e-9).fit(score, t, e)
    with pytest.raises(InputError, match="No training case is followed beyond the horizon"):
        RiskStratifier(1e9).fit(score, t, e)
    with pytest.raises(InputError, match="'censoring' parameter of RiskStratifier must be one of.*Did you mean 'ipcw'"):
        RiskStratifier(1.0, censoring="ipc").fit(score, t, e)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="'horizon' parameter of RiskStratifier must be a number > 0"):
        RiskStratifier(-1).fit(score, t, e)
    bad = score.copy()
    bad.iloc[[2, 5]] = np.nan
    with pytest.raises(InputError, match="Score 'dlr_score' has missing or non-numeric values at rows 2, 5"):
        RiskStratifier(1.0).fit(bad, t, e)
    with pytest.raises(InputError, match="distinct value"):
        # only one distinct value above any cut-off: k-means with k=2 impossible
        binary = pd.Series((score > 0).astype(float), name="binary")
        RiskStratifier(1.5).fit(binary, t, e)


def test_more_clusters_and_labels() -> None:
    score, t, e = data()
    strat = RiskStratifier(1.5, n_clusters=3, labels=["low", "mid", "high", "very high"]).fit(score, t, e)
    assert list(strat.transform(score).cat.categories) == ["low", "mid", "high", "very high"]
    assert len(strat.centers_) == 3 and len(strat.boundaries_) == 2
    with pytest.raises(InputError, match="must name 3 groups"):
        RiskStratifier(1.5, labels=["a", "b"]).fit(score, t, e)
