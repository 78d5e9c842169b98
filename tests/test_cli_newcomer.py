"""What a new user meets on the command line: --version, the shipped params sets by name, the cache count,
Ctrl-C, the metrics table, the example study file's clinical lines, and the demo's report."""

from __future__ import annotations

import io
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

import her2dlr.radiomics
from conftest import write_folder_study
from her2dlr import __version__
from her2dlr.cli import app
from her2dlr.cli.common import INTERRUPTED_EXIT
from her2dlr.config import study_from_dict
from her2dlr.radiomics.parameters import load_params, shipped_params
from her2dlr.study_template import CLINICAL_BLOCK, EXAMPLE_STUDY, example_study

runner = CliRunner()


def _study_file(tmp_path: Path, cohort: Path, **extra) -> Path:
    return write_folder_study(tmp_path / "study.yaml", cohort, split={"seed": 1, "holdout": None, "kfold": {"n_splits": 3, "n_repeats": 1}},
                              radiomics={"params": "us2d_original", "n_jobs": 1, "backend": "sequential"}, **extra)


def _flat(text: str) -> str:
    """Help text with the wrapping undone: no whitespace, no box characters."""
    return re.sub(r"[\s\u2502\u2503]+", "", text)


def test_version_option() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"her2dlr {__version__}"


def test_every_shipped_params_set_is_selectable_and_listed() -> None:
    folder = Path(her2dlr.radiomics.__file__).parent / "params"
    names = sorted(p.stem for p in folder.glob("*.yaml"))
    assert {"us2d", "video", "mri3d", "us2d_original", "us2d_original_norm", "us2d_original_bincount"} <= set(names)
    assert sorted(shipped_params()) == names
    help_text = _flat(runner.invoke(app, ["extract", "radiomics", "--help"]).output)
    for name in names:
        assert load_params(name) == load_params(folder / f"{name}.yaml"), name
        assert name in help_text, name
        assert re.search(rf"^\s*#\s+{name}\s", EXAMPLE_STUDY, re.M), name  # `her2dlr init` lists it


def test_us2d_original_extracts_after_qc_and_says_what_came_from_the_cache(tmp_path: Path, folder_cohort: Path):
    path = _study_file(tmp_path, folder_cohort, learn={
        "features": ["radiomics_us2d_original_mask"], "selection": [{"name": "variance"}, {"name": "zscore"}],
        "models": [{"name": "lr", "grid": {}}], "schemes": ["kfold"],
        "search": {"inner_splits": 2}, "save_models": False})
    assert runner.invoke(app, ["cohort", "qc", str(path), "--n-jobs", "1"]).exit_code == 0
    first = runner.invoke(app, ["extract", "radiomics", str(path)])
    assert first.exit_code == 0, first.output
    table = pd.read_parquet(tmp_path / "runs" / "synthetic" / "features" / "radiomics_us2d_original_mask.parquet")
    assert table.shape == (24, 100)
    assert "24 extracted now, 0 from the cache" in first.output
    again = runner.invoke(app, ["extract", "radiomics", str(path)])
    assert "0 extracted now, 24 from the cache" in again.output, again.output
    learned = runner.invoke(app, ["learn", "run", str(path)])
    assert learned.exit_code == 0, learned.output
    flat = " ".join(learned.output.split())
    assert "Best model: radiomics_us2d_original_mask-" in flat
    assert f"her2dlr report {tmp_path / 'runs' / 'synthetic'}" in flat


