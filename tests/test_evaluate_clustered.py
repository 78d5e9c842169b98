"""Patient-clustered intervals (Obuchowski 1997 AUC, clustered proportions) against independent references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from her2dlr.errors import InputError
from her2dlr.evaluate.clustered import (
    auc_interval,
    cluster_bootstrap_auc_ci,
    clustered_auc_ci,
    clustered_proportion_ci,
)
from her2dlr.evaluate.compare import threshold_metrics_ci
from her2dlr.evaluate.delong import delong_auc_ci
from her2dlr.evaluate.metrics import metrics_table


def test_one_case_per_patient_reduces_to_delong():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    s = rng.normal(size=80) + y
    s[:10] = np.round(s[:10])  # some ties
    clustered = clustered_auc_ci(y, s, [f"p{i}" for i in range(80)])
    delong = delong_auc_ci(y, s)
    assert clustered.auc == pytest.approx(delong.auc, abs=1e-12)
    assert clustered.se == pytest.approx(delong.se, rel=1e-12)
    assert clustered.method == "obuchowski"


def test_hand_worked_three_patients():
    # Patient A: positive 0.9, negative 0.3; patient B: positives 0.6, 0.4; patient C: negatives 0.5, 0.2.
    # V10 (negatives below each positive): 0.9 -> 3/3, 0.6 -> 3/3, 0.4 -> 2/3 (0.5 is above it); AUC = 8/9.
    # V01 (positives above each negative): 0.3 -> 3/3, 0.5 -> 2/3, 0.2 -> 3/3.
    # Per patient (m_i, n_i, V10_i, V01_i): A (1, 1, 1, 1), B (2, 0, 5/3, 0), C (0, 2, 0, 5/3).
    # d10 = V10_i - m_i AUC: A 1/9, B 5/3 - 16/9 = -1/9, C 0;  d01 = V01_i - n_i AUC: A 1/9, B 0, C -1/9.
    # S10 = I10 / ((I10 - 1) M) sum d10^2 = 2 / (1 * 3) * 2/81 = 4/243; S01 = 4/243 likewise.
    # S11 = I / (I - 1) sum d10 d01 = 3/2 * 1/81 = 1/54.
    # var = S10 / 3 + S01 / 3 + 2 S11 / 9 = 4/729 + 4/729 + 3/729 = 11/729.
    y = [1, 0, 1, 1, 0, 0]
    s = [0.9, 0.3, 0.6, 0.4, 0.5, 0.2]
    patients = ["A", "A", "B", "B", "C", "C"]
    r = clustered_auc_ci(y, s, patients)
    assert r.auc == pytest.approx(8 / 9)
    assert r.se ** 2 == pytest.approx(11 / 729, rel=1e-12)
    # DeLong treats the six images as independent: var = (1/27) / 3 + (1/27) / 3 = 18/729
    assert delong_auc_ci(y, s).se ** 2 == pytest.approx(18 / 729, rel=1e-12)


def _clustered_cohort(n_patients: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Patients with 1-5 images each; label and most of the score shared within a patient."""
    rng = np.random.default_rng(seed)
    y, s, pid = [], [], []
    for p in range(n_patients):
        label = int(rng.random() < 0.4)
        level = rng.normal(loc=0.9 * label, scale=1.0)
        for _ in range(rng.integers(1, 6)):
            y.append(label)
            s.append(level + rng.normal(scale=0.3))
            pid.append(f"pt{p}")
    return np.array(y), np.array(s), np.array(pid)


def test_agrees_with_patient_bootstrap_and_is_wider_than_delong():
    y, s, pid = _clustered_cohort(150, seed=11)
    obu = clustered_auc_ci(y, s, pid)
    boot = cluster_bootstrap_auc_ci(y, s, pid, n_boot=3000, seed=1)
    delong = delong_auc_ci(y, s)
    assert obu.se == pytest.approx(boot.se, rel=0.12)
    assert obu.se > 1.4 * delong.se  # images of one patient are not independent
    assert (obu.ci_high - obu.ci_low) == pytest.approx(boot.ci_high - boot.ci_low, rel=0.15)


def test_auc_interval_picks_the_method():
    y, s, pid = _clustered_cohort(40, seed=2)
    assert auc_interval(y, s, pid).method == "obuchowski"
    assert auc_interval(y, s, None).method == "delong"
    assert auc_interval(y, s, np.arange(len(y))).method == "delong"


