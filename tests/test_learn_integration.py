"""Stacking, seed 002's combined logistic model and classifier pairings (her2dlr.learn.integration)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.errors import InputError
from her2dlr.learn.cv import run_outer_cv
from her2dlr.learn.fusion import clinical_frame, clinical_steps, late_fusion
from her2dlr.learn.integration import (
    SIGNATURE,
    classifier_pairings,
    combined_logistic,
    logistic_coefficients,
    logit,
    stacking,
)
from her2dlr.learn.tuning import SearchSettings

FAST = SearchSettings(inner_splits=3)
TYPES = {"Age": "numeric", "Shape": "categorical"}


def _cohort(n: int = 160, seed: int = 0) -> tuple[Manifest, pd.DataFrame]:
    """Two independent noisy views of the label: Shape (clinical) and one radiomics feature."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    y = rng.permutation(np.arange(n) % 2)
    shape = np.where((rng.random(n) < 0.75) == (y == 1), "irregular", "oval").astype(object)
    age = rng.normal(55, 10, n).round()
    table = pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x.png", "label": y, "Age": age,
                          "Shape": shape})
    table["fold_r0"] = repeated_group_kfold(y, np.asarray(ids), 4, 1, seed)[0]
    manifest = Manifest(table, clinical_columns=list(TYPES), clinical_types=dict(TYPES))
    X = pd.DataFrame(rng.normal(size=(n, 5)), index=pd.Index(ids, name="case_id"),
                     columns=[f"f{j}" for j in range(5)])
    X["f0"] += 1.2 * y
    return manifest, X


def _results(manifest: Manifest, X: pd.DataFrame, model: str = "lr") -> tuple:
    raw, types = clinical_frame(manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = run_outer_cv(X, manifest, model=model, selection=[{"name": "zscore"}], grid={}, search=FAST,
                           model_name=f"img-{model}")
        clin = run_outer_cv(raw, manifest, model=model, selection=clinical_steps(types, {"alpha_uni": 0.2}),
                            grid={}, search=FAST, model_name=f"clin-{model}", numeric_only=False)
    return img, clin, raw, types


def _test_auc(result) -> float:
    t = result.predictions[result.predictions["split"] == "test"]
    return float(roc_auc_score(t["label"], t["prob"]))


@pytest.fixture(scope="module")
def fitted():
    manifest, X = _cohort()
    return (manifest, X, *_results(manifest, X))


def test_stacking_combines_two_independent_views(fitted):
    _, _, img, clin, _, _ = fitted
    stacked = stacking([img, clin], name="stack")
    auc_s, auc_i, auc_c = _test_auc(stacked), _test_auc(img), _test_auc(clin)
    assert auc_s > max(auc_i, auc_c) - 0.01, (auc_s, auc_i, auc_c)
    assert set(stacked.predictions["split"]) == {"test", "train"}
    for fold, meta in stacked.meta.items():  # both views carry signal: both weights positive
        assert all(c > 0 for c in meta["coefficients"].values()), (fold, meta)
    test = stacked.predictions[stacked.predictions["split"] == "test"]
    assert test.groupby("fold")["case_id"].nunique().sum() == len(img.predictions.query("split == 'test'"))


def test_stacking_refuses_other_folds_and_missing_oof(fitted):
    _, _, img, clin, _, _ = fitted
    short = type(clin)(clin.model, clin.scheme, clin.predictions.iloc[5:], clin.fits)
    with pytest.raises(InputError, match="same folds"):
        stacking([img, short], name="x")
    no_oof = type(clin)(clin.model, clin.scheme, clin.predictions[clin.predictions["split"] != "train_oof"], [])
    with pytest.raises(InputError, match="train_oof"):
        stacking([img, no_oof], name="x")
    with pytest.raises(InputError, match="at least two"):
        stacking([img], name="x")


def test_combined_model_uses_signature_and_clinical_and_coefficients_reproduce_it(fitted):
    _manifest, _, img, _, raw, types = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comb = combined_logistic(img, raw, types, name="combined", options={"alpha_uni": 0.2}, search=FAST)
    assert _test_auc(comb) > _test_auc(img) - 0.01
    kept = [f for fit in comb.fits for f in fit.features]
    assert kept.count(SIGNATURE) == len(comb.fits)
    assert any(f.startswith("Shape") for f in kept)
    # the nomogram's coefficients, on the raw scale, must give the pipeline's own probabilities
    fit = comb.fits[0]
    train = img.predictions.query("split == 'train_oof' and fold == @fit.fold").set_index("case_id")
    x = raw.loc[train.index].assign(**{SIGNATURE: logit(train["prob"])})
    lr = logistic_coefficients(fit.pipeline, x)
    encoded = fit.pipeline[0].transform(x)
    lin = lr["intercept"] + sum(coef * encoded[name].to_numpy(float) for name, coef in lr["coefficients"].items())
    np.testing.assert_allclose(1 / (1 + np.exp(-lin)), fit.pipeline.predict_proba(x)[:, 1], atol=1e-8)
    lo, hi = lr["ranges"][SIGNATURE]
    assert lo < 0 < hi


def test_combined_model_needs_clinical_rows(fitted):
    _, _, img, _, raw, types = fitted
    with pytest.raises(InputError, match="no clinical row"):
        combined_logistic(img, raw.iloc[10:], types, name="c", search=FAST)
    with pytest.raises(InputError, match="rad_score"):
        combined_logistic(img, raw.assign(rad_score=1.0), {**types, "rad_score": "numeric"}, name="c")


def test_pairings_every_imaging_with_every_clinical_classifier(fitted):
    manifest, X, img, clin, _, _ = fitted
    img_nb, clin_nb, _, _ = _results(manifest, X, model="nb")
    pairs = classifier_pairings({"lr": img, "nb": img_nb}, {"lr": clin, "nb": clin_nb})
    assert [p.model for p in pairs] == ["pair(lr,lr)", "pair(lr,nb)", "pair(nb,lr)", "pair(nb,nb)"]
    mean = classifier_pairings({"lr": img}, {"lr": clin}, method="mean")[0]
    ref = late_fusion([img, clin], name="pair(lr,lr)")
    pd.testing.assert_frame_equal(mean.predictions, ref.predictions)
    with pytest.raises(InputError, match="'stack' or 'mean'"):
        classifier_pairings({"lr": img}, {"lr": clin}, method="vote")  # type: ignore[arg-type]
