"""The three-class task (HER2-zero / HER2-low / HER2-positive) in the clinical model and its fusions, in
`her2dlr serve`, in the `her2dlr learn` summary, and refused by the deep stage."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import repeated_group_kfold, stratified_group_holdout
from her2dlr.errors import InputError
from her2dlr.learn.artefact import load_artefact
from her2dlr.learn.clinical_multiclass import MultinomialStepwiseSelector
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage

TYPES = {"Ki67": "numeric", "Grade": "categorical", "Age": "numeric"}
CLASSES = ["HER2-zero", "HER2-low", "HER2-positive"]
PROBS = ["prob_0", "prob_1", "prob_2"]
FAST = {"inner_splits": 3}
VALUES = ({"Ki67": 12.0, "Grade": "2", "Age": 50}, {"Ki67": 48.5, "Grade": "1", "Age": 61})  # two new cases


def cohort(n: int = 60, seed: int = 0) -> tuple[Manifest, pd.DataFrame]:
    """Ki67 rises with the class (the signal; a few cells missing), Grade and Age are noise; an imaging table
    whose F0 marks HER2-positive."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    y = rng.permutation(np.arange(n) % 3)
    ki67 = (10 + 20 * y + rng.normal(0, 5, n)).round(1).astype(object)
    ki67[rng.random(n) < 0.05] = None
    table = pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x.png", "label": y, "Ki67": ki67,
                          "Grade": rng.choice(["1", "2", "3"], n).astype(object), "Age": rng.normal(55, 10, n).round()})
    table["fold_r0"] = repeated_group_kfold(y, np.asarray(ids), 3, 1, seed)[0]
    table["split"] = np.where(stratified_group_holdout(y, np.asarray(ids), 0.3, seed), "test", "train")
    manifest = Manifest(table, clinical_columns=list(TYPES), clinical_types=dict(TYPES),
                        meta={"label": {"rule": "her2_three_class", "classes": CLASSES}})
    X = pd.DataFrame(rng.normal(size=(n, 5)), index=pd.Index(ids, name="case_id"), columns=[f"F{j}" for j in range(5)])
    X["F0"] += 2.0 * (y == 2)
    return manifest, X


def macro(frame: pd.DataFrame) -> float:
    return float(roc_auc_score(frame["label"], frame[PROBS].to_numpy(), multi_class="ovr", average="macro"))


def test_selector_likelihood_ratio_tests_are_statsmodels_mnlogit():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 240)
    shape = rng.choice(["oval", "round", "irregular"], 240)
    X = pd.DataFrame({"marker": y + rng.normal(size=240), "noise": rng.normal(size=240)})
    for level in ("oval", "round", "irregular"):  # a full one-hot block: two degrees of freedom per equation
        X[f"Shape={level}"] = (shape == level).astype(float)
    sel = MultinomialStepwiseSelector(C=1e8).fit(X, y)  # (almost) unpenalised, as MNLogit
    uni = sel.univariable_.set_index("group")
    for group, cols in (("marker", ["marker"]), ("noise", ["noise"]), ("Shape", ["Shape=oval", "Shape=round"])):
        ref = sm.MNLogit(y, sm.add_constant(X[cols])).fit(disp=0)
        assert uni.loc[group, "lr_stat"] == pytest.approx(ref.llr, rel=1e-4, abs=1e-6)
        assert uni.loc[group, "p_value"] == pytest.approx(ref.llr_pvalue, rel=1e-3, abs=1e-12)
    assert uni.loc["Shape", "df"] == 4 and sel.selected_features_ == ["marker"]
    assert list(sel.get_feature_names_out()) == ["marker"]


@pytest.fixture(scope="module")
def clinical_run(tmp_path_factory):
    manifest, _ = cohort()
    out = tmp_path_factory.mktemp("clinical3")
    settings = LearnSettings(features=["clinical"], models=[{"name": "lr", "grid": {}}], search=FAST)
    with pytest.warns(UserWarning, match="'Ki67': separates the classes almost perfectly"):
        run_learn_stage(None, manifest, settings, out / "learn", clinical=True, models_dir=out / "models")
    return manifest, out


