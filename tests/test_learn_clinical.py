"""Clinical model inputs: ClinicalEncoder, UnivariableMultivariableSelector, clinical_pipeline.

Statistics are checked against statsmodels' own Logit fit and against closed forms of the
2x2 table (tolerances stated next to each check).
"""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import her2dlr.evaluate.logistic as stats_module
import her2dlr.learn.clinical as clinical_module
from her2dlr.errors import InputError
from her2dlr.evaluate.logistic import fit_logit
from her2dlr.learn.clinical import (
    ClinicalEncoder,
    UnivariableMultivariableSelector,
    clinical_pipeline,
    feature_source,
)

BIRADS_ORDER = ["2", "3", "4a", "4b", "4c", "5"]
TYPES = {"Age": "numeric", "Shape": "categorical", "Signs": "multi", "BIRADS": "ordinal"}


@pytest.fixture
def train() -> pd.DataFrame:
    return pd.DataFrame({
        "Age": [40, np.nan, 60, 50, 70, 30],
        "Shape": ["oval", "irregular", "oval", "round", "Irregular ", "oval"],
        "Signs": ["no", "palpable&skin retraction", "Palpable", None, "no", "palpable & nipple retraction"],
        "BIRADS": [2, "4a", "3", 5, "4C", None],
        "ignored": list("abcdef"),
    })


def make_encoder(**kw) -> ClinicalEncoder:
    kw.setdefault("min_frequency", None)
    return ClinicalEncoder(TYPES, ordinal={"BIRADS": BIRADS_ORDER}, **kw)


# ============================================================================ encoder
def test_encoder_names_and_values(train: pd.DataFrame):
    enc = make_encoder().set_output(transform="pandas")
    out = enc.fit_transform(train)
    assert list(out.columns) == [
        "Age", "Age=<missing>",
        "Shape=oval", "Shape=irregular", "Shape=round",  # most frequent first; 'Irregular ' folded in
        "Signs:palpable", "Signs:no", "Signs:nipple retraction", "Signs:skin retraction", "Signs:<missing>",
        "BIRADS", "BIRADS=<missing>",
    ]
    assert out.index.equals(train.index)
    # numeric: training median 50 imputed, indicator set
    assert enc.medians_["Age"] == 50.0
    assert out["Age"].tolist() == [40, 50, 60, 50, 70, 30]
    assert out["Age=<missing>"].tolist() == [0, 1, 0, 0, 0, 0]
    # categorical: case and spaces do not split a level
    assert out["Shape=irregular"].tolist() == [0, 1, 0, 0, 1, 0]
    # multi: split on '&', stripped, case-insensitive; a missing cell sets only the indicator
    assert out["Signs:palpable"].tolist() == [0, 1, 1, 0, 0, 1]
    assert out["Signs:skin retraction"].tolist() == [0, 1, 0, 0, 0, 0]
    assert out.loc[3, [c for c in out.columns if c.startswith("Signs:")]].tolist() == [0, 0, 0, 0, 1]
    # ordinal: rank in the declared order (int 5, "5", "4C" and "4c" all match), median imputed
    assert out["BIRADS"].tolist() == [0, 2, 1, 5, 4, 2]
    assert enc.medians_["BIRADS"] == 2.0
    assert enc.types_ == TYPES
    assert enc.feature_sources_["Signs:no"] == "Signs"
    assert enc.unseen_.empty


def test_unseen_values_never_raise_and_are_counted(train: pd.DataFrame):
    enc = make_encoder().fit(train)
    new = pd.DataFrame({"Age": [None], "Shape": ["lobulated"], "Signs": ["redness&PALPABLE"], "BIRADS": ["6"]})
    row = pd.Series(enc.transform(new)[0], index=enc.get_feature_names_out())
    assert row["Age"] == 50.0 and row["Age=<missing>"] == 1.0
    assert row[["Shape=oval", "Shape=irregular", "Shape=round"]].eq(0).all()  # unseen level: all zeros
    assert row["Signs:palpable"] == 1.0 and row[["Signs:no", "Signs:skin retraction"]].eq(0).all()
    assert row["BIRADS"] == enc.medians_["BIRADS"] and row["BIRADS=<missing>"] == 0.0
    report = enc.unseen_.set_index("column")
    assert report.loc["Shape", "value"] == "lobulated" and report.loc["Shape", "encoded_as"] == "all zeros"
    assert report.loc["Signs", "value"] == "redness"
    assert report.loc["BIRADS", "encoded_as"] == "training median"
    # the next call reports its own cases only
    enc.transform(train)
    assert enc.unseen_.empty


