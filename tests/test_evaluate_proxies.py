"""Clinical columns that stand in for the label: flagged by near-perfect discrimination or a verdict-like name."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.cohort.manifest import Manifest
from her2dlr.cohort.splits import repeated_group_kfold
from her2dlr.evaluate.proxies import label_proxies, proxy_name_match
from her2dlr.learn.settings import LearnSettings
from her2dlr.learn.stage import run_learn_stage


def _table(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 2)
    table = pd.DataFrame({
        "Outcome": np.where(y == 1, "yes", "no"),                       # the label itself, as text
        "Score": y.astype(float),                                         # the label itself, as a number
        "Shape": np.where((rng.random(n) < 0.7) == (y == 1), "irregular", "oval"),  # an honest predictor
        "Age": rng.normal(55, 10, n).round(),                             # noise
        "Record": [f"R{i:04d}" for i in range(n)],                        # one value per case
    })
    return table, y


def test_a_copy_of_the_label_is_flagged_and_honest_columns_are_not() -> None:
    table, y = _table()
    types = {"Outcome": "categorical", "Score": "numeric", "Shape": "categorical", "Age": "numeric",
             "Record": "categorical"}
    out = label_proxies(table, y, types).set_index("column")
    for col in ("Outcome", "Score"):
        assert out.loc[col, "auc"] == pytest.approx(1.0)
        assert out.loc[col, "near_perfect"] and out.loc[col, "flagged"]
        assert "almost perfectly" in out.loc[col, "reason"]
    # a two-level column's AUC by hand: (sensitivity + specificity) / 2 of its positive-leaning level
    irregular = table["Shape"].to_numpy() == "irregular"
    sens, spec = irregular[y == 1].mean(), 1 - irregular[y == 0].mean()
    assert out.loc["Shape", "auc"] == pytest.approx(max(sens + spec, 2 - sens - spec) / 2)
    assert 0.55 < out.loc["Shape", "auc"] < 0.9 and not out.loc["Shape", "flagged"]
    assert not out.loc["Age", "flagged"] and not out.loc["Record", "flagged"]
    # one value per case: every value is rare, pooled into one, so the column cannot separate
    assert np.isnan(out.loc["Record", "auc"])
    # the label reversed is as much a proxy (numeric columns are direction-free)
    rev = label_proxies(pd.DataFrame({"x": 1.0 - y}), y).iloc[0]
    assert rev["auc"] == pytest.approx(1.0) and rev["flagged"]
    assert list(out.index[:2]) == ["Outcome", "Score"] or set(out.index[:2]) == {"Outcome", "Score"}


def test_auc_against_an_independent_computation() -> None:
    from sklearn.metrics import roc_auc_score

    table, y = _table(seed=4)
    out = label_proxies(table[["Age"]], y, {"Age": "numeric"}).iloc[0]
    ref = roc_auc_score(y, table["Age"])
    assert out["auc"] == pytest.approx(max(ref, 1 - ref), abs=1e-12)
    assert out["ci_low"] <= out["auc"] <= out["ci_high"]


@pytest.mark.parametrize("name, match", [
    ("BIRADS", "birads"), ("BI-RADS category", "birads"), ("bi_rads", "birads"), ("Interpretation", "interpretation"),
    ("Diagnosis", "diagnos"), ("Histopathology", "patholog"), ("Verification", "verification"),
    ("malignancy_risk", "malignan"), ("Age", None), ("Shape", None), ("Posterior_features", None),
])
def test_names_that_suggest_a_verdict(name: str, match: str | None) -> None:
    assert proxy_name_match(name) == match


def test_brea_st_clinical_table_flags_the_verdict_columns(shared_data: Path) -> None:
    table = pd.read_excel(shared_data / "breast-lesions-usg" / "BrEaST-Lesions-USG-clinical-data-Dec-15-2023.xlsx")
    table = table[table["Classification"].isin(["benign", "malignant"])].reset_index(drop=True)
    y = (table["Classification"] == "malignant").astype(int).to_numpy()
    cols = ["Age", "Shape", "Margin", "Echogenicity", "Halo", "Interpretation", "BIRADS", "Verification", "Diagnosis"]
    types = dict.fromkeys(cols, "categorical") | {"Age": "numeric"}
    out = label_proxies(table[cols], y, types).set_index("column")
    assert out.loc["Diagnosis", "near_perfect"]  # the histology names the class: AUC about 0.99 on its own
    assert out.loc["Diagnosis", "auc"] > 0.98
    for col in ("BIRADS", "Interpretation", "Verification"):
        assert out.loc[col, "flagged"] and out.loc[col, "name_match"], col
    for col in ("Age", "Shape", "Margin", "Echogenicity", "Halo"):  # real predictors, short of perfect
        assert not out.loc[col, "flagged"], (col, out.loc[col, "auc"])
    assert 0.75 < out.loc["Margin", "auc"] < 0.95


def test_learning_stage_records_and_warns(tmp_path: Path) -> None:
    table, y = _table(n=80, seed=2)
    ids = [f"c{i:03d}" for i in range(len(y))]
    manifest_table = pd.DataFrame({"case_id": ids, "patient_id": ids, "image": "x.png", "label": y,
                                   "BIRADS": np.where(y == 1, "5", "2"), "Shape": table["Shape"], "Age": table["Age"]})
    manifest_table["fold_r0"] = repeated_group_kfold(y, np.asarray(ids), 3, 1, 0)[0]
    types = {"BIRADS": "categorical", "Shape": "categorical", "Age": "numeric"}
    manifest = Manifest(manifest_table, clinical_columns=list(types), clinical_types=types)
    settings = LearnSettings(models=[{"name": "lr", "grid": {}}], schemes=["kfold"], save_models=False,
                             search={"inner_splits": 2})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run_learn_stage(None, manifest, settings, tmp_path / "clinical", clinical=True)
    check = pd.read_csv(tmp_path / "clinical" / "label_proxies.csv").set_index("column")
    assert bool(check.loc["BIRADS", "flagged"]) and check.loc["BIRADS", "auc"] == pytest.approx(1.0)
    assert not check.loc["Shape", "flagged"]
    assert any("BIRADS" in str(w.message) and "stand in for the label" in str(w.message) for w in seen)