def test_clinical_model_learns_three_classes_and_its_metrics_are_scikit_learns(clinical_run):
    _, out = clinical_run
    pred = pd.read_parquet(out / "learn" / "predictions.parquet")
    metrics = pd.read_csv(out / "learn" / "metrics.csv")
    for scope, rows in (("holdout", pred["fold"] == "holdout"), ("r0", pred["fold"].str.startswith("r0"))):
        frame = pred[(pred["model"] == "clinical-lr") & (pred["split"] == "test") & rows]
        np.testing.assert_allclose(frame[PROBS].sum(axis=1), 1.0, atol=1e-9)
        row = metrics[(metrics["model"] == "clinical-lr") & (metrics["split"] == "test") & (metrics["scope"] == scope)]
        assert row["auc"].item() == pytest.approx(macro(frame), abs=1e-12)
        assert macro(frame) > 0.9
    kept = pd.read_csv(out / "learn" / "clinical_variables.csv").set_index(["variable", "scheme"])["frequency"]
    assert kept[("Ki67", "kfold")] == 1.0 and kept.get(("Age", "kfold"), 0.0) < 1.0
    proxies = pd.read_csv(out / "learn" / "label_proxies.csv").set_index("column")
    assert proxies.loc["Ki67", "flagged"] and not proxies.loc["Age", "flagged"]  # one class vs the rest
    card = load_artefact(out / "models" / "clinical-lr").card
    assert card["classes"] == CLASSES and card["threshold"]["method"] == "argmax"


def test_serve_answers_a_three_class_model_with_her2dlr_predicts_class(clinical_run, tmp_path):
    pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
    import httpx

    from test_serve_browser import _uvicorn

    _, out = clinical_run
    with _uvicorn(out / "models") as url, httpx.Client(base_url=url, timeout=60) as client:
        listed = {m["id"]: m for m in client.get("/api/models").json()}
        answers = [client.post("/api/models/clinical-lr/predict", data={"clinical": json.dumps(values)})
                   for values in VALUES]
    assert listed["clinical-lr"]["classes"] == CLASSES
    for values, r in zip(VALUES, answers):
        assert r.status_code == 200, r.text
        body = r.json()
        probs = body["class_probabilities"]
        assert list(probs) == CLASSES and sum(probs.values()) == pytest.approx(1.0, abs=1e-9)
        assert body["class_name"] == max(probs, key=probs.get)
        assert body["probability"] == pytest.approx(probs[body["class_name"]])
        res = CliRunner().invoke(app, ["predict", str(out / "models" / "clinical-lr"), "--out", str(tmp_path / "p.csv"),
                                       *[a for k, v in values.items() for a in ("--clinical", f"{k}={v}")]])
        assert res.exit_code == 0, res.output
        cli = pd.read_csv(tmp_path / "p.csv").iloc[0]
        assert body["class_name"] == cli["class_name"]
        np.testing.assert_allclose([probs[c] for c in CLASSES], cli[PROBS].to_numpy(dtype=float), atol=1e-9)