def test_rare_levels_pool_into_other_and_take_unseen_values():
    df = pd.DataFrame({"Shape": ["oval"] * 5 + ["irregular"] * 4 + ["round", "lobulated"],
                       "Signs": ["no"] * 6 + ["palpable"] * 3 + ["redness", "warmth&palpable"]})
    enc = ClinicalEncoder({"Shape": "categorical", "Signs": "multi"}, min_frequency=3).fit(df)
    assert list(enc.get_feature_names_out()) == ["Shape=oval", "Shape=irregular", "Shape=<other>", "Signs:no",
                                                 "Signs:palpable", "Signs:<other>"]
    assert enc.pooled_ == {"Shape": ["lobulated", "round"], "Signs": ["redness", "warmth"]}
    out = enc.transform(pd.DataFrame({"Shape": ["round", "spiculated"], "Signs": ["warmth", "itching"]}))
    assert out.tolist() == [[0, 0, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1]]
    # pooled training levels are known; only never-seen ones are reported
    assert sorted(enc.unseen_["value"]) == ["itching", "spiculated"]
    assert set(enc.unseen_["encoded_as"]) == {"<other>"}
    # a fraction works as well: 3 / 11 cases
    frac = ClinicalEncoder({"Shape": "categorical"}, min_frequency=0.25).fit(df)
    assert frac.levels_["Shape"] == ["oval", "irregular"]


def test_reference_coding(train: pd.DataFrame):
    enc = make_encoder(drop="most_frequent").fit(train)
    assert enc.reference_ == {"Shape": "oval"}
    assert enc.levels_["Shape"] == ["irregular", "round"]
    out = pd.DataFrame(enc.transform(train), columns=enc.get_feature_names_out())
    assert out.loc[0, ["Shape=irregular", "Shape=round"]].eq(0).all()  # the reference is all zeros
    enc.transform(train)
    assert enc.unseen_.empty  # the reference level is not "unseen"
    explicit = make_encoder(reference={"Shape": "ROUND"}).fit(train)
    assert explicit.reference_ == {"Shape": "round"}
    with pytest.raises(InputError, match="reference level 'spiculated' of column 'Shape'"):
        make_encoder(reference={"Shape": "spiculated"}).fit(train)


def test_no_indicator_and_all_missing_column():
    df = pd.DataFrame({"Age": [np.nan] * 4, "Shape": ["oval", None, "oval", "round"]})
    enc = ClinicalEncoder({"Age": "numeric", "Shape": "categorical"}, min_frequency=None, add_indicator=False).fit(df)
    assert list(enc.get_feature_names_out()) == ["Age", "Shape=oval", "Shape=round"]
    assert enc.transform(df)[:, 0].tolist() == [0, 0, 0, 0]
    assert any("'Age' is missing in every training case" in n for n in enc.notes_)


def test_missing_value_tokens_and_inferred_types():
    df = pd.DataFrame({"Age": [45, "not available", 61, "N/A"], "Halo": ["yes", "no", "not applicable", "no"]})
    enc = ClinicalEncoder(None, min_frequency=None, missing_values=["not available", "not applicable", "n/a"]).fit(df)
    assert enc.types_ == {"Age": "numeric", "Halo": "categorical"}
    assert enc.medians_["Age"] == 53.0
    assert list(enc.get_feature_names_out()) == ["Age", "Age=<missing>", "Halo=no", "Halo=yes", "Halo=<missing>"]