def test_clustered_proportion_hand_worked_and_wilson_reference():
    # successes per case: A [1, 1], B [0], C [1, 0] -> k = 3 of n = 5, p = 0.6
    # a_i = (2, 0, 1), m_i = (2, 1, 2): sum (a_i - p m_i)^2 = 0.8^2 + 0.6^2 + 0.2^2 = 1.04
    # deff = 1.04 / (5 * 0.6 * 0.4) = 0.8667, n_eff = 5 / deff
    r = clustered_proportion_ci([1, 1, 0, 1, 0], ["A", "A", "B", "C", "C"])
    assert r["deff"] == pytest.approx(1.04 / 1.2)
    n_eff = 5 / (1.04 / 1.2)
    lo, hi = proportion_confint(0.6 * n_eff, n_eff, alpha=0.05, method="wilson")
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((lo, hi), abs=1e-10)
    # one case per patient: exactly Wilson
    single = clustered_proportion_ci([1, 1, 0, 1, 0], list("abcde"))
    lo, hi = proportion_confint(3, 5, alpha=0.05, method="wilson")
    assert (single["ci_low"], single["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)


def test_threshold_metrics_clustered_vs_patient_bootstrap():
    y, s, pid = _clustered_cohort(200, seed=5)
    thr = 0.45
    table = threshold_metrics_ci(y, s, thr, clusters=pid)
    plain = threshold_metrics_ci(y, s, thr)
    assert set(table["method"]) == {"wilson (patient-clustered)", "wald (patient-clustered)"}
    assert table.loc["sensitivity", "value"] == pytest.approx(plain.loc["sensitivity", "value"])
    # patient bootstrap SD of sensitivity and Youden J
    codes = pd.factorize(pid)[0]
    members = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
    rng = np.random.default_rng(0)
    sens, youden = [], []
    for _ in range(2000):
        idx = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        yb, pb = y[idx], s[idx] >= thr
        se_b = (pb & (yb == 1)).sum() / (yb == 1).sum()
        sp_b = (~pb & (yb == 0)).sum() / (yb == 0).sum()
        sens.append(se_b)
        youden.append(se_b + sp_b - 1)
    z = 1.959964
    width_sens = table.loc["sensitivity", "ci_high"] - table.loc["sensitivity", "ci_low"]
    assert width_sens == pytest.approx(2 * z * np.std(sens, ddof=1), rel=0.15)
    width_j = table.loc["youden", "ci_high"] - table.loc["youden", "ci_low"]
    assert width_j == pytest.approx(2 * z * np.std(youden, ddof=1), rel=0.15)
    assert width_sens > plain.loc["sensitivity", "ci_high"] - plain.loc["sensitivity", "ci_low"]


def test_threshold_metrics_one_case_per_patient_is_unchanged():
    y, s, _ = _clustered_cohort(60, seed=8)
    a = threshold_metrics_ci(y, s, 0.3, clusters=np.arange(len(y)))
    b = threshold_metrics_ci(y, s, 0.3)
    pd.testing.assert_frame_equal(a, b)


def test_metrics_table_records_the_interval_method():
    y, s, pid = _clustered_cohort(60, seed=4)
    prob = 1 / (1 + np.exp(-s))
    frame = pd.DataFrame({"case_id": [f"c{i}" for i in range(len(y))], "patient_id": pid, "model": "m",
                          "fold": "holdout", "split": "test", "prob": prob, "label": y,
                          "class": (prob >= 0.5).astype(int)})
    clustered = metrics_table(frame)
    assert clustered.loc[0, "ci_method"] == "obuchowski"
    ref = clustered_auc_ci(y, prob, pid)
    assert clustered.loc[0, "ci_low"] == pytest.approx(ref.ci_low)
    single = metrics_table(frame.assign(patient_id=frame["case_id"]))
    assert single.loc[0, "ci_method"] == "delong"
    assert single.loc[0, "ci_low"] == pytest.approx(delong_auc_ci(y, prob).ci_low)


def test_refuses_too_few_patients():
    with pytest.raises(InputError, match="at least 2 patients"):
        clustered_auc_ci([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], ["a", "a", "b", "b"])
    assert math.isnan(clustered_proportion_ci([], [])["value"])
