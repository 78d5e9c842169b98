"""Selection steps on a three-class label (HER2-zero / low / positive): k-sample tests against SciPy,
multinomial LASSO, one-vs-rest relevance, and a clear refusal of a step that knows two classes only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.feature_selection import SelectKBest

from her2dlr.errors import InputError
from her2dlr.learn._univariate import anova_pvalues, kruskal_pvalues, ovr_auc_spread, relevance
from her2dlr.learn.multiclass_cv import check_multiclass_steps
from her2dlr.learn.selection import SELECTION_STEPS, LassoSelector, PearsonRedundancy, UnivariateFilter, build_selection


def three_class(n: int = 90, p: int = 12, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature 0 separates class 1, feature 1 class 2, feature 2 rises with the class; the rest is noise."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    X = rng.normal(size=(n, p))
    X[:, 0] += 2.0 * (y == 1)
    X[:, 1] += 2.0 * (y == 2)
    X[:, 2] += 1.5 * y
    return pd.DataFrame(X, columns=[f"F{j} [a]" for j in range(p)]), y


def test_anova_and_kruskal_equal_scipy_on_a_hand_case():
    # three classes of 3, 4 and 3 cases; column 1 is constant (statistic 0, p = 1 by convention)
    X = np.array([[1.0, 5], [2, 5], [3, 5], [4, 5], [5, 5], [6, 5], [7, 5], [9, 5], [8, 5], [10, 5]])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    groups = [X[y == c, 0] for c in range(3)]
    f, p = anova_pvalues(X, y)
    ref = stats.f_oneway(*groups)
    assert f[0] == pytest.approx(ref.statistic, rel=1e-12) and p[0] == pytest.approx(ref.pvalue, rel=1e-12)
    # by hand: group means 2, 5.5, 9; grand mean 5.5; SSB = 3*12.25 + 0 + 3*12.25 = 73.5 (df 2);
    # SSW = 2 + 5 + 2 = 9 (df 7): F = 36.75 / (9/7) = 28.583...
    assert f[0] == pytest.approx(73.5 / 2 / (9 / 7), rel=1e-12)
    h, ph = kruskal_pvalues(X, y)
    ref = stats.kruskal(*groups)
    assert h[0] == pytest.approx(ref.statistic, rel=1e-12) and ph[0] == pytest.approx(ref.pvalue, rel=1e-12)
    assert (f[1], p[1], h[1], ph[1]) == (0.0, 1.0, 0.0, 1.0)


def test_two_sample_steps_run_their_k_sample_counterparts():
    X, y = three_class()
    for test, used, scipy_test in (("ttest", "anova", stats.f_oneway), ("mannwhitney", "kruskal", stats.kruskal)):
        step = UnivariateFilter(test=test, alpha=0.01).fit(X, y)
        assert step.test_used_ == used
        ref = scipy_test(*[X.to_numpy()[y == c] for c in range(3)], axis=0)
        np.testing.assert_allclose(step.pvalues_, ref.pvalue, rtol=1e-10)
        assert set(step.get_feature_names_out()) >= {"F0 [a]", "F1 [a]", "F2 [a]"}
        assert len(step.get_feature_names_out()) <= 5
    # with two classes the same step is still the two-sample test
    two = UnivariateFilter(test="ttest").fit(X[y < 2], y[y < 2])
    assert two.test_used_ == "ttest"
    # ANOVA of two classes is the square of Student's t
    _, p_t = stats.ttest_ind(X[y == 1], X[y == 0])
    np.testing.assert_allclose(UnivariateFilter(test="anova").fit(X[y < 2], y[y < 2]).pvalues_, p_t, rtol=1e-8)


def test_multinomial_lasso_keeps_the_class_features():
    X, y = three_class(n=120)
    step = LassoSelector(cv=3, n_cs=8, rule="1se").fit(X, y)
    assert step.coef_.shape == (3, X.shape[1])
    kept = set(step.get_feature_names_out())
    assert {"F0 [a]", "F1 [a]", "F2 [a]"} <= kept
    assert len(kept) < X.shape[1]
    # each class feature carries its own class: F0 the largest |coefficient| of HER2-low, F1 of HER2-positive
    assert np.argmax(np.abs(step.coef_[1])) in (0, 2) and np.argmax(np.abs(step.coef_[2])) in (1, 2)


def test_one_vs_rest_relevance_ranks_the_class_features_first():
    X, y = three_class()
    rel = ovr_auc_spread(X.to_numpy(), y)
    assert set(np.argsort(-rel)[:3]) == {0, 1, 2}
    np.testing.assert_allclose(relevance(X.to_numpy(), y, "pvalue"), -np.log10(anova_pvalues(X.to_numpy(), y)[1]))
    # a copy of F0 is dropped for F0 itself, whatever the label's number of classes
    Xc = X.assign(copy=X["F0 [a]"] * 2 + 1e-3)
    kept = PearsonRedundancy(threshold=0.9).fit(Xc, y).get_feature_names_out()
    assert "F0 [a]" in kept and "copy" not in kept


@pytest.mark.parametrize("name", sorted(set(SELECTION_STEPS) - {"icc"}))
def test_every_study_step_fits_a_three_class_label(name):
    X, y = three_class(n=60, p=8)
    params = {"lasso": {"cv": 3, "n_cs": 5}, "rfe": {"n_features": 3}, "mrmr": {"n_features": 3}}.get(name, {})
    steps = build_selection([{"name": name, **params}])
    check_multiclass_steps(steps)
    out = steps[0][1].fit(X, y).transform(X)
    assert 1 <= out.shape[1] <= X.shape[1]


def test_a_step_without_a_multiclass_form_is_refused_by_name():
    steps = [("variance", build_selection([{"name": "variance"}])[0][1]), ("kbest", SelectKBest(k=2))]
    with pytest.raises(InputError, match=r"step 2 \('kbest', SelectKBest\) only handles two classes"):
        check_multiclass_steps(steps)
