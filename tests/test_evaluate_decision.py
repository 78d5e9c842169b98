"""Decision curves: hand-worked net benefit and agreement with the dcurves package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError
from her2dlr.evaluate.decision import TREAT_ALL, TREAT_NONE, decision_curve

FIX = Path(__file__).parent / "fixtures" / "evaluate"
DCA_TOL = 1e-12  # observed ~6e-17: the same arithmetic on the same counts


def test_hand_worked_net_benefit():
    # 4 cases, 2 events. At t = 0.5 the model treats cases 1 and 3 (both events): NB = 2/4 = 0.5;
    # treat all: 2/4 - 2/4 * 1 = 0. At t = 0.25: the model treats 1, 3, 4 -> 2/4 - 1/4 * (1/3) = 5/12;
    # treat all: 2/4 - 2/4 * (1/3) = 1/3.
    dc = decision_curve([1, 0, 1, 0], {"m": [0.9, 0.2, 0.6, 0.4]}, thresholds=[0.25, 0.5])
    nb = dc.set_index(["model", "threshold"])["net_benefit"]
    assert nb[("m", 0.5)] == pytest.approx(0.5)
    assert nb[("m", 0.25)] == pytest.approx(5 / 12)
    assert nb[(TREAT_ALL, 0.25)] == pytest.approx(1 / 3)
    assert nb[(TREAT_ALL, 0.5)] == pytest.approx(0.0)
    assert (dc.loc[dc["model"] == TREAT_NONE, "net_benefit"] == 0).all()
    assert dc["model"].unique().tolist() == ["m", TREAT_ALL, TREAT_NONE]
    # net interventions avoided per 100: (5/12 - 1/3) / (1/3) * 100 = 25
    avoided = dc.set_index(["model", "threshold"])["net_interventions_avoided"]
    assert avoided[("m", 0.25)] == pytest.approx(25.0)


def test_threshold_is_inclusive():
    dc = decision_curve([1, 0], {"m": [0.5, 0.2]}, thresholds=[0.5])
    assert dc.loc[0, "tp_rate"] == 0.5  # p == t counts as treated


def test_perfect_model_and_standardized_net_benefit():
    y = np.r_[np.ones(30, int), np.zeros(70, int)]
    dc = decision_curve(y, {"perfect": y.astype(float)}, standardized=True)
    perfect = dc[dc["model"] == "perfect"]
    np.testing.assert_allclose(perfect["net_benefit"], 0.3)
    np.testing.assert_allclose(perfect["standardized_net_benefit"], 1.0)
    np.testing.assert_allclose(dc["standardized_net_benefit"], dc["net_benefit"] / 0.3)
    assert len(dc) == 3 * 99


def test_harm_is_subtracted():
    y = [1, 0, 1, 0, 1]
    p = [0.7, 0.3, 0.8, 0.6, 0.2]
    base = decision_curve(y, {"m": p})
    harmed = decision_curve(y, {"m": p}, harm={"m": 0.01})
    diff = base["net_benefit"] - harmed["net_benefit"]
    np.testing.assert_allclose(diff[base["model"] == "m"], 0.01)
    np.testing.assert_allclose(diff[base["model"] != "m"], 0.0)


@pytest.mark.parametrize("models", [("p_model",), ("p_model", "p_clin", "p_overfit", "p_tied")])
def test_matches_dcurves(models):
    dcurves = pytest.importorskip("dcurves")
    d = pd.read_csv(FIX / "predictions_a.csv")
    t = np.arange(0.01, 1.0, 0.01)
    # dcurves.dca(data = d, outcome = "y", modelnames = [...], thresholds = t)
    ref = dcurves.dca(data=d, outcome="y", modelnames=list(models), thresholds=t)
    ref["model"] = ref["model"].replace({"all": TREAT_ALL, "none": TREAT_NONE})
    mine = decision_curve(d["y"], {m: d[m] for m in models}, t, nper=1)
    both = mine.merge(ref, on=["model", "threshold"], suffixes=("", "_ref"), validate="one_to_one")
    assert len(both) == len(mine) == (len(models) + 2) * len(t)
    for col in ("net_benefit", "tp_rate", "fp_rate", "test_pos_rate"):
        assert np.abs(both[col] - both[f"{col}_ref"].astype(float)).max() < DCA_TOL, col
    assert np.abs(both["net_interventions_avoided"] - both["net_intervention_avoided"].astype(float)).max() < 1e-9


def test_matches_dcurves_with_ties_and_coarse_thresholds():
    dcurves = pytest.importorskip("dcurves")
    d = pd.read_csv(FIX / "predictions_small.csv")  # 1-decimal scores: thresholds hit them exactly
    t = np.round(np.arange(0.05, 0.96, 0.05), 2)
    ref = dcurves.dca(data=d, outcome="y", modelnames=["p_model"], thresholds=t)
    ref["model"] = ref["model"].replace({"all": TREAT_ALL, "none": TREAT_NONE})
    mine = decision_curve(d["y"], {"p_model": d["p_model"]}, t)
    both = mine.merge(ref, on=["model", "threshold"], suffixes=("", "_ref"))
    assert np.abs(both["net_benefit"] - both["net_benefit_ref"].astype(float)).max() < DCA_TOL


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probs": {}}, "non-empty mapping"),
        ({"probs": {"treat all": [0.1, 0.9]}}, "reserved"),
        ({"probs": {"m": [0.1, 0.9]}, "thresholds": [0.5, 1.0]}, "'thresholds'"),
        ({"probs": {"m": [0.1, 0.9, 0.5]}}, "length mismatch"),
        ({"probs": {"m": [0.1, 1.9]}}, r"probabilities in \[0, 1\]"),
        ({"probs": {"m": [0.1, 0.9]}, "harm": {"x": 0.1}}, "unknown model"),
    ],
)
def test_input_errors(kwargs, message):
    with pytest.raises(InputError, match=message):
        decision_curve([0, 1], **kwargs)
