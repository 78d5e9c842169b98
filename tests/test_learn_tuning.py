"""Inner search: picks by median AUC, uses groups, returns out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from her2dlr.errors import InputError
from her2dlr.learn.tuning import (
    SearchSettings,
    build_pipeline,
    candidate_settings,
    median_auc_refit,
    tune,
)


def test_median_refit_prefers_median_over_mean():
    # setting 0: one lucky split (mean 0.70, median 0.56); setting 1: steady (mean 0.70, median 0.70)
    results = {"split0_test_score": [0.99, 0.70], "split1_test_score": [0.55, 0.71],
               "split2_test_score": [0.56, 0.69]}
    mean = np.mean([[0.99, 0.55, 0.56], [0.70, 0.71, 0.69]], axis=1)
    assert mean[0] >= mean[1]  # the mean would pick setting 0 (or tie)
    assert median_auc_refit(results) == 1


def test_median_refit_ties_go_to_mean_then_grid_order_and_ignore_failed_splits():
    results = {"split0_test_score": [0.6, 0.6, np.nan], "split1_test_score": [0.7, 0.7, 0.9],
               "split2_test_score": [0.8, 0.9, np.nan]}
    assert median_auc_refit(results) == 2  # only finite score 0.9 is the best median
    results = {"split0_test_score": [0.6, 0.6], "split1_test_score": [0.7, 0.7], "split2_test_score": [0.8, 0.9]}
    assert median_auc_refit(results) == 1  # same median, better mean
    with pytest.raises(InputError, match="failed"):
        median_auc_refit({"split0_test_score": [np.nan]})


def test_median_refit_works_inside_gridsearchcv():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), np.repeat([0, 1], 30)
    X[:, 0] += y
    search = GridSearchCV(build_pipeline([], "lr"), {"model__C": [0.01, 1.0]}, scoring="roc_auc",
                          refit=median_auc_refit, cv=3).fit(X, y)
    assert search.best_index_ == median_auc_refit(search.cv_results_)


def data(n=90, p=30, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{j} [a]" for j in range(p)])
    X.iloc[:, :3] += y[:, None] * 1.5
    groups = np.repeat(np.arange(n // 3), 3)  # 3 rows per patient
    return X, y, groups


def test_tune_picks_the_reported_setting_and_keeps_groups_whole():
    X, y, groups = data()
    sel = [{"name": "variance"}, {"name": "ttest", "alpha": 0.05}]
    tuned = tune(X, y, groups, selection=sel, model="lr", settings=SearchSettings(inner_splits=3))
    chosen = tuned.results[tuned.results["chosen"]].iloc[0]
    assert chosen["median_auc"] == tuned.results["median_auc"].max()
    assert tuned.params == chosen["params"]
    assert np.isfinite(tuned.oof).all() and tuned.inner_median_auc > 0.8
    for tr, va in tuned.inner_cv.split(X, y, groups):
        assert not set(groups[tr]) & set(groups[va])


def test_random_search_samples_n_iter_settings():
    settings = SearchSettings(search="random", n_iter=3)
    grid = {"model__a": [1, 2, 3], "model__b": [1, 2]}
    assert len(candidate_settings(grid, settings)) == 3
    assert len(candidate_settings({"model__a": [1, 2]}, settings)) == 2


def test_tune_refuses_one_class_and_bad_settings():
    X, y, groups = data()
    with pytest.raises(InputError, match="Training fold 'r0f1' holds a single class"):
        tune(X, np.zeros(len(y)), groups, selection=[], model="lr", where="Training fold 'r0f1'")
    with pytest.raises(InputError, match="'search' parameter of SearchSettings"):
        SearchSettings(search="bayes")
