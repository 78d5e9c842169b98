"""The `her2dlr` command line, end to end on a small synthetic cohort."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from conftest import write_folder_study
from her2dlr.cli import app

runner = CliRunner()


def _study_file(tmp_path: Path, cohort: Path, **extra) -> Path:
    return write_folder_study(tmp_path / "study.yaml", cohort, split={"seed": 1, "holdout": {"test_size": 0.25}, "kfold": {"n_splits": 3, "n_repeats": 2}},
                              radiomics={"params": "video", "n_jobs": 1, "backend": "sequential"}, **extra)


def test_init_writes_valid_example(tmp_path: Path):
    out = tmp_path / "study.yaml"
    res = runner.invoke(app, ["init", str(out)])
    assert res.exit_code == 0, res.output
    assert out.exists()
    res = runner.invoke(app, ["init", str(out)])
    assert res.exit_code == 2
    assert "already exists" in res.output


def test_bad_study_file_gives_clear_message_and_exit_2(tmp_path: Path, folder_cohort: Path):
    path = _study_file(tmp_path, folder_cohort, qc={"lesion_polcy": "largest"})
    res = runner.invoke(app, ["cohort", "qc", str(path)])
    assert res.exit_code == 2
    assert "qc.lesion_polcy" in res.output and "lesion_policy" in res.output
    assert "Traceback" not in res.output


def test_cohort_qc_then_extract(tmp_path: Path, folder_cohort: Path):
    path = _study_file(tmp_path, folder_cohort)
    res = runner.invoke(app, ["cohort", "qc", str(path), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "synthetic"
    for name in ("manifest.parquet", "manifest.csv", "qc.csv", "qc_summary.txt", "labels.csv", "splits.csv"):
        assert (run / "cohort" / name).exists(), name
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet")
    assert set(manifest["split"]) == {"train", "test"}
    assert {"fold_r0", "fold_r1"} <= set(manifest.columns)
    res = runner.invoke(app, ["extract", "radiomics", str(path)])
    assert res.exit_code == 0, res.output
    feats = pd.read_parquet(run / "features" / "radiomics_video_mask.parquet")
    assert len(feats) == 24 and feats.shape[1] > 50
    meta = json.loads((run / "features" / "radiomics_video_mask.json").read_text())
    assert meta["n_cases"] == 24 and meta["n_failed"] == 0
    assert not list(run.rglob("*.tmp"))


def test_extract_before_cohort_says_what_to_run(tmp_path: Path, folder_cohort: Path):
    path = _study_file(tmp_path, folder_cohort)
    res = runner.invoke(app, ["extract", "radiomics", str(path)])
    assert res.exit_code == 2
    assert "her2dlr cohort build" in res.output


def test_bench_list_and_unknown_name():
    res = runner.invoke(app, ["bench", "--list"])
    assert res.exit_code == 0
    for name in ("busi-qc", "extraction"):
        assert name in res.output
    res = runner.invoke(app, ["bench", "busi-q"])
    assert res.exit_code == 2
    assert "Did you mean 'busi-qc'" in res.output


def test_bench_needs_data_flag():
    res = runner.invoke(app, ["bench", "busi-qc"])
    assert res.exit_code == 2
    assert "--data" in res.output


def test_failed_rebuild_leaves_previous_cohort_untouched(tmp_path: Path, folder_cohort: Path):
    path = _study_file(tmp_path, folder_cohort)
    assert runner.invoke(app, ["cohort", "build", str(path), "--n-jobs", "1"]).exit_code == 0
    manifest = tmp_path / "runs" / "synthetic" / "cohort" / "manifest.parquet"
    before = manifest.read_bytes()
    raw = yaml.safe_load(path.read_text())
    raw["label"]["positive"] = ["no-such-class"]  # every labelled row becomes negative: one class only
    path.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["cohort", "build", str(path), "--n-jobs", "1"])
    assert res.exit_code == 2
    assert "one class only" in res.output
    assert manifest.read_bytes() == before
    assert not list(manifest.parent.rglob("*.tmp"))
