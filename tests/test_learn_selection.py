"""Feature selectors: known informative features survive, noise goes, names are kept."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.pipeline import Pipeline

from her2dlr.errors import InputError, StudyFileError
from her2dlr.learn.selection import (
    MRMR,
    ChiSquareSelector,
    GreedyElimination,
    LassoSelector,
    MissingVarianceFilter,
    MutualInfoSelector,
    PearsonRedundancy,
    RFESelector,
    UnivariateFilter,
    ZScore,
    build_selection,
    selection_funnel,
)

N_INFORMATIVE = 4


def synthetic(n: int = 120, p: int = 40, seed: int = 0, shift: float = 1.2) -> tuple[pd.DataFrame, np.ndarray]:
    """Features 0..3 shifted by class (informative), the rest noise; PyRadiomics-like names."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    X = rng.normal(size=(n, p))
    X[:, :N_INFORMATIVE] += shift * y[:, None]
    names = [f"F{j} (T=0.5,0.8)" if j < N_INFORMATIVE else f"noise_{j}[x]" for j in range(p)]
    return pd.DataFrame(X, columns=names, index=[f"c{i}" for i in range(n)]), y


def informative_kept(selector, X, y) -> tuple[int, int]:
    support = selector.fit(X, y).get_support()
    return int(support[:N_INFORMATIVE].sum()), int(support[N_INFORMATIVE:].sum())


@pytest.mark.parametrize(
    "selector, max_noise",
    [
        (UnivariateFilter(test="ttest", alpha=0.01), 3),
        (UnivariateFilter(test="mannwhitney", alpha=0.01), 3),
        (MRMR(n_features=4), 1),
        (MRMR(n_features=4, relevance="mi", scheme="difference"), 1),
        (LassoSelector(), 8),
        (RFESelector(n_features=4), 1),
        (ChiSquareSelector(k=4), 1),
        (MutualInfoSelector(k=4), 1),
    ],
    ids=lambda s: type(s).__name__ if not isinstance(s, int) else str(s),
)
def test_selector_keeps_informative_drops_noise(selector, max_noise):
    X, y = synthetic()
    kept, noise = informative_kept(selector, X, y)
    assert kept >= N_INFORMATIVE - 1
    assert noise <= max_noise


def test_dataframe_in_dataframe_out_with_names_as_given():
    X, y = synthetic()
    sel = UnivariateFilter(alpha=0.01).fit(X, y)
    out = sel.transform(X)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(X.index)
    assert list(out.columns) == list(sel.get_feature_names_out())
    assert "F0 (T=0.5,0.8)" in out.columns
    arr = UnivariateFilter(alpha=0.01).fit(X.to_numpy(), y).transform(X.to_numpy())
    assert isinstance(arr, np.ndarray) and arr.shape == out.shape


def test_ttest_pvalues_equal_scipy():
    X, y = synthetic(seed=3)
    for equal_var in (True, False):
        sel = UnivariateFilter(test="ttest", equal_var=equal_var).fit(X, y)
        ref = stats.ttest_ind(X.to_numpy()[y == 1], X.to_numpy()[y == 0], axis=0, equal_var=equal_var)
        np.testing.assert_allclose(sel.pvalues_, ref.pvalue, rtol=1e-12)
        np.testing.assert_allclose(sel.statistics_, ref.statistic, rtol=1e-12)


def test_mannwhitney_pvalues_equal_scipy():
    X, y = synthetic(seed=4)
    sel = UnivariateFilter(test="mannwhitney").fit(X, y)
    ref = stats.mannwhitneyu(X.to_numpy()[y == 1], X.to_numpy()[y == 0], axis=0)
    np.testing.assert_allclose(sel.pvalues_, ref.pvalue, rtol=1e-12)


def test_univariate_fallback_keeps_k_best_when_none_pass():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 30)), np.repeat([0, 1], 20)
    sel = UnivariateFilter(alpha=1e-9, k_fallback=3).fit(X, y)
    assert sel.fallback_used_
    assert sel.get_support().sum() == 3
    assert set(np.flatnonzero(sel.get_support())) == set(np.argsort(sel.pvalues_)[:3])


