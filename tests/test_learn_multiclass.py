"""The three-class task (HER2-zero / HER2-low / HER2-positive) through nested CV, the learning stage,
saved models, ``her2dlr predict``, ``her2dlr run`` and the report; HER2-low vs zero (binary) end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import confusion_matrix, roc_auc_score
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.cohort.splits import repeated_group_kfold, stratified_group_holdout
from her2dlr.errors import InputError
from her2dlr.learn.artefact import load_artefact
from her2dlr.learn.cv import PREDICTION_COLUMNS, run_outer_cv
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.learn.tuning import SearchSettings

FAST = SearchSettings(inner_splits=3)
SELECTION = [{"name": "variance"}, {"name": "ttest", "alpha": 0.05}, {"name": "pearson", "threshold": 0.9}]
PROBS = ["prob_0", "prob_1", "prob_2"]


def cohort3(n_patients: int = 60, p: int = 12, signal: float = 2.0, seed: int = 0):
    """Two images per patient; feature 0 marks class 1, feature 1 class 2, feature 2 rises with the class."""
    rng = np.random.default_rng(seed)
    y_pat = rng.permutation(np.arange(n_patients) % 3)
    y = np.repeat(y_pat, 2)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], 2)
    ids = [f"{pt}_{k}" for pt, k in zip(patients, [0, 1] * n_patients)]
    X = rng.normal(size=(len(y), p))
    X[:, 0] += signal * (y == 1)
    X[:, 1] += signal * (y == 2)
    X[:, 2] += 0.75 * signal * y
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"F{j} (T=0.5)" for j in range(p)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": patients, "label": y, "include": True})
    manifest["fold_r0"] = repeated_group_kfold(y, patients, 3, 1, seed)[0]
    manifest["split"] = np.where(stratified_group_holdout(y, patients, 0.3, seed), "test", "train")
    return features, manifest


def macro(frame: pd.DataFrame) -> float:
    return float(roc_auc_score(frame["label"], frame[PROBS].to_numpy(), multi_class="ovr", average="macro"))


def test_separable_classes_are_learnt_and_noise_is_not():
    features, manifest = cohort3()
    res = run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST, grid={})
    pred = res.predictions
    assert list(pred.columns) == PREDICTION_COLUMNS + PROBS
    test = pred[pred["split"] == "test"]
    assert sorted(test["case_id"]) == sorted(features.index)  # every case once out-of-fold
    proba = test[PROBS].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(test["class"], proba.argmax(axis=1))
    np.testing.assert_allclose(test["prob"], proba.max(axis=1))
    assert test["threshold"].isna().all() and {f.threshold.method for f in res.fits} == {"argmax"}
    assert macro(test) > 0.9
    assert all(f.inner_median_auc > 0.85 for f in res.fits)  # inner search scored by the macro AUC
    noise, _ = cohort3(signal=0.0, seed=1)
    res = run_outer_cv(noise, manifest, model="lr", selection=SELECTION, search=FAST, grid={})
    assert abs(macro(res.predictions[res.predictions["split"] == "test"]) - 0.5) < 0.15


def test_changing_outer_test_rows_does_not_change_the_fitted_model():
    features, manifest = cohort3()
    other = features.copy()
    test = manifest.loc[manifest["split"] == "test", "case_id"].to_numpy()
    rng = np.random.default_rng(5)
    other.loc[test] = rng.normal(size=(len(test), other.shape[1])) * 10
    shuffled = manifest.copy()
    rows = shuffled["split"] == "test"
    shuffled.loc[rows, "label"] = rng.permutation(shuffled.loc[rows, "label"].to_numpy())
    fits = [run_outer_cv(f, m, model="lr", selection=SELECTION, search=FAST, scheme="holdout").fits[0]
            for f, m in ((features, manifest), (other, shuffled))]
    train = features.loc[fits[0].train_cases]
    assert fits[0].params == fits[1].params and fits[0].features == fits[1].features
    np.testing.assert_array_equal(fits[0].pipeline.predict_proba(train), fits[1].pipeline.predict_proba(train))
    pd.testing.assert_frame_equal(fits[0].inner_results, fits[1].inner_results)


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    features, manifest = cohort3()
    out = tmp_path_factory.mktemp("learn")
    settings = LearnSettings(features=["features"], selection=SELECTION, models=[{"name": "lr", "grid": {}}, "nb"],
                             search={"inner_splits": 3})
    result = run_learn_stage(features, manifest, settings, out / "learn", models_dir=out / "models")
    return features, manifest, out, result


def test_stage_metrics_are_scikit_learn_macro_aucs_of_the_saved_predictions(stage):
    _, _, out, _ = stage
    pred = pd.read_parquet(out / "learn" / "predictions.parquet")
    metrics = pd.read_csv(out / "learn" / "metrics.csv")
    per_class = pd.read_csv(out / "learn" / "multiclass.csv")
    confusion = pd.read_csv(out / "learn" / "confusion.csv")
    for model in ("features-lr", "features-nb"):
        for scope, rows in (("holdout", pred["fold"] == "holdout"), ("r0", pred["fold"].str.startswith("r0"))):
            frame = pred[(pred["model"] == model) & (pred["split"] == "test") & rows]
            row = metrics[(metrics["model"] == model) & (metrics["split"] == "test") & (metrics["scope"] == scope)]
            assert row["auc"].item() == pytest.approx(macro(frame), abs=1e-12)
            assert row["ci_low"].item() <= row["auc"].item() <= row["ci_high"].item()
            assert row["accuracy"].item() == pytest.approx((frame["class"] == frame["label"]).mean())
            cls = per_class[(per_class["model"] == model) & (per_class["split"] == "test") & (per_class["scope"] == scope)]
            for k in range(3):
                auc = cls.loc[cls["class"].astype(str) == str(k), "auc"].item()
                assert auc == pytest.approx(roc_auc_score(frame["label"] == k, frame[f"prob_{k}"]), abs=1e-12)
            conf = confusion[(confusion["model"] == model) & (confusion["split"] == "test")
                             & (confusion["scope"] == scope)]
            counts = conf.pivot(index="true", columns="predicted", values="n").loc[["0", "1", "2"], ["0", "1", "2"]] \
                if conf["true"].dtype == object else conf.pivot(index="true", columns="predicted", values="n")
            np.testing.assert_array_equal(counts.to_numpy(), confusion_matrix(frame["label"], frame["class"]))


def test_saved_model_and_her2dlr_predict_give_the_in_memory_probabilities(stage, tmp_path):
    features, _, out, result = stage
    fit = next(r for r in result.results if r.model == "features-lr" and r.scheme == "holdout").fits[0]
    expected = fit.pipeline.predict_proba(features)
    art = load_artefact(out / "models" / "features-lr")
    assert art.classes == ["0", "1", "2"] and art.card["threshold"]["method"] == "argmax"
    np.testing.assert_allclose(art.class_probabilities(features), expected, rtol=1e-12)
    with pytest.raises(InputError, match="3 classes"):
        art.predict_proba(features)
    table = tmp_path / "features.csv"
    features.reset_index().to_csv(table, index=False)
    res = CliRunner().invoke(app, ["predict", str(out / "models" / "features-lr"), "--features", str(table),
                                   "--out", str(tmp_path / "pred.csv")])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(tmp_path / "pred.csv").set_index("case_id").loc[features.index]
    np.testing.assert_allclose(got[PROBS].to_numpy(), expected, atol=1e-12)
    np.testing.assert_array_equal(got["class"], expected.argmax(axis=1))
    assert list(got["class_name"].astype(str)) == [str(k) for k in expected.argmax(axis=1)]


def test_binary_only_settings_and_too_few_groups_are_refused(tmp_path):
    features, manifest = cohort3()
    fixed = LearnSettings(features=["features"], selection=SELECTION, models=["nb"],
                          threshold={"method": "fixed", "target": 0.5})
    with pytest.raises(InputError, match=r"learn\.threshold: method 'fixed'"):
        run_learn_stage(features, manifest, fixed, tmp_path)
    named = LearnSettings(features=["features"], selection=SELECTION, models=["nb"],
                          clinical={"fusion": ["stack", "combined"]})  # seed 002's nomogram has no 3-class form
    with pytest.raises(InputError, match=r"learn\.clinical\.fusion: 'combined'"):
        run_learn_stage(features, manifest, named, tmp_path, clinical=True)
    few = manifest.copy()  # class 2 left with one patient in every training fold
    keep = few["label"].ne(2) | few["patient_id"].isin(few.loc[few["label"] == 2, "patient_id"].unique()[:2])
    few = few[keep]
    with pytest.raises(InputError, match=r"class 2 has only 1 patient group\(s\); the inner search needs at least 2"):
        run_outer_cv(features, few, model="nb", selection=SELECTION, search=FAST, scheme="kfold")


def _table_study(folder: Path, rule: str, *, n: int = 72, seed: int = 3) -> Path:
    """A cohort table with IHC / ISH columns and a feature table whose first features carry the class."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)  # 0 zero, 1 low, 2 positive
    ihc = np.where(y == 0, "0", np.where(y == 1, rng.choice(["1+", "2+"], n), rng.choice(["3+", "2+"], n)))
    ish = np.where(ihc == "2+", np.where(y == 2, "amplified", "not amplified"), "")
    ids = [f"c{i:03d}" for i in range(n)]
    pd.DataFrame({"case": ids, "patient": [f"p{i:03d}" for i in range(n)], "ihc": ihc, "ish": ish,
                  "Age": rng.normal(55, 10, n).round()}).to_csv(folder / "clinical.csv", index=False)
    X = rng.normal(size=(n, 10))
    X[:, 0] += 2.5 * (y == 1)
    X[:, 1] += 2.5 * (y == 2)
    feats = pd.DataFrame(X, columns=[f"F{j}" for j in range(10)])
    feats.insert(0, "case_id", ids)
    feats.to_csv(folder / "features.csv", index=False)
    study = {
        "name": "her2", "cohort": {"sources": [{"kind": "table", "path": "clinical.csv", "case_id_column": "case",
                                                "patient_id_column": "patient", "clinical_columns": ["Age"],
                                                "label_columns": ["ihc", "ish"]}]},
        "label": {"rule": rule, "ihc_column": "ihc", "ish_column": "ish"},
        "split": {"seed": 3, "holdout": {"test_size": 0.3}, "kfold": {"n_splits": 3, "n_repeats": 1}},
        "learn": {"features": ["features.csv"], "models": [{"name": "nb"}], "selection": SELECTION,
                  "schemes": ["kfold", "holdout"], "search": {"inner_splits": 3}, "threshold": {"method": "youden"}},
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_three_class_study_runs_to_a_report_with_per_class_aucs(tmp_path):
    study = _table_study(tmp_path, "her2_three_class")
    res = CliRunner().invoke(app, ["run", str(study), "--no-pdf"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "her2"
    per_class = pd.read_csv(run / "learn" / "features" / "multiclass.csv")
    assert set(per_class["name"]) >= {"HER2-zero", "HER2-low", "HER2-positive"}
    test = per_class[(per_class["split"] == "test") & (per_class["scope"] == "holdout")]
    assert (test.loc[test["class"] != "macro", "auc"] > 0.75).all()
    card = load_artefact(run / "models" / "features-nb").card
    assert card["classes"] == ["HER2-zero", "HER2-low", "HER2-positive"]
    html = (run / "report" / "report.html").read_text()
    assert "HER2-low vs rest" in html and "Macro AUC (95% CI)" in html
    labels = pd.read_parquet(run / "cohort" / "manifest.parquet")["label"].dropna().astype(int).value_counts()
    assert (f"were analysed ({labels[0]} HER2-zero, {labels[1]} HER2-low, {labels[2]} HER2-positive)"
            in html)  # the summary counts each class, not 'positive' (HER2-low) and a prevalence
    macro_auc = test.loc[test["class"] == "macro", "auc"].item()
    assert f"{macro_auc:.3f}" in html
    assert "Confusion matrix of features-nb on the test set (hold-out)" in html
    assert "discrimination cannot be shown" not in html
    assert "Multi-class models (features-nb): AUC is the macro one-vs-rest AUC" in html
    assert "Decision curves need one probability of a positive class" in html
    # the models and discrimination sections speak of classes, the most probable one and the macro AUC, never of a
    # positive class, sensitivity or an operating threshold
    assert "models that predict the class (HER2-zero, HER2-low or HER2-positive) from features" in html
    assert "predict positive (vs negative)" not in html
    assert ("a predicted probability of each class (HER2-zero, HER2-low, HER2-positive); the predicted class is the "
            "most probable one (argmax), with no operating threshold") in html
    assert "Predicted probability of the positive class" not in html and "youden rule" not in html
    assert "chosen by median inner macro one-vs-rest AUC" in html
    assert "threshold metrics at the operating threshold chosen on training data" not in html
    assert ">Sensitivity<" not in html and ">Threshold<" not in html and "threshold (median)" not in html
    assert ">Balanced accuracy<" in html
    pred = pd.read_parquet(run / "learn" / "features" / "predictions.parquet")
    held = pred[(pred["split"] == "test") & (pred["fold"] == "holdout")].drop_duplicates("case_id")
    per = ", ".join(f"{name} {int((held['label'] == k).sum())}" for k, name in enumerate(card["classes"]))
    assert f"Test set (hold-out): {len(held)} cases ({per})" in html  # the checklist's counts per class
    assert "one-vs-rest ROC curves and AUCs" in html and "positive; " not in html
    from her2dlr.survival.stage import out_of_fold_scores

    with pytest.raises(InputError, match="multi-class model"):  # its 'prob' is no risk score
        out_of_fold_scores(run, "features-nb")
    # deep learning radiomics fuses one positive-class signature: refused before any stage runs, naming the rule
    spec = yaml.safe_load(study.read_text())
    spec["deep"] = {"arch": "densenet3block", "dlr": {"model": "lr"}}
    study.write_text(yaml.safe_dump(spec, sort_keys=False))
    res = CliRunner().invoke(app, ["run", str(study), "--no-pdf"])
    assert res.exit_code != 0
    assert "label.rule 'her2_three_class'" in res.output and "deep.dlr" in res.output


def test_her2_low_versus_zero_runs_end_to_end(tmp_path):
    run = tmp_path / "runs" / "her2"
    # the same run folder held a three-class run first: its per-class tables must not outlive it
    study = _table_study(tmp_path, "her2_three_class")
    res = CliRunner().invoke(app, ["run", str(study), "--only", "cohort", "--only", "learn"])
    assert res.exit_code == 0, res.output
    assert (run / "learn" / "features" / "multiclass.csv").exists()
    study = _table_study(tmp_path, "her2_low")
    res = CliRunner().invoke(app, ["run", str(study), "--only", "cohort", "--only", "learn"])
    assert res.exit_code == 0, res.output
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet")
    labelled = manifest[manifest["label"].notna()]
    assert set(labelled["label"].astype(int)) == {0, 1} and len(labelled) == 48  # HER2-positive cases left out
    metrics = pd.read_csv(run / "learn" / "features" / "metrics.csv")
    assert metrics.loc[(metrics["split"] == "test") & (metrics["scope"] == "holdout"), "auc"].item() > 0.8
    assert not (run / "learn" / "features" / "multiclass.csv").exists()
    assert not (run / "learn" / "features" / "confusion.csv").exists()
    assert load_artefact(run / "models" / "features-nb").classes is None
