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


# A card as the combined model writes it, with the encoder's inputs that drew one axis each before:
# Age imputed by its median 52 with a missing flag, Halo one-hot (no / yes) with missing cells coded 0 / 0.
CARD = {"inputs": {"clinical": {"Age": "numeric", "Halo": "categorical", "Shape": "categorical"}},
        "logistic": {"intercept": -1.0,
                     "coefficients": {"rad_score": 0.8, "Age": 0.03, "Age=<missing>": 0.9, "Halo=no": -0.7,
                                      "Halo=yes": 0.4, "Shape=irregular": 1.1},
                     "ranges": {"rad_score": [-3.0, 3.0], "Age": [30.0, 80.0]},
                     "levels": {"Age=<missing>": ["no", "yes"], "Halo=no": ["no", "yes"], "Halo=yes": ["no", "yes"],
                                "Shape=irregular": ["no", "yes"]},
                     "variables": {"Age": {"type": "numeric", "imputed": 52.0},
                                   "Halo": {"type": "categorical", "levels": ["no", "yes"], "reference": None,
                                            "other": False},
                                   "Shape": {"type": "categorical", "levels": ["oval", "irregular", "round"],
                                             "reference": None, "other": True}}}}


def test_card_draws_one_axis_per_clinical_variable() -> None:
    nomo = nomogram_from_card(CARD)
    assert [v.name for v in nomo.variables] == ["rad_score", "Age", "Halo", "Shape"]
    halo = nomo._var("Halo")
    assert halo.effects == {"no": -0.7, "yes": 0.4, "<missing>": 0.0}
    assert nomo._var("Shape").effects == {"irregular": 1.1, "oval": 0.0, "round": 0.0, "<other>": 0.0, "<missing>": 0.0}
    # hand-worked: a case with Age missing (imputed 52, flag 1), Halo missing (no / yes both 0), Shape irregular
    lp = -1.0 + 0.8 * 1.5 + 0.03 * 52 + 0.9 + 0.0 + 1.1
    res = nomo.predict({"rad_score": 1.5, "Age": "missing", "Halo": "<missing>", "Shape": "irregular"})
    assert res["linear_predictor"] == pytest.approx(lp)
    assert nomo.predict({"rad_score": 1.5, "Age": None, "Halo": "<missing>", "Shape": "irregular"})[
        "probability"] == pytest.approx(1 / (1 + math.exp(-lp)))
    lp2 = -1.0 + 0.8 * -2 + 0.03 * 61 - 0.7
    assert nomo.predict({"rad_score": -2, "Age": 61, "Halo": "no", "Shape": "oval"})["linear_predictor"] == (
        pytest.approx(lp2))
    # the Age axis spans its range and the missing point (0.03 * 52 + 0.9 = 2.46 beyond 0.03 * 80 = 2.4)
    assert nomo._var("Age").span == pytest.approx(2.46 - 0.9)
    table = nomo.table()
    assert set(table["variable"]) == {"rad_score", "Age", "Halo", "Shape"}
    assert "missing" in set(table.loc[table["variable"] == "Age", "value"].astype(str))
    assert isinstance(plot_nomogram(nomo), Figure)


def test_card_without_variables_groups_by_the_clinical_types() -> None:
    old = {"inputs": CARD["inputs"], "logistic": {k: v for k, v in CARD["logistic"].items() if k != "variables"}}
    nomo = nomogram_from_card(old)
    assert [v.name for v in nomo.variables] == ["rad_score", "Age", "Age=<missing>", "Halo", "Shape"]
    assert nomo._var("Halo").effects == {"no": -0.7, "yes": 0.4, "<any other or missing>": 0.0}
    only_flag = {"inputs": CARD["inputs"], "logistic": {
        "intercept": 0.0, "coefficients": {"Age=<missing>": 0.9}, "ranges": {}, "levels": {"Age=<missing>": ["no", "yes"]}}}
    assert nomogram_from_card(only_flag)._var("Age").effects == {"recorded": 0.0, "<missing>": 0.9}


def test_nomogram_of_a_fitted_combined_model_reproduces_its_probabilities() -> None:
    """One axis per column, and reading the axes gives the fitted pipeline's own probability for every case."""
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from her2dlr.learn.integration import COMBINED_PARAMS, SIGNATURE, combined_steps, logistic_coefficients

    # seed 002's combined model (signature + selected clinical inputs -> scale -> logistic), fitted directly
    rng = np.random.default_rng(3)
    n = 200
    y = rng.permutation(np.arange(n) % 2)
    halo = np.where((rng.random(n) < 0.8) == (y == 1), "yes", "no").astype(object)
    halo[rng.random(n) < 0.2] = None
    age = rng.normal(55, 10, n).round()
    age[(rng.random(n) < 0.4) & (y == 1)] = np.nan  # missingness carries signal
    shape = np.where((rng.random(n) < 0.7) == (y == 1), "irregular", rng.choice(["oval", "round"], n)).astype(object)
    x = pd.DataFrame({"Age": age, "Halo": halo, "Shape": shape, SIGNATURE: rng.normal(size=n) + y})
    types = {"Age": "numeric", "Halo": "categorical", "Shape": "categorical"}
    pipe = Pipeline([*combined_steps(types, {"alpha_uni": 0.5, "alpha_multi": 0.5, "min_frequency": None}),
                     ("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000, **COMBINED_PARAMS))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(x, y)
    card = {"inputs": {"clinical": types}, "logistic": logistic_coefficients(pipe, x)}
    kept = [n for n in card["logistic"]["coefficients"] if n != SIGNATURE]
    columns = {n.split("=")[0] for n in kept}
    assert "Age=<missing>" in kept and sum(n.startswith("Halo=") for n in kept) >= 1, kept
    nomo = nomogram_from_card(card)
    assert sorted(v.name for v in nomo.variables) == sorted({SIGNATURE, *columns})
    want = pipe.predict_proba(x)[:, 1]
    for (case, row), p in zip(x.iterrows(), want):
        values = {SIGNATURE: row[SIGNATURE]}
        for v in nomo.variables:
            if v.name == SIGNATURE:
                continue
            cell = row[v.name]
            missing = cell is None or (isinstance(cell, float) and np.isnan(cell))
            if v.kind == "numeric":
                values[v.name] = None if missing else float(cell)
            elif missing:
                values[v.name] = "<missing>" if "<missing>" in v.effects else "recorded"
            else:
                values[v.name] = cell if cell in v.effects else "recorded"
        assert nomo.predict(values)["probability"] == pytest.approx(p, abs=1e-8), case