@pytest.mark.parametrize("relevance", ["auc", "pvalue"])
def test_pearson_keeps_the_more_relevant_of_two_correlated(relevance):
    rng = np.random.default_rng(1)
    n = 200
    y = np.repeat([0, 1], n // 2)
    strong = y * 1.5 + rng.normal(size=n)
    weak = strong + rng.normal(0, 0.3, size=n)  # r ~ 0.95 with strong, less relevant
    X = pd.DataFrame({"weak copy": weak, "strong": strong, "other": rng.normal(size=n)})
    sel = PearsonRedundancy(threshold=0.9, relevance=relevance).fit(X, y)
    assert list(sel.get_feature_names_out()) == ["strong", "other"]
    assert sel.dropped_for_ == {0: 1}


def test_greedy_elimination_removes_hub_first():
    rng = np.random.default_rng(2)
    n = 300
    base = rng.normal(size=n)
    a = base + rng.normal(0, 0.2, n)
    b = base + rng.normal(0, 0.2, n)
    c = base + rng.normal(0, 0.2, n)
    X = np.c_[a, b, c, rng.normal(size=n)]
    y = (base > 0).astype(int)
    sel = GreedyElimination(threshold=0.9).fit(X, y)
    assert sel.get_support().sum() == 2  # one of the three redundant copies plus the independent one
    assert sel.get_support()[3]
    R = np.abs(np.corrcoef(X[:, sel.get_support()].T))
    assert (R[np.triu_indices(2, 1)] <= 0.9).all()


def test_variance_filter_drops_constant_and_all_missing_and_imputes_training_median():
    X = pd.DataFrame({"a": [1.0, 2.0, np.nan, 10.0], "const": [5.0] * 4, "gone": [np.nan] * 4,
                      "b": [0.0, np.inf, 1.0, 3.0]})
    sel = MissingVarianceFilter().fit(X)
    assert list(sel.get_feature_names_out()) == ["a", "b"]
    out = sel.transform(pd.DataFrame({"a": [np.nan], "const": [1.0], "gone": [2.0], "b": [np.nan]}))
    assert out.iloc[0].tolist() == [2.0, 1.0]  # training medians


def test_zscore_uses_training_statistics():
    X = np.array([[1.0], [3.0]])
    z = ZScore().fit(X)
    np.testing.assert_allclose(z.transform(np.array([[5.0]])), [[3.0]])


def test_selector_refuses_missing_values_with_a_hint():
    X, y = synthetic()
    X.iloc[0, 2] = np.nan
    with pytest.raises(InputError, match="variance"):
        UnivariateFilter().fit(X, y)


def test_lasso_cv_sees_only_the_rows_it_is_given(monkeypatch):
    """The penalty is chosen on the fit rows alone: rows it is not given cannot change it."""
    X, y = synthetic(n=100)
    train = np.arange(80)
    seen: list[int] = []
    from her2dlr.learn.selection import embedded

    original = embedded.LogisticRegression.fit

    def spy(self, Xf, yf, *a, **k):
        seen.append(len(Xf))
        return original(self, Xf, yf, *a, **k)

    monkeypatch.setattr(embedded.LogisticRegression, "fit", spy)
    a = LassoSelector().fit(X.iloc[train], y[train])
    assert max(seen) == len(train)
    monkeypatch.setattr(embedded.LogisticRegression, "fit", original)
    X2 = X.copy()
    X2.iloc[80:] = 1e6  # garbage outside the training rows
    b = LassoSelector().fit(X2.iloc[train], y[train])
    assert pytest.approx(b.C_, rel=1e-12) == a.C_
    np.testing.assert_array_equal(a.get_support(), b.get_support())


def test_lasso_keeps_at_least_one_feature_on_noise():
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(60, 20)), rng.permutation(np.arange(60) % 2)
    sel = LassoSelector(cv=5).fit(X, y)
    assert sel.get_support().sum() >= 1
    if sel.get_support().sum() == 1:
        assert sel.fallback_ is None or "kept" in sel.fallback_


def test_lasso_patience_stops_the_path_after_the_peak_and_keeps_the_full_grids_choice():
    """Many noise features: validation deviance falls to a peak, then rises as the penalty weakens."""
    X, y = synthetic(n=150, p=120, seed=3)
    full = LassoSelector(cv=5, n_cs=12).fit(X, y)
    early = LassoSelector(cv=5, n_cs=12, patience=2).fit(X, y)
    mean = full.cv_scores_.mean(axis=0)
    peak = int(np.argmax(mean))
    assert np.all(np.diff(mean[peak:peak + 3]) < 0)  # the data give the falling curve the rule expects
    assert early.n_cs_fitted_ == peak + 3 < 12 == full.n_cs_fitted_
    np.testing.assert_array_equal(early.cv_scores_[:, : peak + 3], full.cv_scores_[:, : peak + 3])
    assert np.isnan(early.cv_scores_[:, peak + 3:]).all()
    assert early.C_ == full.C_
    np.testing.assert_array_equal(early.get_support(), full.get_support())


def test_lasso_patience_refuses_zero():
    X, y = synthetic()
    with pytest.raises(InputError, match="patience.*>= 1"):
        LassoSelector(patience=0).fit(X, y)


def test_build_selection_any_order_and_funnel():
    X, y = synthetic()
    steps = build_selection([{"name": "lasso", "cv": 5}, {"name": "variance"}, {"name": "zscore"},
                             {"name": "ttest", "alpha": 0.05}, {"name": "pearson", "threshold": 0.9},
                             {"name": "ttest", "alpha": 0.5}])
    assert [n for n, _ in steps] == ["lasso", "variance", "zscore", "ttest", "pearson", "ttest_2"]
    pipe = Pipeline(steps).fit(X, y)
    funnel = selection_funnel(pipe)
    assert list(funnel["step"]) == [n for n, _ in steps]
    assert funnel["n_in"].iloc[0] == X.shape[1]
    assert (funnel["n_out"].to_numpy()[:-1] == funnel["n_in"].to_numpy()[1:]).all()


def test_build_selection_unknown_name_lists_allowed_and_nearest():
    with pytest.raises(StudyFileError, match=r"unknown step 'lasso2'.*Allowed: variance.*Did you mean 'lasso'"):
        build_selection([{"name": "variance"}, {"name": "lasso2"}])


def test_build_selection_unknown_key_and_bad_value():
    with pytest.raises(StudyFileError, match=r"step 2 \('ttest'\): unknown key 'alpa'.*Did you mean 'alpha'"):
        build_selection([{"name": "variance"}, {"name": "ttest", "alpa": 0.1}])
    with pytest.raises(StudyFileError, match=r"'alpha' parameter of UnivariateFilter must be"):
        build_selection([{"name": "ttest", "alpha": 2}])


def test_set_output_pandas_works_on_arrays():
    X, y = synthetic()
    sel = UnivariateFilter(alpha=0.01).set_output(transform="pandas").fit(X.to_numpy(), y)
    out = sel.transform(X.to_numpy())
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(sel.get_feature_names_out())