@pytest.mark.parametrize(
    ("kwargs", "frame", "message"),
    [
        ({"types": {"Age": "numeric", "Size": "numeric"}}, None, "Clinical column 'Size' is not in the table"),
        ({"types": {"Age": "numerical"}}, None, "Did you mean 'numeric'"),
        ({"types": {"Shape": "ordinal"}}, None, "'Shape' is typed 'ordinal' but has no order"),
        ({"types": {"Age": "numeric"}, "drop": "last"}, None, "The 'drop' parameter of ClinicalEncoder"),
        ({"types": {"Age": "numeric"}, "min_frequency": -1}, None, "'min_frequency' parameter"),
        ({"types": {"Age": "numeric"}}, pd.DataFrame({"Age": [40, "forty"]}), "Numeric clinical column 'Age'"),
        ({"types": {"B": "categorical"}, "ordinal": {"B": ["2", "3"]}}, pd.DataFrame({"B": [2, "4x"]}),
         r"Ordinal column 'B' holds value\(s\) \['4x'\]"),
    ],
)
def test_encoder_errors_name_the_column(kwargs, frame, message):
    frame = pd.DataFrame({"Age": [40, 50], "Shape": ["oval", "round"]}) if frame is None else frame
    with pytest.raises(InputError, match=message):
        ClinicalEncoder(**kwargs).fit(frame)


def test_encoder_needs_a_dataframe_and_a_fit(train: pd.DataFrame):
    with pytest.raises(InputError, match="needs a DataFrame"):
        make_encoder().fit(train.to_numpy())
    with pytest.raises(Exception, match="not fitted"):
        make_encoder().transform(train)


# ============================================================================ leakage
def test_fitted_state_comes_from_training_cases_only(train: pd.DataFrame):
    test = pd.DataFrame({"Age": [90.0, np.nan], "Shape": ["lobulated", "oval"], "Signs": ["redness", "no"],
                         "BIRADS": ["5", "2"]})
    enc = make_encoder().fit(train)
    state = (dict(enc.medians_), {k: list(v) for k, v in enc.levels_.items()}, list(enc.get_feature_names_out()))
    before = enc.transform(test)
    changed = test.copy()
    changed.loc[0, ["Age", "Shape", "Signs"]] = [20.0, "oval", "palpable"]
    enc.transform(changed)
    assert (dict(enc.medians_), {k: list(v) for k, v in enc.levels_.items()},
            list(enc.get_feature_names_out())) == state
    assert np.array_equal(enc.transform(test), before)
    # the medians are the training ones, not those of training + test
    assert enc.medians_["Age"] == np.nanmedian(train["Age"]) != np.nanmedian(pd.concat([train, test])["Age"])
    assert "lobulated" not in enc.levels_["Shape"] and "redness" not in enc.levels_["Signs"]


def test_cross_validation_fits_encoder_and_selector_per_fold():
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    X = pd.DataFrame({"Age": np.where(rng.random(n) < 0.1, np.nan, 50 + 8 * y + rng.normal(0, 8, n)),
                      "Shape": rng.choice(["oval", "round"], n)})
    pipe = clinical_pipeline({"Age": "numeric", "Shape": "categorical"}, classifier=LogisticRegression())
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    res = cross_validate(pipe, X, y, cv=folds, scoring="roc_auc", return_estimator=True)
    for est, (tr, _) in zip(res["estimator"], folds):
        assert est.named_steps["encode"].medians_["Age"] == pytest.approx(np.nanmedian(X["Age"].iloc[tr]))
    medians = {est.named_steps["encode"].medians_["Age"] for est in res["estimator"]}
    assert len(medians) > 1  # each fold learned its own


