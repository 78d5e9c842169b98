"""Clinical model, early fusion and late fusion inside the learning stage (her2dlr.learn.fusion)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.errors import InputError
from her2dlr.learn.cv import learning_data, run_outer_cv
from her2dlr.learn.fusion import (
    clinical_frame,
    clinical_steps,
    clinical_variables,
    early_fusion_steps,
    late_fusion,
    selected_clinical_variables,
)
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage
from her2dlr.learn.tuning import SearchSettings

TYPES = {"Age": "numeric", "Shape": "categorical", "Signs": "multi", "Halo": "categorical"}
FAST = SearchSettings(inner_splits=3)


def _cohort(n: int = 150, seed: int = 0) -> Manifest:
    """Shape carries the signal (90% agreement); Age, Signs, Halo are noise; missing cells included."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n)]
    y = rng.permutation(np.arange(n) % 2)
    agree = rng.random(n) < 0.9
    shape = np.where(agree == (y == 1), "irregular", "oval").astype(object)
    age = rng.normal(55, 10, n).round().astype(object)
    age[rng.random(n) < 0.1] = None
    signs = rng.choice(["no", "palpable", "palpable&skin retraction"], n).astype(object)
    halo = rng.choice(["no", "yes", None], n).astype(object)
    table = pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x.png", "label": y, "Age": age,
                          "Shape": shape, "Signs": signs, "Halo": halo})
    table["fold_r0"] = repeated_group_kfold(y, np.asarray(ids), 5, 1, seed)[0]
    return Manifest(table, clinical_columns=list(TYPES), clinical_types=dict(TYPES))


def _oof_auc(predictions: pd.DataFrame) -> float:
    test = predictions[predictions["split"] == "test"]
    return float(roc_auc_score(test["label"], test["prob"]))


