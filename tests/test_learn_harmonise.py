"""Location/scale (ComBat-style) harmonisation between sites."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from her2dlr.errors import InputError
from her2dlr.learn.harmonise import LocationScaleHarmoniser, harmonise_to_reference


def _site(rng: np.random.Generator, n: int, shift: np.ndarray, gain: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Two-class features (class 1 shifted by +1 on the first 3 features), then a site shift and gain."""
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 8))
    x[:, :3] += y[:, None]
    cols = [f"original_glcm_F{i} (x)" for i in range(8)]
    return pd.DataFrame(x * gain + shift, columns=cols, index=[f"c{i}" for i in range(n)]), y


def test_aligns_batch_to_reference_and_keeps_frame():
    rng = np.random.default_rng(0)
    ref, _ = _site(rng, 400, np.zeros(8), np.ones(8))
    new, _ = _site(rng, 150, np.linspace(-5, 5, 8), np.linspace(0.5, 4, 8))
    for options in ({"empirical_bayes": False}, {"empirical_bayes": True}, {"location": "median",
                                                                           "empirical_bayes": False}):
        h = LocationScaleHarmoniser(**options).fit(ref)
        out = h.transform(new)
        assert isinstance(out, pd.DataFrame)
        assert list(out.columns) == list(new.columns) and list(out.index) == list(new.index)
        assert np.allclose(out.mean(), ref.mean(), atol=0.25)
        assert np.allclose(out.std(), ref.std(), rtol=0.25)
        # the training rows themselves are left unchanged
        assert np.allclose(h.transform(ref), ref, atol=1e-8)
        assert list(h.get_feature_names_out()) == list(ref.columns)


def test_restores_a_model_across_sites():
    rng = np.random.default_rng(1)
    ref, y_ref = _site(rng, 400, np.zeros(8), np.ones(8))
    new, y_new = _site(rng, 200, np.full(8, 3.0), np.full(8, 2.5))
    model = LogisticRegression().fit(ref, y_ref)
    raw = model.predict_proba(new)[:, 1]
    aligned = model.predict_proba(LocationScaleHarmoniser().fit(ref).transform(new))[:, 1]
    # ranking survives a common shift, but calibration does not: accuracy at 0.5 collapses without alignment
    acc_raw = ((raw >= 0.5) == y_new).mean()
    acc_aligned = ((aligned >= 0.5) == y_new).mean()
    assert acc_aligned > acc_raw + 0.1
    assert roc_auc_score(y_new, aligned) > 0.8


def test_arrays_missing_values_and_constant_features():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(50, 3))
    ref[:, 2] = 7.0  # constant in the reference
    new = rng.normal(4.0, 2.0, size=(30, 3))
    new[0, 0] = np.nan
    out = LocationScaleHarmoniser(empirical_bayes=False).fit(ref).transform(new)
    assert isinstance(out, np.ndarray) and out.shape == (30, 3)
    assert np.isnan(out[0, 0]) and np.isfinite(out[1:, 0]).all()
    assert np.allclose(out[:, 2], 7.0)


def test_errors_name_the_problem():
    rng = np.random.default_rng(3)
    ref = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    h = LocationScaleHarmoniser().fit(ref)
    with pytest.raises(InputError, match="min_cases"):
        h.transform(ref.iloc[:5])
    with pytest.raises(InputError, match="location"):
        LocationScaleHarmoniser(location="mode").fit(ref)
    with pytest.raises(InputError, match="empirical_bayes"):
        LocationScaleHarmoniser(location="median").fit(ref)
    with pytest.raises(InputError, match="lacks"):
        harmonise_to_reference(ref, ref[["a"]])


def test_harmonise_to_reference_matches_transformer():
    rng = np.random.default_rng(4)
    ref = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    new = pd.DataFrame(rng.normal(2, 3, size=(40, 3)), columns=["c", "a", "b"])
    out = harmonise_to_reference(ref, new, empirical_bayes=False)
    expected = LocationScaleHarmoniser(empirical_bayes=False).fit(ref).transform(new[["a", "b", "c"]])
    assert list(out.columns) == ["a", "b", "c"]
    pd.testing.assert_frame_equal(out, expected)


def test_external_default_scores_each_case_alone_transductive_option_does_not():
    """Changing the other external cases leaves one case's probability as it is, unless harmonisation is asked for."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from her2dlr.learn.harmonise import external_probabilities

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    train = pd.DataFrame({"a": rng.normal(0, 1, 200) + y, "b": rng.normal(5, 2, 200) - y})
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train, y)
    batch = pd.DataFrame({"b": rng.normal(8, 1, 40), "a": rng.normal(2, 2, 40)})  # columns matched by name
    other = batch.copy()
    other.iloc[1:] = other.iloc[1:] * 3.0 + 1.0  # every case but the first replaced
    alone = external_probabilities(model, train, batch)
    assert external_probabilities(model, train, other)[0] == alone[0]
    assert alone[0] == pytest.approx(model.predict_proba(batch[["a", "b"]].iloc[:1])[0, 1])
    harmonised = external_probabilities(model, train, batch, transductive=True)
    moved = external_probabilities(model, train, other, transductive=True)
    assert abs(harmonised[0] - moved[0]) > 0.01 and harmonised[0] != pytest.approx(alone[0])