# ============================================================================ statistics
def synthetic(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.normal(55, 10, n)
    irregular = rng.random(n) < 0.4
    noise = rng.normal(0, 1, (n, 3))
    logit = -0.5 + 0.06 * (age - 55) + 1.6 * irregular
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"Age": age, "Shape=irregular": irregular.astype(float),
                      **{f"noise{i}": noise[:, i] for i in range(3)}})
    return X, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_univariable_equals_statsmodels_logit(seed: int):
    X, y = synthetic(seed=seed)
    sel = UnivariableMultivariableSelector().fit(X, y)
    table = sel.univariable_.set_index("feature")
    for col in X.columns:
        ref = sm.Logit(y, sm.add_constant(X[[col]])).fit(disp=0)
        ci = np.exp(ref.conf_int(alpha=0.05).loc[col])
        assert table.loc[col, "odds_ratio"] == pytest.approx(np.exp(ref.params[col]), rel=1e-8)
        assert table.loc[col, "ci_low"] == pytest.approx(ci[0], rel=1e-8)
        assert table.loc[col, "ci_high"] == pytest.approx(ci[1], rel=1e-8)
        assert table.loc[col, "p_value"] == pytest.approx(ref.pvalues[col], rel=1e-6)


@pytest.mark.parametrize(("a", "b", "c", "d"), [(30, 10, 15, 45), (7, 3, 2, 8), (12, 40, 9, 60)])
def test_two_by_two_table_closed_form(a: int, b: int, c: int, d: int):
    """Exposed cases: a events, b non-events; unexposed: c events, d non-events.

    OR = ad / bc, SE(log OR) = sqrt(1/a + 1/b + 1/c + 1/d) (Woolf), Wald CI and p; the logistic
    MLE reproduces them exactly (tolerance 1e-7 relative).
    """
    x = np.r_[np.ones(a + b), np.zeros(c + d)]
    y = np.r_[np.ones(a), np.zeros(b), np.ones(c), np.zeros(d)]
    row = fit_logit(pd.DataFrame({"exposed": x}), y).table().iloc[0]
    log_or, se = math.log(a * d / (b * c)), math.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    z = stats.norm.ppf(0.975)
    assert row["odds_ratio"] == pytest.approx(a * d / (b * c), rel=1e-7)
    assert row["se"] == pytest.approx(se, rel=1e-7)
    assert row["ci_low"] == pytest.approx(math.exp(log_or - z * se), rel=1e-7)
    assert row["ci_high"] == pytest.approx(math.exp(log_or + z * se), rel=1e-7)
    assert row["p_value"] == pytest.approx(2 * stats.norm.sf(abs(log_or / se)), rel=1e-6)


def test_firth_on_a_table_with_an_empty_cell():
    """Separated 2x2 (no exposed non-event): Firth's estimate is the OR with 0.5 added to each cell."""
    a, b, c, d = 10, 0, 5, 15
    x = np.r_[np.ones(a + b), np.zeros(c + d)]
    y = np.r_[np.ones(a), np.ones(c), np.zeros(d)]
    fit = fit_logit(pd.DataFrame({"exposed": x}), y)
    assert fit.method == "firth" and any("failed" in n for n in fit.notes)
    expected = (a + 0.5) * (d + 0.5) / ((b + 0.5) * (c + 0.5))
    assert math.exp(fit.params["exposed"]) == pytest.approx(expected, rel=1e-6)
    ridge = fit_logit(pd.DataFrame({"exposed": x}), y, on_separation="l2")
    assert ridge.method == "l2" and np.isfinite(ridge.params).all() and np.isfinite(ridge.bse).all()
    dropped = fit_logit(pd.DataFrame({"exposed": x}), y, on_separation="drop")
    assert dropped.dropped == {"exposed": "dropped: separation"}


def test_collinear_columns_are_set_aside_with_a_reason():
    X, y = synthetic()
    X["Shape=regular"] = 1 - X["Shape=irregular"]
    X["Age_copy"] = X["Age"] * 2
    fit = fit_logit(X, y)
    assert set(fit.dropped) == {"Shape=regular", "Age_copy"}
    assert "Shape=irregular" in fit.dropped["Shape=regular"] and "Age" in fit.dropped["Age_copy"]
    assert fit.method == "mle" and np.isfinite(fit.bse).all()


