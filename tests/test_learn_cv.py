"""Outer loop from the manifest: predictions contract, everything in-fold, bad input."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.cohort.splits import repeated_group_kfold, stratified_group_holdout
from her2dlr.errors import InputError, StudyFileError
from her2dlr.learn.cv import PREDICTION_COLUMNS, fit_final, learning_data, run_outer_cv
from her2dlr.learn.selection import MissingVarianceFilter, UnivariateFilter
from her2dlr.learn.thresholds import choose_threshold
from her2dlr.learn.tuning import SearchSettings

FAST = SearchSettings(inner_splits=3)
SELECTION = [{"name": "variance"}, {"name": "ttest", "alpha": 0.05}, {"name": "pearson", "threshold": 0.9},
             {"name": "lasso", "cv": 5, "n_cs": 8}]


def cohort(n_patients: int = 40, p: int = 30, signal: float = 1.5, seed: int = 0, repeats: int = 2):
    """Two images per patient; features 0-2 informative; repeated 4-fold + hold-out."""
    rng = np.random.default_rng(seed)
    y_pat = rng.permutation(np.arange(n_patients) % 2)
    y = np.repeat(y_pat, 2)
    patients = np.repeat([f"p{i:03d}" for i in range(n_patients)], 2)
    ids = [f"{pt}_{k}" for pt, k in zip(patients, [0, 1] * n_patients)]
    X = rng.normal(size=(len(y), p))
    X[:, :3] += signal * y[:, None]
    features = pd.DataFrame(X, index=pd.Index(ids, name="case_id"), columns=[f"F{j} (T=0.5,0.8)" for j in range(p)])
    manifest = pd.DataFrame({"case_id": ids, "patient_id": patients, "label": y, "include": True})
    folds = repeated_group_kfold(y, patients, 4, repeats, seed)
    for r in range(repeats):
        manifest[f"fold_r{r}"] = folds[r]
    manifest["split"] = np.where(stratified_group_holdout(y, patients, 0.3, seed), "test", "train")
    return features, manifest


def test_kfold_predictions_follow_the_contract():
    features, manifest = cohort()
    res = run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST)
    pred = res.predictions
    assert list(pred.columns) == PREDICTION_COLUMNS
    test = pred[pred["split"] == "test"]
    assert set(test["fold"]) == {f"r{r}f{k}" for r in range(2) for k in range(4)}
    for rep in ("r0", "r1"):  # every case predicted once out-of-fold per repetition
        rows = test[test["fold"].str.startswith(rep)]
        assert sorted(rows["case_id"]) == sorted(features.index)
    for fit in res.fits:  # no patient on both sides
        train_p = set(manifest.set_index("case_id").loc[fit.train_cases, "patient_id"])
        test_p = set(manifest.set_index("case_id").loc[fit.test_cases, "patient_id"])
        assert not train_p & test_p
    assert roc_auc_score(test["label"], test["prob"]) > 0.8
    assert set(pred["split"]) == {"test", "train", "train_oof"}
    assert len(res.params()) == 8 and set(res.funnel()["step"]) >= {"variance", "ttest", "pearson", "lasso"}
    assert res.feature_frequency().index[0] in {"F0 (T=0.5,0.8)", "F1 (T=0.5,0.8)", "F2 (T=0.5,0.8)"}


def test_thresholds_come_from_training_predictions_and_are_applied_unchanged():
    features, manifest = cohort()
    res = run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST, scheme="holdout")
    pred = res.predictions
    oof = pred[pred["split"] == "train_oof"]
    expected = choose_threshold(oof["label"], oof["prob"]).value
    fit = res.fits[0]
    assert fit.threshold.value == pytest.approx(expected)
    assert fit.threshold.source == "inner_oof"
    test = pred[pred["split"] == "test"]
    assert set(test["case_id"]) == set(manifest.loc[manifest["split"] == "test", "case_id"])
    np.testing.assert_array_equal(test["class"], (test["prob"] >= expected).astype(int))


class SpyFilter(MissingVarianceFilter):
    """Records the case ids every fit sees."""

    seen: ClassVar[list[set]] = []

    def fit(self, X, y=None):
        SpyFilter.seen.append(set(X.index))
        return super().fit(X, y)


def test_no_fitted_step_ever_sees_a_test_row():
    features, manifest = cohort(repeats=1)
    SpyFilter.seen = []
    selection = [("spy", SpyFilter()), ("ttest", UnivariateFilter())]
    res = run_outer_cv(features, manifest, model="lr", selection=selection, search=FAST, keep_train=False)
    assert len(SpyFilter.seen) >= 4 * 4  # inner splits + refit, every outer fold
    tests = [set(f.test_cases) for f in res.fits]
    trains = [set(f.train_cases) for f in res.fits]
    for seen in SpyFilter.seen:
        owner = [i for i, tr in enumerate(trains) if seen <= tr]
        assert owner, "a fit saw rows from outside every training fold"
        assert all(not seen & tests[i] for i in owner)


def test_changing_test_rows_changes_nothing_fitted():
    features, manifest = cohort()
    hold = manifest[["case_id", "patient_id", "label", "split"]]
    a = run_outer_cv(features, hold, model="lr", selection=SELECTION, search=FAST, scheme="holdout").fits[0]
    garbage = features.copy()
    test_ids = manifest.loc[manifest["split"] == "test", "case_id"]
    garbage.loc[test_ids] = np.random.default_rng(9).normal(50, 10, size=(len(test_ids), features.shape[1]))
    b = run_outer_cv(garbage, hold, model="lr", selection=SELECTION, search=FAST, scheme="holdout").fits[0]
    assert a.features == b.features and a.params == b.params
    assert a.threshold.value == pytest.approx(b.threshold.value)
    assert pytest.approx(b.pipeline.named_steps["lasso"].C_) == a.pipeline.named_steps["lasso"].C_


def test_one_class_training_fold_names_the_fold():
    features, manifest = cohort()
    manifest = manifest.copy()
    manifest["fold_r0"] = np.where(manifest["label"] == 1, 0, 1)  # fold 0 holds every positive
    manifest = manifest.drop(columns=["fold_r1"])
    with pytest.raises(InputError, match=r"Training fold 'r0f0' holds a single class"):
        run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST)


def test_feature_constant_or_missing_in_a_fold_is_dropped_there():
    features, manifest = cohort()
    features = features.copy()
    in_fold0 = (manifest["fold_r0"] == 0).to_numpy()
    features["constant in training"] = np.where(in_fold0, np.arange(len(features)), 1.0)
    features["missing in training"] = np.where(in_fold0, 1.0, np.nan)
    res = run_outer_cv(features, manifest.drop(columns=["fold_r1"]), model="lr", selection=SELECTION, search=FAST)
    fit0 = res.fits[0]
    assert fit0.fold == "r0f0"
    support = fit0.pipeline.named_steps["variance"].get_support()
    kept = set(features.columns[support])
    assert "constant in training" not in kept and "missing in training" not in kept
    assert np.isfinite(res.predictions["prob"]).all()


def test_more_features_than_cases():
    features, manifest = cohort(n_patients=20, p=400, signal=2.0, repeats=1)
    res = run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST, keep_train=False)
    test = res.predictions
    assert len(test) == 40 and np.isfinite(test["prob"]).all()
    assert roc_auc_score(test["label"], test["prob"]) > 0.7


def test_perfectly_separable_data_does_not_blow_up():
    features, manifest = cohort(signal=20.0, repeats=1)
    res = run_outer_cv(features, manifest, model="lr", selection=SELECTION, search=FAST)
    pred = res.predictions
    assert np.isfinite(pred["prob"]).all()
    assert roc_auc_score(pred["label"], pred["prob"]) == 1.0
    for fit in res.fits:
        assert np.abs(fit.pipeline.named_steps["model"].coef_).max() < 100


def test_unknown_model_and_step_fail_before_fitting():
    features, manifest = cohort()
    with pytest.raises(StudyFileError, match="Unknown model 'rff'"):
        run_outer_cv(features, manifest, model="rff", selection=SELECTION)
    with pytest.raises(StudyFileError, match="unknown step 'lassoo'"):
        run_outer_cv(features, manifest, model="lr", selection=[{"name": "lassoo"}])


def test_cases_without_features_are_named():
    features, manifest = cohort()
    with pytest.raises(InputError, match=r"no row in the feature table: \['p000_0'\]"):
        learning_data(features.drop(index="p000_0"), manifest)


def test_parallel_outer_folds_give_identical_results_and_final_fit():
    features, manifest = cohort(n_patients=24, repeats=1)
    one = run_outer_cv(features, manifest, model="lightgbm", selection=SELECTION[:2], search=FAST, keep_train=False)
    two = run_outer_cv(features, manifest, model="lightgbm", selection=SELECTION[:2], search=FAST, keep_train=False,
                       n_jobs=2)
    pd.testing.assert_frame_equal(one.predictions, two.predictions)
    final = fit_final(learning_data(features, manifest), model="lr", selection=SELECTION, search=FAST)
    assert final.fold == "final" and len(final.train_cases) == int((manifest["split"] == "train").sum())


def test_learn_stage_writes_its_outputs(tmp_path):
    from her2dlr.learn.settings import LearnSettings
    from her2dlr.learn.stage import run_learn_stage

    features, manifest = cohort(n_patients=24, repeats=1)
    settings = LearnSettings(selection=SELECTION[:2], models=["lr", {"name": "nb", "grid": {}}],
                             search={"inner_splits": 3})
    res = run_learn_stage(features, manifest, settings, tmp_path / "learn", feature_set="radiomics")
    assert {p.name for p in res.files} == {"predictions.parquet", "metrics.csv", "funnel.csv", "params.csv",
                                           "inner_results.csv", "feature_frequency.csv", "settings.json"}
    assert set(res.predictions["model"]) == {"radiomics-lr", "radiomics-nb"}
    metrics = pd.read_csv(tmp_path / "learn" / "metrics.csv")
    assert {"mean", "holdout"} <= set(metrics["scope"])
    assert not list((tmp_path / "learn").glob(".*.tmp"))
