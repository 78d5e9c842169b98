"""Nomogram points and probabilities against a hand-worked example."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from her2dlr.errors import InputError
from her2dlr.report.nomogram import nomogram_from_card, nomogram_from_logistic, plot_nomogram

# Hand-worked example: logit p = -3 + 0.05 * age + 1.5 * [PR = positive], age drawn over 20-80.
# Effect spans: age 0.05 * 60 = 3.0 (the widest: 100 points), PR 1.5 -> 100 * 1.5 / 3 = 50 points.
# Patient aged 50 with PR positive: age 100 * 0.05 * (50 - 20) / 3 = 50 points, PR 50 points, total 100.
# Total points back to the linear predictor: -3 + 0.05 * 20 (age at 0 points) + 100 * 3 / 100 = 1.0,
# so p = 1 / (1 + e^-1) = 0.731059 (directly: -3 + 2.5 + 1.5 = 1.0).
INTERCEPT = -3.0
COEFS = {"age": 0.05, "PR=positive": 1.5}
RANGES = {"age": [20, 80]}
LEVELS = {"PR": ["negative", "positive"]}


def test_hand_worked_two_variable_example() -> None:
    nomo = nomogram_from_logistic(INTERCEPT, COEFS, ranges=RANGES, levels=LEVELS)
    res = nomo.predict({"age": 50, "PR": "positive"})
    assert res["points"]["age"] == pytest.approx(50.0)
    assert res["points"]["PR"] == pytest.approx(50.0)
    assert res["total_points"] == pytest.approx(100.0)
    assert res["linear_predictor"] == pytest.approx(1.0)
    assert res["probability"] == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert nomo.points("age", 80) == pytest.approx(100.0) and nomo.points("PR", "negative") == 0.0
    assert nomo.max_total_points == pytest.approx(150.0)
    low = nomo.predict({"age": 20, "PR": "negative"})
    assert low["total_points"] == 0.0 and low["probability"] == pytest.approx(1 / (1 + math.exp(2.0)))


def test_negative_coefficient_and_level_dict() -> None:
    # age protective: the youngest patient gets the most points; PR given as {level: coef}
    nomo = nomogram_from_logistic(1.0, {"age": -0.02, "PR": {"positive": 0.8, "unknown": -0.4}},
                                  ranges={"age": [30, 80]}, levels={"PR": ["negative", "positive", "unknown"]})
    # spans: age 0.02 * 50 = 1.0, PR 0.8 - (-0.4) = 1.2 (the widest: 100 points)
    assert nomo.points("PR", "positive") == pytest.approx(100.0)
    assert nomo.points("PR", "unknown") == 0.0  # lowest effect is 0 points
    assert nomo.points("PR", "negative") == pytest.approx(100 * 0.4 / 1.2)
    assert nomo.points("age", 30) == pytest.approx(100 * 1.0 / 1.2) and nomo.points("age", 80) == 0.0
    case = {"age": 55, "PR": "negative"}
    lp = 1.0 - 0.02 * 55
    assert nomo.predict(case)["probability"] == pytest.approx(1 / (1 + math.exp(-lp)))


def test_card_and_plot() -> None:
    card = {"logistic": {"intercept": INTERCEPT, "coefficients": COEFS, "ranges": RANGES, "levels": LEVELS}}
    nomo = nomogram_from_card(card)
    fig = plot_nomogram(nomo, case={"age": 50, "PR": "positive"}, title="example")
    assert isinstance(fig, Figure)
    table = nomo.table()
    assert set(table["variable"]) == {"age", "PR"}
    assert table[(table["variable"] == "PR") & (table["value"] == "positive")]["points"].iloc[0] == pytest.approx(50)


def test_bad_models_are_refused() -> None:
    with pytest.raises(InputError, match="'bmi'"):
        nomogram_from_logistic(0.0, {"bmi": 0.1}, ranges={})
    with pytest.raises(InputError, match="all coefficients are zero"):
        nomogram_from_logistic(0.0, {"age": 0.0}, ranges={"age": [0, 1]})
    with pytest.raises(InputError, match="'logistic'"):
        nomogram_from_card({"name": "x"})
    nomo = nomogram_from_logistic(INTERCEPT, COEFS, ranges=RANGES, levels=LEVELS)
    with pytest.raises(InputError, match="levels"):
        nomo.predict({"age": 40, "PR": "maybe"})
