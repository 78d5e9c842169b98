"""Threshold metrics and the per-model, per-split results table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from her2dlr.evaluate.delong import delong_auc_ci
from her2dlr.evaluate.metrics import METRIC_COLUMNS, metrics_table, threshold_metrics


def test_threshold_metrics_hand_worked():
    # Confusion matrix of seed 002's combined model: 20 TP, 28 TN, 14 FP, 1 FN
    y = np.r_[np.ones(21), np.zeros(42)].astype(int)
    pred = np.r_[np.ones(20), 0, np.zeros(28), np.ones(14)].astype(int)
    m = threshold_metrics(y, predicted=pred)
    assert (m["tp"], m["tn"], m["fp"], m["fn"]) == (20, 28, 14, 1)
    assert m["sensitivity"] == pytest.approx(20 / 21)
    assert m["specificity"] == pytest.approx(28 / 42)
    assert m["ppv"] == pytest.approx(20 / 34) and m["npv"] == pytest.approx(28 / 29)
    assert m["accuracy"] == pytest.approx(48 / 63)
    assert m["youden"] == pytest.approx(20 / 21 + 28 / 42 - 1)
    assert threshold_metrics([1, 0], [0.7, 0.2], 0.5)["accuracy"] == 1.0


def _cv_predictions(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    y = rng.permutation(np.arange(60) % 2)
    for rep in range(3):
        prob = 1 / (1 + np.exp(-(y * 1.5 + rng.normal(size=60))))
        for i in range(60):
            rows.append({"case_id": f"c{i}", "patient_id": f"p{i}", "model": "lr", "fold": f"r{rep}f{i % 5}",
                         "split": "test", "prob": prob[i], "class": int(prob[i] >= 0.5), "label": y[i],
                         "threshold": 0.5})
    return pd.DataFrame(rows)


def test_metrics_table_repeated_cv_pools_each_repetition():
    pred = _cv_predictions()
    table = metrics_table(pred)
    assert list(table.columns) == METRIC_COLUMNS
    reps = table[table["scope"].str.match(r"r\d")]
    assert list(reps["scope"]) == ["r0", "r1", "r2"]
    for rep, row in reps.set_index("scope").iterrows():
        rows = pred[pred["fold"].str.startswith(rep)]
        ref = delong_auc_ci(rows["label"], rows["prob"])
        assert row["auc"] == pytest.approx(ref.auc) and row["ci_low"] == pytest.approx(ref.ci_low)
        assert row["n"] == 60
    mean = table[table["scope"] == "mean"].iloc[0]
    assert mean["auc"] == pytest.approx(reps["auc"].mean())
    assert mean["ci_low"] == pytest.approx(reps["ci_low"].mean())
    assert (mean["auc_min"], mean["auc_max"]) == (reps["auc"].min(), reps["auc"].max())


def test_metrics_table_thresholds_override_the_class_column():
    pred = _cv_predictions()
    pred["class"] = 0
    fixed = metrics_table(pred, thresholds=0.5)
    per_fold = metrics_table(pred, thresholds={("lr", f): 0.5 for f in pred["fold"].unique()})
    pd.testing.assert_frame_equal(fixed, per_fold)
    assert fixed["sensitivity"].iloc[0] > 0
    assert metrics_table(pred)["sensitivity"].iloc[0] == 0


def test_metrics_table_holdout_and_train_rows():
    pred = _cv_predictions()
    holdout = pred[pred["fold"].str.startswith("r0")].assign(fold="holdout")
    train = holdout.assign(split="train")
    table = metrics_table(pd.concat([holdout, train]))
    assert set(zip(table["split"], table["scope"])) == {("test", "holdout"), ("train", "holdout")}
