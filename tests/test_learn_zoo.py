"""Model zoo: every model learns separable data, is at chance on noise, and handles odd names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.errors import StudyFileError
from her2dlr.learn.tuning import build_pipeline
from her2dlr.learn.zoo import (
    MODELS,
    ArrayInputClassifier,
    get_model,
    list_models,
    make_model,
    model_grid,
)

ODD_NAMES = ['F1 (T=0.5,0.8)', 'glcm "x"', "a[b]<c>", "d:{e}", "f,g"]


def frame(n: int, seed: int, signal: float) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    X = rng.normal(size=(n, len(ODD_NAMES)))
    X[:, :2] += signal * y[:, None]
    return pd.DataFrame(X, columns=ODD_NAMES), y


@pytest.mark.parametrize("name", list(MODELS))
def test_model_learns_separable_and_is_at_chance_on_noise(name):
    Xtr, ytr = frame(160, 0, 2.5)
    Xte, yte = frame(160, 1, 2.5)
    pipe = build_pipeline([], name).fit(Xtr, ytr)
    assert roc_auc_score(yte, pipe.predict_proba(Xte)[:, 1]) > 0.9
    Ntr, ntr = frame(160, 2, 0.0)
    Nte, nte = frame(300, 3, 0.0)
    noise_auc = roc_auc_score(nte, build_pipeline([], name).fit(Ntr, ntr).predict_proba(Nte)[:, 1])
    assert 0.35 < noise_auc < 0.65


def test_unknown_model_name_lists_allowed_and_nearest():
    with pytest.raises(StudyFileError, match=r"Unknown model 'lightgmb'.*Allowed: lr, svm.*Did you mean 'lightgbm'"):
        get_model("lightgmb")
    assert get_model("XGB").name == "xgboost"
    assert set(list_models()) == set(MODELS)


def test_unknown_hyper_parameter_is_refused():
    with pytest.raises(StudyFileError, match=r"no hyper-parameter 'max_dept'.*Did you mean 'max_depth'"):
        model_grid("xgboost", {"max_dept": [2]})
    assert model_grid("svm") == {"model__estimator__C": [0.1, 1.0, 10.0]}
    assert make_model("rf", params={"max_depth": 3}).max_depth == 3


def test_xgboost_scale_pos_weight_from_training_fold():
    X, y = frame(100, 0, 1.0)
    y = np.r_[np.ones(20, int), np.zeros(80, int)]
    model = make_model("xgboost").fit(X, y)
    assert isinstance(model, ArrayInputClassifier)
    assert model.estimator_.get_params()["scale_pos_weight"] == pytest.approx(4.0)
    assert list(model.feature_names_in_) == ODD_NAMES


def test_models_are_single_threaded():
    for name in ("rf", "extratrees", "knn"):
        assert make_model(name).get_params()["n_jobs"] == 1
    assert make_model("xgboost").estimator.get_params()["n_jobs"] == 1
    assert make_model("lightgbm").estimator.get_params()["n_jobs"] == 1


def test_svm_probabilities_rank_like_its_decision_function():
    X, y = frame(120, 4, 1.0)
    svm = make_model("svm").fit(X.to_numpy(), y)
    prob = svm.predict_proba(X.to_numpy())[:, 1]
    dec = svm.calibrated_classifiers_[0].estimator.decision_function(X.to_numpy())
    assert roc_auc_score(y, prob) == pytest.approx(roc_auc_score(y, dec))


def test_perfectly_separable_lr_stays_finite():
    X = pd.DataFrame({"x": np.r_[np.linspace(-3, -1, 20), np.linspace(1, 3, 20)]})
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    pipe = build_pipeline([], "lr", params={"C": 10.0}).fit(X, y)
    coef = pipe.named_steps["model"].coef_
    assert np.isfinite(coef).all() and np.abs(coef).max() < 100
    assert roc_auc_score(y, pipe.predict_proba(X)[:, 1]) == 1.0