def test_ctrl_c_says_nothing_is_half_written_and_exits_130(tmp_path: Path, folder_cohort: Path, monkeypatch):
    import her2dlr.radiomics.stage

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C during extraction
        time.sleep(5)

    path = _study_file(tmp_path, folder_cohort)
    monkeypatch.setattr(her2dlr.radiomics.stage, "run_radiomics_stage", interrupted)
    # a user's fresh process has Python's own Ctrl-C handler; a library that an earlier test of the
    # same pytest process loaded may have left its own installed, so the test sets Python's back
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        res = runner.invoke(app, ["extract", "radiomics", str(path)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert res.exit_code == INTERRUPTED_EXIT == 130
    text = " ".join(res.output.split())
    assert "Interrupted (Ctrl-C). Nothing half-written" in text and "Rerun the same command to resume" in text
    assert "Traceback" not in res.output


def _metrics(n_models: int = 24) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A 96-row metrics table (test mean / r0 / r1, train_oof) of models with long names, and their predictions."""
    rng = np.random.default_rng(0)
    names = [f"stack(radiomics_us2d_original_mask+deep_densenet3block_{i:02d},clinical)-lightgbm"
             for i in range(n_models)]
    rows, preds = [], []
    y = np.arange(40) % 2
    for i, name in enumerate(names):
        test_auc, inner_auc = 0.70 + 0.01 * i, 0.90 - 0.01 * i  # the best on test data is the worst inside
        for scope in ("mean", "r0", "r1"):
            rows.append({"model": name, "split": "test", "scope": scope, "n": 40, "auc": test_auc, "ci_low": 0.6,
                         "ci_high": 0.9, "sensitivity": 0.7, "specificity": 0.6, "threshold": 0.5})
        rows.append({"model": name, "split": "train_oof", "scope": "fold-mean", "n": 27, "auc": inner_auc,
                     "ci_low": 0.7, "ci_high": 0.95, "sensitivity": 0.8, "specificity": 0.7, "threshold": 0.5})
        preds.append(pd.DataFrame({"case_id": [f"c{j}" for j in range(40)], "model": name,
                                   "fold": np.where(np.arange(40) < 20, "r0f0", "r0f1"), "split": "test",
                                   "prob": rng.random(40), "label": y}))
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True), names


def test_metrics_table_shows_every_model_whole_the_best_and_the_report(monkeypatch) -> None:
    import her2dlr.console
    from her2dlr.console import print_metrics

    metrics, predictions, names = _metrics()
    assert len(metrics) == 96
    out = io.StringIO()
    monkeypatch.setattr(her2dlr.console, "console", Console(file=out, width=80, color_system=None))
    print_metrics(metrics, "Models", predictions=predictions, source="learn/x/metrics.csv", run_dir="runs/study")
    text = out.getvalue()
    cells = [line.split("\u2502") for line in text.splitlines() if line.startswith("\u2502")]
    rows = [c for c in cells if c[2].strip()]  # a row starts where its evaluation cell is filled
    assert len(rows) == len(names)  # every model's summary row, none left out silently
    joined = "".join(c[1].strip() for c in cells)  # model names folded over lines, read back in order
    for name in names:
        assert name in joined, name
    assert "\u2026" not in text  # nothing cut short with an ellipsis
    flat = " ".join(text.split())
    assert "the other 72 rows (per repetition, training, thresholds) are in learn/x/metrics.csv" in flat
    # chosen as the report chooses its reference: on inner cross-validation, not on the test AUC
    assert f"Best model: {names[0]}, AUC 0.700" in flat
    assert "her2dlr report runs/study" in flat


def test_example_study_shows_the_clinical_model_and_its_fusion() -> None:
    # a user uncomments the clinical lines under learn: (and drops the features line they replace)
    lines = EXAMPLE_STUDY.splitlines()
    block = CLINICAL_BLOCK.splitlines()
    commented = [f"  # {line}" for line in block]
    start = lines.index(commented[0])
    assert lines[start:start + len(block)] == commented
    features = next(i for i, line in enumerate(lines) if line.startswith("  features: [radiomics_us2d_mask]"))
    edited = [f"  {line}" for line in block]
    uncommented = lines[:features] + lines[features + 1:start] + edited + lines[start + len(block):]
    raw = yaml.safe_load("\n".join(uncommented))
    assert raw == yaml.safe_load(example_study(clinical=True))
    study = study_from_dict(raw)  # the real schema of the study file
    assert study.learn.features == ["radiomics_us2d_mask", "clinical"]
    assert study.learn.clinical.fusion == ["early", "late", "stack", "combined"]
    assert study.learn.clinical.columns == ["age", "menopause", "ER", "PR", "Ki67", "tumour_size"]


@pytest.mark.slow
def test_demo_ends_with_the_breast_report(tmp_path: Path, capsys) -> None:
    from her2dlr.demo import run_demo

    summary = run_demo(tmp_path / "demo", quick=True, studies=("breast",), pdf=False, n_jobs=1)
    report = Path(summary["report"])
    assert report == tmp_path / "demo" / "breast" / "report" / "report.html" and report.is_file()
    html = report.read_text(encoding="utf-8")
    assert '<section id="nomogram">' in html and "Study report: breast" in html
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1].strip() == str(report)  # the demo ends with the report's path