# ============================================================================ selector
@pytest.mark.parametrize("direction", ["backward", "forward", "both"])
@pytest.mark.parametrize("criterion", ["p", "aic"])
def test_selector_keeps_signal_and_drops_noise(direction: str, criterion: str):
    X, y = synthetic(n=400, seed=11)
    sel = UnivariableMultivariableSelector(direction=direction, criterion=criterion).fit(X, y)
    assert {"Age", "Shape=irregular"} <= set(sel.selected_features_)
    if criterion == "p":
        assert set(sel.selected_features_) == {"Age", "Shape=irregular"}
        assert (sel.multivariable_["p_value"] < 0.05).all()
    assert sel.transform(X).shape == (len(X), len(sel.selected_features_))
    assert list(sel.get_feature_names_out()) == sel.selected_features_
    assert sel.steps_["action"].iloc[0] == "start"


def test_categorical_levels_move_together_and_summary():
    rng = np.random.default_rng(5)
    n = 300
    shape = rng.choice(["oval", "irregular", "round"], n, p=[0.5, 0.35, 0.15])
    y = (rng.random(n) < np.where(shape == "irregular", 0.75, 0.25)).astype(int)
    X = pd.DataFrame({"Shape": shape, "Noise": rng.normal(0, 1, n)})
    pipe = clinical_pipeline({"Shape": "categorical", "Noise": "numeric"})
    out = pipe.fit_transform(X, y)
    sel = pipe.named_steps["select"]
    # 'Shape=round' alone is not associated, but it stays with its column's other levels
    assert list(out.columns) == ["Shape=oval", "Shape=irregular", "Shape=round"]
    assert sel.selected_groups_ == ["Shape"]
    # in the multivariable model the most frequent level is the (collinear) reference
    mv = sel.multivariable_.set_index("feature")
    assert math.isnan(mv.loc["Shape=oval", "odds_ratio"]) and "collinear" in mv.loc["Shape=oval", "note"]
    summary = sel.summary()
    assert summary.loc[summary["feature"] == "Noise", "selected"].item() is False
    assert summary.columns[:3].tolist() == ["feature", "group", "uni_or"]
    # grouping="none": each level on its own
    alone = UnivariableMultivariableSelector(grouping="none").fit(out.assign(Noise=X["Noise"]), y)
    assert "Shape=irregular" in alone.selected_features_


def test_separation_is_handled_in_selection():
    rng = np.random.default_rng(2)
    n = 200
    y = rng.integers(0, 2, n)
    X = pd.DataFrame({"perfect": y.astype(float), "Age": 50 + 5 * y + rng.normal(0, 8, n), "noise": rng.normal(0, 1, n)})
    for how in ("firth", "l2"):
        sel = UnivariableMultivariableSelector(on_separation=how).fit(X, y)
        row = sel.univariable_.set_index("feature").loc["perfect"]
        assert row["method"] == how and np.isfinite(row["odds_ratio"]) and row["odds_ratio"] > 10
        assert "perfect" in sel.selected_features_
        assert any("perfect" in note for note in sel.notes_)
    dropped = UnivariableMultivariableSelector(on_separation="drop").fit(X, y)
    assert "perfect" not in dropped.selected_features_
    assert dropped.univariable_.set_index("feature").loc["perfect", "note"] == "dropped: separation"


@pytest.mark.parametrize("criterion", ["p", "aic"])
def test_duplicated_variable_leaves_the_model_with_a_reason(criterion: str):
    X, y = synthetic(n=300, seed=7)
    arr = np.column_stack([X["Age"], X["Age"], X["noise0"]])  # a plain array: names x0, x1, x2
    sel = UnivariableMultivariableSelector(criterion=criterion).fit(arr, y)
    assert sel.selected_features_ == ["x0"]
    removed = sel.steps_.set_index("group").loc["x1"]
    assert removed["action"] == "-" and "collinear" in removed["note"] and math.isnan(removed["p_value"])
    assert list(sel.get_feature_names_out()) == ["x0"]


