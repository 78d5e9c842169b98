"""Model artefacts written by the learning stage, loaded back and applied to new rows."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from her2dlr.errors import InputError
from her2dlr.learn.artefact import CARD, list_artefacts, load_artefact
from her2dlr.learn.integration import logit
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from test_learn_fusion import _cohort, _radiomics

PROVENANCE = [{"name": "radiomics_us2d_mask", "params": "us2d", "roi": "mask", "params_hash": "abc"}]


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("artefacts")
    m = _cohort(100)
    split = np.where(np.arange(100) % 4 == 0, "test", "train")
    m = m.copy(m.table.assign(split=split))
    settings = LearnSettings(features=["radiomics", "clinical"], models=[{"name": "lr", "grid": {}}],
                             schemes=["kfold", "holdout"], selection=[{"name": "variance"}, {"name": "ttest"}],
                             search={"inner_splits": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_learn_stage(_radiomics(m), m, settings, tmp / "learn", feature_set="radiomics", clinical=True,
                              models_dir=tmp / "models", feature_tables=PROVENANCE)
    return m, out, tmp / "models"


def _inputs(m) -> pd.DataFrame:
    raw = m.table.set_index("case_id")[["Age", "Shape", "Signs", "Halo"]]
    return _radiomics(m).join(raw)


def test_every_model_has_a_complete_artefact(stage):
    _m, out, models = stage
    listed = list_artefacts(models)
    assert set(listed["model"]) == set(out.predictions["model"])
    for folder in models.iterdir():
        card = json.loads((folder / CARD).read_text())
        for key in ("name", "kind", "task", "inputs", "threshold", "training", "metrics", "versions", "config_hash"):
            assert key in card, (folder.name, key)
        assert card["training"]["scheme"] == "holdout" and card["training"]["n_cases"] == 75
        assert card["metrics"]["test_n"] == 25 and 0 <= card["metrics"]["test_auc"] <= 1
        assert "scikit-learn" in card["versions"]
    assert not list(models.glob(".*")), "temporary folders left behind"


def test_artefacts_reproduce_the_holdout_test_predictions(stage):
    m, out, models = stage
    frame = _inputs(m)
    test = out.predictions[(out.predictions["fold"] == "holdout") & (out.predictions["split"] == "test")]
    for name, rows in test.groupby("model"):
        art = load_artefact(next(p for p in models.iterdir() if json.loads((p / CARD).read_text())["name"] == name))
        got = art.predict(frame.loc[rows["case_id"]])
        np.testing.assert_allclose(got["prob"], rows["prob"], atol=1e-9, err_msg=name)
        np.testing.assert_array_equal(got["class"], rows["class"].to_numpy())
        assert got["threshold"].iloc[0] == pytest.approx(rows["threshold"].iloc[0])


def test_combined_card_holds_nomogram_coefficients(stage):
    m, _, models = stage
    art = load_artefact(models / "combined_radiomics-lr_clinical_-lr")
    lr = art.card["logistic"]
    assert "rad_score" in lr["coefficients"] and lr["ranges"]["rad_score"][0] < lr["ranges"]["rad_score"][1]
    # probability by hand from the card's coefficients equals the artefact's
    frame = _inputs(m).iloc[:10]
    img = art.components[0].predict_proba(frame)
    encoded = art.pipeline[0].transform(frame[list(art.card["inputs"]["clinical"])].assign(rad_score=logit(img)))
    lin = lr["intercept"] + sum(c * encoded[n].to_numpy(float) for n, c in lr["coefficients"].items())
    np.testing.assert_allclose(1 / (1 + np.exp(-lin)), art.predict_proba(frame), atol=1e-8)


def test_predict_refuses_missing_inputs(stage):
    m, _, models = stage
    art = load_artefact(models / "late_radiomics_clinical_-lr")
    frame = _inputs(m)
    with pytest.raises(InputError, match="clinical column.*Shape"):
        art.predict(frame.drop(columns=["Shape"]))
    with pytest.raises(InputError, match="feature column"):
        art.predict(frame.drop(columns=["original_firstorder_f3"]))
    unseen = frame.iloc[:3].assign(Shape="never seen")
    assert art.predict(unseen)["prob"].between(0, 1).all()  # unseen level: encoded as 'other', not a crash


def test_load_refuses_non_artefacts(tmp_path):
    with pytest.raises(InputError, match="not a model artefact"):
        load_artefact(tmp_path)
    (tmp_path / CARD).write_text(json.dumps({"format": "other/9"}))
    with pytest.raises(InputError, match="format"):
        load_artefact(tmp_path)


def test_kfold_only_study_deploys_a_fit_on_all_cases(tmp_path):
    m = _cohort(60)
    settings = LearnSettings(features=["radiomics"], models=[{"name": "lr", "grid": {}}], schemes=["kfold"],
                             selection=[{"name": "variance"}], search={"inner_splits": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_learn_stage(_radiomics(m), m, settings, tmp_path / "learn", feature_set="radiomics",
                              models_dir=tmp_path / "models")
    assert "final" not in set(out.predictions["fold"])
    card = json.loads((tmp_path / "models" / "radiomics-lr" / CARD).read_text())
    assert card["training"] == {"scheme": "final", "n_cases": 60, "n_positive": 30, "n_patients": 60}
    assert card["metrics"]["cv_auc"] == pytest.approx(
        out.metrics.query("model == 'radiomics-lr' and split == 'test' and scope == 'mean'")["auc"].iloc[0])