def test_fusions_of_three_class_models_deploy_and_combined_is_left_out(tmp_path):
    manifest, X = cohort()
    settings = LearnSettings(features=["features", "clinical"], models=[{"name": "lr", "grid": {}}],
                             selection=[{"name": "variance"}, {"name": "ttest"}], search=FAST, schemes=["holdout"])
    with pytest.warns(UserWarning, match="stand in for the label"):
        res = run_learn_stage(X, manifest, settings, tmp_path / "learn", clinical=True, models_dir=tmp_path / "models")
    test = res.predictions[res.predictions["split"] == "test"].set_index(["model", "case_id"]).sort_index()
    models = set(test.index.get_level_values("model"))
    assert models == {"features-lr", "clinical-lr", "features+clinical-lr", "late(features,clinical)-lr",
                      "stack(features,clinical)-lr"}  # the default fusions, less seed 002's binary nomogram model
    late = test.loc["late(features,clinical)-lr", PROBS]
    mean = (test.loc["features-lr", PROBS] + test.loc["clinical-lr", PROBS]) / 2
    np.testing.assert_allclose(late.to_numpy(), mean.loc[late.index].to_numpy(), atol=1e-12)
    cases = list(late.index)
    frame = manifest.table.set_index("case_id").loc[cases, list(TYPES)].join(X)
    for model, folder in (("late(features,clinical)-lr", "late_features_clinical_-lr"),
                          ("stack(features,clinical)-lr", "stack_features_clinical_-lr")):
        art = load_artefact(tmp_path / "models" / folder)
        assert art.classes == CLASSES
        np.testing.assert_allclose(art.class_probabilities(frame), test.loc[model, PROBS].loc[cases].to_numpy(),
                                   atol=1e-9)
    assert macro(test.loc["stack(features,clinical)-lr"]) > 0.9
    named = LearnSettings(features=["features", "clinical"], clinical={"fusion": ["late", "combined"]})
    with pytest.raises(InputError, match=r"learn\.clinical\.fusion: 'combined' is seed 002's nomogram"):
        run_learn_stage(X, manifest, named, tmp_path / "again", clinical=True)


def test_learn_summary_shows_macro_auc_and_accuracies(clinical_run):
    from her2dlr.console import console, print_metrics

    _, out = clinical_run
    metrics = pd.read_csv(out / "learn" / "metrics.csv")
    predictions = pd.read_parquet(out / "learn" / "predictions.parquet")
    with console.capture() as captured:  # what `her2dlr learn run` prints after the stage
        print_metrics(metrics, "Models on clinical", predictions=predictions, source=out / "learn" / "metrics.csv")
    text = captured.get()
    assert "macro AUC (95% CI)" in text and "bal acc" in text and "macro one-vs-rest AUC" in text
    assert not re.search(r"\bnan\b", text, flags=re.IGNORECASE) and "sens" not in text
    assert "chosen by highest inner cross-validated AUC" in text  # as the report chooses, not on the test rows
    shown = metrics[(metrics["split"] == "test") & (metrics["scope"] == "holdout")].iloc[0]
    assert f"{shown['balanced_accuracy']:.3f}" in text and f"{shown['auc']:.3f}" in text


def test_deep_stage_keeps_the_three_class_numbers_and_dlr_refuses_them_naming_the_key():
    from her2dlr.deep.cv import deep_table
    from her2dlr.deep.dlr import refuse_multiclass_dlr

    manifest, _ = cohort(12)
    table = deep_table(manifest)
    np.testing.assert_array_equal(table["_y"], manifest.table["label"].astype(int))  # 0 zero, 1 low, 2 positive
    with pytest.raises(InputError, match=r"deep\.dlr: label\.rule 'her2_three_class' has 3 classes.*binary rule "
                                         r"\(label\.rule: her2_low or her2_status\)"):
        refuse_multiclass_dlr(manifest)


def test_serve_shows_a_three_class_models_training_cases_per_class(clinical_run):
    pytest.importorskip("fastapi", reason="the server needs fastapi (pip install -e .)")
    from fastapi.testclient import TestClient

    from her2dlr.serve import ServeSettings, create_app

    manifest, out = clinical_run
    client = TestClient(create_app(ServeSettings(out / "models")))
    listed = {m["id"]: m for m in client.get("/api/models").json()}["clinical-lr"]
    one = client.get("/api/models/clinical-lr").json()
    training = listed["training"]
    table = manifest.table
    fitted_on = table[table["split"] == "train"] if training["scheme"] == "holdout" else table
    hand = {name: int((fitted_on["label"] == k).sum()) for k, name in enumerate(CLASSES)}
    assert training["counts"] == hand and list(training["counts"]) == CLASSES
    assert sum(hand.values()) == training["n_cases"] and "n_positive" not in training
    assert one["training"]["counts"] == hand