def test_fallback_when_nothing_passes():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 80)
    X = pd.DataFrame({f"noise{i}": rng.normal(0, 1, 80) for i in range(3)})
    sel = UnivariableMultivariableSelector(alpha_uni=1e-6).fit(X, y)
    best = sel.univariable_.sort_values("p_value")["feature"].iloc[0]
    assert sel.selected_features_ == [best]
    assert any("fallback" in n for n in sel.notes_)
    none = UnivariableMultivariableSelector(alpha_uni=1e-6, fallback="none").fit(X, y)
    assert none.selected_features_ == [] and none.multivariable_.empty


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "message"),
    [
        (pd.DataFrame({"a": [1.0, 2, 3, 4]}), [1, 1, 1, 1], {}, "only class 1"),
        (pd.DataFrame({"a": [1.0, np.nan, 3, 4]}), [0, 1, 0, 1], {}, r"column\(s\) \['a'\] have missing values"),
        (pd.DataFrame({"a": [1.0, 2, 3, 4]}), [0, 1, 0, 1], {"direction": "backwards"}, "Did you mean 'backward'"),
        (pd.DataFrame({"a": [1.0, 2, 3, 4]}), [0, 1, 0, 1], {"alpha_uni": 5}, "'alpha_uni' parameter"),
    ],
)
def test_selector_errors(X, y, kwargs, message):
    with pytest.raises(InputError, match=message):
        UnivariableMultivariableSelector(**kwargs).fit(X, y)


def test_feature_source_and_clone():
    assert feature_source("Age") == ("Age", "value")
    assert feature_source("Age=<missing>") == ("Age", "level")
    assert feature_source("Signs:palpable") == ("Signs", "token")
    assert feature_source("Tissue_composition:heterogeneous: fat") == ("Tissue_composition", "token")
    pipe = clinical_pipeline(TYPES, ordinal={"BIRADS": BIRADS_ORDER}, direction="both")
    twin = clone(pipe)
    assert twin.named_steps["encode"].get_params()["ordinal"] == {"BIRADS": BIRADS_ORDER}
    assert twin.named_steps["select"].direction == "both"


@pytest.mark.parametrize("module", [clinical_module, stats_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# ============================================================================ real data
BREAST_TYPES = {
    "Age": "numeric", "Tissue_composition": "multi", "Signs": "multi", "Symptoms": "multi", "Shape": "categorical",
    "Margin": "multi", "Echogenicity": "categorical", "Posterior_features": "categorical", "Halo": "categorical",
    "Calcifications": "categorical", "Skin_thickening": "categorical",
}


@pytest.mark.realdata
def test_breast_lesions_usg_clinical_model(shared_data: Path, record_property):
    """Malignant vs benign from the clinical / BI-RADS descriptor columns (BIRADS and the
    radiologist's Interpretation are left out: they are the diagnosis, not its inputs)."""
    from her2dlr.config import DEFAULT_MISSING_VALUES

    table = shared_data / "breast-lesions-usg" / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx"
    if not table.exists():
        pytest.skip(f"{table} is absent")
    df = pd.read_excel(table)
    df = df[df["Classification"].isin(["benign", "malignant"])].reset_index(drop=True)
    y = (df["Classification"] == "malignant").to_numpy(dtype=int)
    front = clinical_pipeline(BREAST_TYPES, missing_values=DEFAULT_MISSING_VALUES)
    sel = front.fit(df, y).named_steps["select"]
    kept = sel.selected_features_
    record_property("kept_variables", kept)
    print("kept:", kept)
    assert kept
    assert {feature_source(f)[0] for f in kept} & {"Margin", "Shape", "Age", "Echogenicity", "Posterior_features",
                                                  "Halo", "Calcifications"}
    model = make_pipeline(clinical_pipeline(BREAST_TYPES, missing_values=DEFAULT_MISSING_VALUES), StandardScaler(),
                          LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    res = cross_validate(model, df, y, cv=cv, scoring="roc_auc", return_estimator=True)
    auc = float(np.mean(res["test_score"]))
    record_property("cv_auc", auc)
    print(f"5-fold CV AUC {auc:.3f}; kept per fold:",
          [est.steps[0][1].named_steps["select"].selected_groups_ for est in res["estimator"]])
    assert auc > 0.75
