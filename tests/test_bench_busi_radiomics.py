"""The ``busi-radiomics`` benchmark in its quick mode on BUSI (skipped without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.bench import BenchOptions, list_benches, run_bench
from her2dlr.errors import InputError

pytestmark = pytest.mark.realdata


def test_busi_radiomics_registered_and_needs_data():
    assert "busi-radiomics" in list_benches()
    with pytest.raises(InputError, match="--data"):
        list(run_bench("busi-radiomics", BenchOptions()))


def test_shared_selection_is_reused_and_identical(tmp_path: Path):
    from sklearn.pipeline import Pipeline

    from her2dlr.bench.busi_radiomics import SELECTION, SharedSelection
    from her2dlr.learn.selection import build_selection, selection_funnel

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    X = pd.DataFrame(rng.normal(size=(80, 30)), columns=[f"f [{i}]" for i in range(30)])
    X.iloc[:, :3] += y[:, None]
    first = SharedSelection(SELECTION, str(tmp_path)).fit(X, y)
    assert any(tmp_path.rglob("output.pkl"))  # memo written
    again = SharedSelection(SELECTION, str(tmp_path)).fit(X, y)
    plain = Pipeline(build_selection(SELECTION)).fit(X, y)
    assert list(first.get_feature_names_out()) == list(again.get_feature_names_out())
    assert list(first.get_feature_names_out()) == list(plain.get_feature_names_out())
    pd.testing.assert_frame_equal(again.transform(X), plain.transform(X))
    funnel = selection_funnel(Pipeline([("selection", again)]))
    assert funnel["step"].iloc[0] == "selection/variance" and funnel["n_in"].iloc[0] == 30


def test_busi_radiomics_quick(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import her2dlr.bench.busi_radiomics as bench

    # the lines and their wiring are checked, not the search's quality: a small budget keeps CI short
    monkeypatch.setattr("her2dlr.bench.busi_workflows.QUICK_WORKFLOWS", 4)
    monkeypatch.setattr("her2dlr.bench.busi_workflows.TOP_K", 2)
    opts = BenchOptions(data=shared_data / "busi", quick=True, work_dir=tmp_path, n_jobs=2)
    lines = {line["metric"]: line for line in run_bench("busi-radiomics", opts)}
    for setting in ("mask", "box"):
        line = lines[f"auc_{setting}"]
        assert 0.0 <= line["ci_low"] <= line["value"] <= line["ci_high"] <= 1.0
        assert line["n"] == bench.QUICK_CASES and line["repeats"] == 1 and line["model"] == "lr"
        assert lines[f"auc_{setting}_lr"]["value"] == line["value"]
        assert lines[f"seconds_{setting}"]["value"] > 0
        for kind in ("workflows", "plain"):
            auc = lines[f"auc_{setting}_{kind}"]
            assert 0.0 <= auc["ci_low"] <= auc["value"] <= auc["ci_high"] <= 1.0 and auc["n"] == bench.QUICK_CASES
        assert 0.0 <= lines[f"delong_p_{setting}_workflows_vs_plain"]["value"] <= 1.0
        assert lines[f"seconds_{setting}_workflows"]["cpu_seconds"] > 0
    # benign vs malignant is easy from delineated lesions, even on 80 cases
    assert lines["auc_mask"]["value"] > 0.8
    assert lines["seconds"]["value"] == max(lines["seconds_mask"]["value"], lines["seconds_box"]["value"])
    assert lines["seconds_extraction"]["cases"] == 2 * bench.QUICK_CASES


def test_inner_choice_takes_each_folds_best_inner_classifier():
    from types import SimpleNamespace

    from her2dlr.bench.busi_radiomics import inner_choice

    def result(model: str, inner: dict[str, float], prob: float) -> SimpleNamespace:
        rows = [{"case_id": f"{fold}-{i}", "model": model, "fold": fold, "split": split, "prob": prob, "label": i % 2}
                for fold in inner for split in ("test", "train") for i in range(4)]
        fits = [SimpleNamespace(fold=fold, inner_median_auc=auc) for fold, auc in inner.items()]
        return SimpleNamespace(model=model, predictions=pd.DataFrame(rows), fits=fits)

    a = result("r-lr", {"r0f0": 0.9, "r0f1": 0.7, "r0f2": 0.8}, 0.1)
    b = result("r-svm", {"r0f0": 0.8, "r0f1": 0.75, "r0f2": 0.8}, 0.9)
    out = inner_choice([a, b], "inner_choice")
    assert set(out["split"]) == {"test"} and set(out["model"]) == {"inner_choice"}
    assert len(out) == 12
    # fold 0: lr (0.9), fold 1: svm (0.75), fold 2: a tie goes to the earlier classifier (lr)
    source = out.groupby("fold")["prob"].agg(["first", "count"])
    assert source["first"].to_dict() == {"r0f0": 0.1, "r0f1": 0.9, "r0f2": 0.1}
    assert set(source["count"]) == {4}


def test_bench_feature_sets_keep_the_original_groups_apart_from_the_full_set():
    from her2dlr.bench.busi_workflows import bench_feature_sets, bench_space
    from her2dlr.learn.workflows.space import ColumnSubset

    columns = ["original_shape2D_Elongation", "original_firstorder_Mean", "original_glcm_Contrast",
               "original_ngtdm_Busyness", "log-sigma-2-0-mm-3D_firstorder_Mean", "log-sigma-2-0-mm-3D_glcm_Contrast",
               "wavelet-LH_glrlm_RunEntropy"]
    X = pd.DataFrame(np.zeros((2, len(columns))), columns=columns)

    def kept(sets: list) -> dict[str, list[str]]:
        return {s["name"]: list(ColumnSubset(s["columns"], s["name"]).fit(X).columns_) for s in sets}

    original = kept(bench_feature_sets())
    assert original == {"original": columns[:4], "texture": columns[2:4], "shape_firstorder": columns[:2]}
    full = kept(bench_feature_sets(full_us2d=True))
    assert full == {**original, "us2d": columns}
    assert list(bench_space([{"name": "variance"}], 10, full_us2d=True).feature_set_patterns) == list(full)
