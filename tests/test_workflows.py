"""Workflow search (feature set x selection chain x classifier) inside the inner CV, and its top-k ensemble."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import roc_auc_score

from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.errors import InputError
from her2dlr.learn.artefact import load_artefact
from her2dlr.learn.cv import run_outer_cv
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.learn.tuning import SearchSettings
from her2dlr.learn.workflows import WorkflowEnsemble, WorkflowSpace, search_workflows

SMALL = {"chains": ["none", "unsupervised"], "models": [{"name": "lr", "grid": {"C": [0.1, 1.0]}}, "nb"]}


def _table(n: int = 100, signal: float = 1.2, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Signal in the 4 ``original_`` columns only; 12 ``wavelet-`` noise columns."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    good = rng.normal(size=(n, 4)) + signal * y[:, None]
    noise = rng.normal(size=(n, 12))
    cols = [f"original_firstorder_f{j}" for j in range(4)] + [f"wavelet-LH_glcm_g{j}" for j in range(12)]
    X = pd.DataFrame(np.hstack([good, noise]), columns=cols, index=pd.Index([f"c{i:03d}" for i in range(n)],
                                                                           name="case_id"))
    return X, y


def _manifest(X: pd.DataFrame, y: np.ndarray, repeats: int = 1) -> pd.DataFrame:
    ids = X.index.to_numpy()
    m = pd.DataFrame({"case_id": ids, "patient_id": ids, "label": y})
    folds = repeated_group_kfold(y, ids, 4, repeats, 0)
    for r in range(repeats):
        m[f"fold_r{r}"] = folds[r]
    return m


def _space(**kw) -> WorkflowSpace:
    return WorkflowSpace(**{"feature_sets": ["original", "wavelet"], **SMALL, "n_workflows": 8, "top_k": 3, **kw})


def test_search_finds_the_feature_group_with_the_signal_and_the_outer_auc_is_high():
    X, y = _table()
    res = run_outer_cv(X, _manifest(X, y), model="workflows", selection=[], workflows=_space(),
                       search=SearchSettings(inner_splits=3), keep_train=False)
    test = res.predictions
    assert roc_auc_score(test["label"], test["prob"]) > 0.85
    for fit in res.fits:
        members = fit.inner_results[fit.inner_results["in_ensemble"]]
        assert len(members) == 3
        best = fit.inner_results.sort_values("rank").iloc[0]
        assert best["feature_set"] == "original" and best["median_auc"] > 0.8
        assert set(fit.features) <= {c for c in X.columns if c.startswith("original_")}


def test_search_on_noise_scores_near_chance():
    X, y = _table(n=120, signal=0.0, seed=3)
    res = run_outer_cv(X, _manifest(X, y), model="workflows", selection=[], workflows=_space(),
                       search=SearchSettings(inner_splits=3), keep_train=False)
    assert 0.3 < roc_auc_score(res.predictions["label"], res.predictions["prob"]) < 0.7


def test_outer_test_rows_never_reach_the_search():
    X, y = _table(n=80)
    m = _manifest(X, y)
    test = m["fold_r0"].to_numpy() == 0
    X2, y2 = X.copy(), y.copy()
    X2.loc[test] = np.random.default_rng(9).normal(size=(int(test.sum()), X.shape[1])) * 50
    y2[test] = 1 - y2[test]
    kw = {"model": "workflows", "selection": [], "workflows": _space(n_workflows=4, top_k=2),
          "search": SearchSettings(inner_splits=3), "keep_train": False}
    a = run_outer_cv(X, m, **kw).fits[0]
    b = run_outer_cv(X2, m.assign(label=y2), **kw).fits[0]
    assert a.fold == b.fold == "r0f0"
    pd.testing.assert_frame_equal(a.inner_results, b.inner_results)
    train = X.loc[~test]
    np.testing.assert_array_equal(a.pipeline.predict_proba(train), b.pipeline.predict_proba(train))


def test_ensemble_probability_is_the_mean_of_its_members_refitted_independently():
    X, y = _table(n=90)
    space = _space()
    tuned = search_workflows(X, y, np.arange(len(y)), space=space, settings=SearchSettings(inner_splits=3))
    ensemble = tuned.pipeline[-1]
    assert isinstance(ensemble, WorkflowEnsemble) and len(ensemble.names) == 3
    chosen = {w.id: w for w in space.sample(0)}
    mean = np.mean([space.pipeline(chosen[i]).fit(X, y).predict_proba(X)[:, 1] for i in ensemble.names], axis=0)
    np.testing.assert_allclose(tuned.pipeline.predict_proba(X)[:, 1], mean, rtol=0, atol=1e-12)
    members = tuned.results.set_index("workflow").loc[list(ensemble.names)]
    assert members["in_ensemble"].all() and sorted(members["rank"]) == [1, 2, 3]


def test_every_tried_workflow_is_kept_with_its_inner_scores():
    X, y = _table(n=90)
    tuned = search_workflows(X, y, np.arange(len(y)), space=_space(), settings=SearchSettings(inner_splits=3))
    r = tuned.results
    assert len(r) == 8 and r["workflow"].is_unique
    splits = r[[f"split{j}_auc" for j in range(3)]].to_numpy()
    assert np.isfinite(splits).all()
    np.testing.assert_allclose(r["median_auc"], np.median(splits, axis=1))
    assert sorted(r["rank"]) == list(range(1, 9))
    best = r.loc[r["rank"] == 1].iloc[0]
    assert best["median_auc"] == r["median_auc"].max()
    assert np.isfinite(tuned.oof).all() and tuned.oof.shape == (90,)


def test_seconds_budget_stops_the_search():
    X, y = _table(n=60)
    space = _space(n_workflows=None, seconds=1e-6, batch=2, top_k=1)
    tuned = search_workflows(X, y, np.arange(len(y)), space=space, settings=SearchSettings(inner_splits=3))
    assert len(tuned.results) == 2 < space.size()
    assert any("budget stopped the search" in n for n in tuned.notes)


def test_same_seed_same_result_and_n_jobs_does_not_matter():
    X, y = _table(n=80)
    runs = [search_workflows(X, y, np.arange(len(y)), space=_space(n_workflows=4, top_k=2),
                             settings=SearchSettings(inner_splits=3, n_jobs=j, random_state=4)) for j in (1, 2)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0].results, other.results)
        np.testing.assert_array_equal(runs[0].pipeline.predict_proba(X), other.pipeline.predict_proba(X))
    other_seed = search_workflows(X, y, np.arange(len(y)), space=_space(n_workflows=4, top_k=2),
                                  settings=SearchSettings(inner_splits=3, random_state=5))
    tried = [runs[0].results[["feature_set", "chain", "classifier", "params"]].astype(str),
             other_seed.results[["feature_set", "chain", "classifier", "params"]].astype(str)]
    assert not tried[0].equals(tried[1])  # another seed samples other workflows


def test_study_settings_run_the_stage_and_the_artefact_predicts_like_the_model(tmp_path):
    X, y = _table(n=80)
    m = _manifest(X, y)
    options = {"n_workflows": 4, "top_k": 2, "feature_sets": ["all", {"name": "firstorder_only",
                                                                      "columns": ["*_firstorder_*"]}], **SMALL}
    settings = LearnSettings(features=["radiomics"], schemes=["kfold"],
                             search={"inner_splits": 3, "search": "workflows", "workflows": options})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_learn_stage(X, m, settings, tmp_path / "learn", feature_set="radiomics",
                              models_dir=tmp_path / "models")
    assert set(out.predictions["model"]) == {"radiomics-workflows"}
    assert out.metrics.query("split == 'test' and scope == 'mean'")["auc"].iloc[0] > 0.8
    table = pd.read_csv(tmp_path / "learn" / "workflows.csv")
    assert len(table) == 4 * 4 and set(table["fold"]) == {f"r0f{k}" for k in range(4)}
    assert table.groupby("fold")["in_ensemble"].sum().eq(2).all()
    assert {"feature_set", "chain", "classifier", "median_auc", "rank"} <= set(table.columns)
    json.loads(table["params"].iloc[0])
    art = load_artefact(tmp_path / "models" / "radiomics-workflows")
    final = run_outer_cv(X, m, model="workflows", selection=[], scheme="final", workflows=settings.workflow_space(),
                         search=settings.search_settings(), keep_train=False).fits[0].pipeline
    new = X.iloc[:10] + 0.1
    np.testing.assert_allclose(art.predict_proba(new), final.predict_proba(new)[:, 1])


@pytest.mark.parametrize(("options", "words"), [
    ({"chains": ["none", "unsupervized"]}, ["chains", "unsupervized", "Did you mean 'unsupervised'"]),
    ({"feature_sets": ["orignal"]}, ["feature_sets", "orignal", "Did you mean 'original'"]),
    ({"models": ["lr", "svn"]}, ["models", "svn", "Did you mean 'svm'"]),
    ({"n_workflows": 3, "top_k": 5}, ["top_k", "n_workflows"]),
    ({"n_workflows": None}, ["budget", "seconds"]),
])
def test_bad_workflow_settings_name_the_key(options, words):
    with pytest.raises(ValidationError) as err:
        LearnSettings(search={"search": "workflows", "workflows": options})
    for w in words:
        assert w in str(err.value)


def test_workflow_options_without_workflow_search_are_refused():
    with pytest.raises(ValidationError, match="set search: workflows"):
        LearnSettings(search={"search": "grid", "workflows": {"top_k": 1}})
    with pytest.raises(InputError, match="feature set 'original'|Feature set 'original'"):
        search_workflows(pd.DataFrame({"a": [1.0, 2.0] * 10, "b": [0.0, 1.0] * 10}), np.arange(20) % 2,
                         np.arange(20), space=_space(feature_sets=["original"], n_workflows=2, top_k=1),
                         settings=SearchSettings(inner_splits=2))
