"""A study without images, from ``her2dlr init`` to the report: a clinical table and a feature table computed
elsewhere (``tests/fixtures/feature_only``, written by its ``make_inputs.py``), no placeholder files."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "feature_only"


def test_feature_only_study_from_init_to_report(tmp_path: Path):
    for name in ("clinical.csv", "features.csv"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    runner = CliRunner()
    study_path = tmp_path / "study.yaml"
    res = runner.invoke(app, ["init", str(study_path)])
    assert res.exit_code == 0, res.output
    study = yaml.safe_load(study_path.read_text())
    # what the user edits: the cohort is a table without images, features come from their own table
    for section in ("radiomics", "deep", "qc"):
        study.pop(section, None)
    study["cohort"] = {"sources": [{
        "kind": "table", "path": "clinical.csv", "case_id_column": "Lesion ID", "patient_id_column": "Patient ID",
        "clinical_columns": ["Age", "Menopause"], "clinical_types": {"Menopause": "categorical"},
        "label_columns": ["HER2"], "time_column": "rfs_days", "event_column": "recurrence"}]}
    study["label"] = {"rule": "column", "column": "HER2", "positive": ["positive"], "negative": ["negative"]}
    study["split"] = {"seed": 3, "holdout": {"test_size": 0.3}, "kfold": None}
    study["learn"] = {"features": ["features.csv", "clinical"], "models": [{"name": "lr", "grid": {}}],
                      "selection": [{"name": "zscore"}], "schemes": ["holdout"],
                      "clinical": {"fusion": ["early"]}}
    study["survival"] = {"time_column": "rfs_days", "event_column": "recurrence", "covariates": ["Age", "Menopause"],
                         "group_columns": ["HER2"], "n_bootstrap": 20, "cv_folds": 3, "stepwise": "none",
                         "missing": "drop"}
    study_path.write_text(yaml.safe_dump(study, sort_keys=False))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = runner.invoke(app, ["run", str(study_path), "--no-pdf"])
    assert res.exit_code == 0, res.output
    ours = [w for w in caught if "her2dlr" in w.filename and issubclass(w.category, FutureWarning)]
    assert not ours, [str(w.message) for w in ours]
    run = tmp_path / "runs" / study["name"]
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet")
    assert manifest["image"].isna().all() and manifest["patient_id"].nunique() == 60 and len(manifest) == 77
    metrics = pd.read_csv(run / "learn" / "features+clinical" / "metrics.csv")
    feature_model = metrics[metrics["model"].str.startswith("features-") & (metrics["split"] == "test")].iloc[0]
    assert feature_model["auc"] > 0.75  # the first three features carry HER2
    assert feature_model["ci_method"] == "obuchowski"  # some patients have two lesions
    summary = (run / "survival" / "summary.txt").read_text()
    assert "one row per patient" in summary and "left out for missing values" in summary
    report = (run / "report" / "report.html").read_text()
    assert "patient-clustered (Obuchowski)" in report
    assert not list(tmp_path.glob("*.png"))  # no placeholder images were needed