def _radiomics(manifest: Manifest, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = manifest.table
    X = pd.DataFrame(rng.normal(size=(len(t), 20)), index=pd.Index(t["case_id"], name="case_id"),
                     columns=[f"original_firstorder_f{j}" for j in range(20)])
    X["original_firstorder_f0"] += 1.5 * t["label"].to_numpy()
    return X


def test_learning_data_refuses_text_unless_asked():
    m = _cohort(40)
    raw, _ = clinical_frame(m)
    with pytest.raises(InputError, match="non-numeric"):
        learning_data(raw, m)
    data = learning_data(raw, m, numeric_only=False)
    assert data.X["Shape"].dtype == object and len(data.X) == 40


def test_clinical_frame_needs_clinical_columns():
    m = _cohort(20)
    with pytest.raises(InputError, match="not among"):
        clinical_frame(m, ["BIRADS"])
    bare = Manifest(m.table.drop(columns=list(TYPES)))
    with pytest.raises(InputError, match="no clinical columns"):
        clinical_frame(bare)


def test_clinical_model_learns_the_signal_variable():
    m = _cohort()
    raw, types = clinical_frame(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_outer_cv(raw, m, model="lr", selection=clinical_steps(types), numeric_only=False, search=FAST)
    assert _oof_auc(res.predictions) > 0.8
    freq = selected_clinical_variables(res)
    assert freq.index[0] == "Shape" and freq["Shape"] == 1.0
    assert set(res.funnel()["step"]) >= {"clinical_select"}


def test_encoder_and_selector_refitted_per_fold_without_test_rows():
    """A level held only by fold 0's test rows is unknown to fold 0's encoder; medians are training medians."""
    m = _cohort()
    t = m.table
    test0 = t.index[t["fold_r0"] == 0][:8]
    t.loc[test0, "Halo"] = "posterior halo"  # 8 cases >= min_frequency 5: a level wherever it is trained on
    raw, types = clinical_frame(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_outer_cv(raw, m, model="lr", selection=clinical_steps(types), numeric_only=False,
                           search=FAST, grid={})
    for fit in res.fits:
        enc = fit.pipeline["encode"]
        train_age = pd.to_numeric(raw.loc[fit.train_cases, "Age"], errors="coerce")
        assert enc.medians_["Age"] == pytest.approx(float(np.nanmedian(train_age)))
        assert not set(fit.test_cases) & set(fit.train_cases)
        sel = fit.pipeline["clinical_select"]
        y_train = t.set_index("case_id").loc[fit.train_cases, "label"]
        assert sel.univariable_["mean_pos"].notna().all()
        shape_pos = (raw.loc[y_train.index[y_train == 1], "Shape"] == "irregular").mean()
        row = sel.univariable_.set_index("feature").loc["Shape=irregular"]
        assert row["mean_pos"] == pytest.approx(shape_pos)  # class means from the training rows only
        has_level = "posterior halo" in enc.levels_["Halo"]
        assert has_level == (fit.fold != "r0f0")


def test_early_fusion_keeps_names_apart_and_runs():
    m = _cohort()
    raw, types = clinical_frame(m)
    rad = _radiomics(m)
    rad["Age"] = 0.0  # a radiomics column named like a clinical one stays apart in the fusion
    both = rad.rename(columns={"Age": "Age_rad"}).join(raw)
    steps = early_fusion_steps(list(rad.rename(columns={"Age": "Age_rad"}).columns), types,
                               [{"name": "variance"}, {"name": "ttest", "alpha": 0.05}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_outer_cv(both, m, model="lr", selection=steps, numeric_only=False, search=FAST, grid={})
    assert _oof_auc(res.predictions) > 0.85
    for fit in res.fits:
        assert all(f.startswith(("radiomics__", "clinical__")) for f in fit.features)
        assert "radiomics__original_firstorder_f0" in fit.features
        assert "clinical__Shape=irregular" in fit.features or "clinical__Shape=oval" in fit.features
    assert clinical_variables(res.fits[0].features) == ["Shape"]
    steps_seen = set(res.funnel()["step"])
    assert {"fusion/radiomics/ttest", "fusion/clinical/clinical_select"} <= steps_seen


def test_late_fusion_averages_same_folds():
    m = _cohort(100)
    raw, types = clinical_frame(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clin = run_outer_cv(raw, m, model="lr", selection=clinical_steps(types), numeric_only=False,
                            search=FAST, grid={}, model_name="clinical-lr")
        rad = run_outer_cv(_radiomics(m), m, model="lr", selection=[{"name": "variance"}], search=FAST, grid={},
                           model_name="radiomics-lr")
    fused = late_fusion([clin, rad], name="late-lr")
    te = fused.predictions[fused.predictions["split"] == "test"].set_index(["fold", "case_id"])["prob"]
    a = clin.predictions[clin.predictions["split"] == "test"].set_index(["fold", "case_id"])["prob"]
    b = rad.predictions[rad.predictions["split"] == "test"].set_index(["fold", "case_id"])["prob"]
    np.testing.assert_allclose(te.sort_index(), ((a + b) / 2).sort_index())
    assert set(fused.predictions["split"]) == {"test", "train_oof"}
    assert fused.predictions.groupby("fold")["threshold"].nunique().eq(1).all()
    with pytest.raises(InputError, match="at least two"):
        late_fusion([clin], name="x")
    short = type(rad)(rad.model, rad.scheme, rad.predictions.iloc[5:], rad.fits)
    with pytest.raises(InputError, match="same folds"):
        late_fusion([clin, short], name="x")


def test_stage_fits_clinical_radiomics_combined_and_late(tmp_path):
    m = _cohort(100)
    settings = LearnSettings(features=["radiomics", "clinical"], models=[{"name": "lr", "grid": {}}],
                             schemes=["kfold"], selection=[{"name": "variance"}, {"name": "ttest"}],
                             search={"inner_splits": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_learn_stage(_radiomics(m), m, settings, tmp_path / "learn", feature_set="radiomics", clinical=True)
    assert set(out.predictions["model"]) == {"radiomics-lr", "clinical-lr", "radiomics+clinical-lr",
                                             "late(radiomics,clinical)-lr", "stack(radiomics,clinical)-lr",
                                             "combined(radiomics-lr,clinical)-lr"}
    kept = pd.read_csv(tmp_path / "learn" / "clinical_variables.csv")
    assert "Shape" in set(kept["variable"])
    mean = out.metrics[(out.metrics["split"] == "test") & (out.metrics["scope"] == "mean")].set_index("model")
    assert mean.loc["clinical-lr", "auc"] > 0.7


def test_stage_clinical_only_and_settings():
    s = LearnSettings(features=["clinical"], clinical={"fusion": ["early"], "alpha_uni": 0.1, "min_frequency": 3})
    assert s.clinical.options() == {"alpha_uni": 0.1, "alpha_multi": 0.05, "direction": "backward",
                                    "min_frequency": 3}
    with pytest.raises(ValueError):
        LearnSettings(clinical={"fusion": ["stacking"]})
    with pytest.raises(ValueError):
        LearnSettings(clinical={"alpha": 0.1})
    with pytest.raises(InputError, match="no feature table"):
        run_learn_stage(None, _cohort(20), LearnSettings(), "unused")
