"""The survival stage on a cohort as the user described it: source column names, cohort types, missing values,
and a summary with findings. Data: the GBSG2 fixture as a feature-only cohort (no images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.cohort.build import build_cohort
from her2dlr.config import study_from_dict
from her2dlr.errors import InputError
from her2dlr.survival.stage import run_survival_stage

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "survival"


def _study(tmp_path: Path, survival: dict, *, missing_rows: bool = False):
    gbsg = pd.read_csv(FIXTURES / "gbsg2.csv").iloc[:300].copy()
    gbsg.insert(0, "ID", [f"pt{i}" for i in range(len(gbsg))])
    gbsg["grade_code"] = gbsg["tgrade"].map({"I": 0, "II": 1, "III": 2})
    gbsg = gbsg.rename(columns={"time": "rfs_days", "cens": "recurrence"})
    if missing_rows:
        gbsg.loc[[3, 10], "age"] = np.nan
        gbsg.loc[[5], "tsize"] = np.nan
    gbsg.to_csv(tmp_path / "cohort.csv", index=False)
    raw = {
        "name": "prognosis",
        "cohort": {"sources": [{
            "kind": "table", "path": "cohort.csv", "case_id_column": "ID",
            "clinical_columns": ["age", "tsize", "pnodes", "grade_code"], "clinical_types": {"grade_code": "categorical"},
            "label_columns": ["horTh"], "time_column": "rfs_days", "event_column": "recurrence",
        }]},
        "label": {"rule": "column", "column": "horTh", "positive": ["yes"], "negative": ["no"]},
        "split": {"kfold": None},
        "survival": {"time_column": "rfs_days", "event_column": "recurrence", "n_bootstrap": 20, "cv_folds": 3,
                     "stepwise": "none", **survival},
    }
    study = study_from_dict(raw, base_dir=tmp_path)
    build_cohort(study, n_jobs=1, progress=False)
    return study


def test_source_names_cohort_types_and_findings(tmp_path: Path):
    study = _study(tmp_path, {"covariates": ["age", "tsize", "pnodes", "grade_code"]})
    _report, out = run_survival_stage(study)
    cox = pd.read_csv(out / "tables" / "cox_multivariable.csv")
    # grade_code (0/1/2, declared categorical in the cohort) enters Cox as two level terms, not one number
    assert sorted(cox.loc[cox["covariate"] == "grade_code", "level"].astype(float)) == [1.0, 2.0]
    summary = (out / "summary.txt").read_text()
    findings = summary.split("Notes:")[0]
    assert "pnodes went with a higher hazard of the event" in findings  # nodes: the strongest GBSG2 predictor
    assert "- " in findings.split("Findings:")[1]


def test_missing_values_are_reported_at_once_or_dropped(tmp_path: Path):
    study = _study(tmp_path, {"covariates": ["age", "tsize", "pnodes"]}, missing_rows=True)
    with pytest.raises(InputError) as err:
        run_survival_stage(study)
    message = str(err.value)
    assert "3 case(s) have missing values" in message
    assert "age: 2 missing" in message and "tsize: 1 missing" in message and "survival.missing: drop" in message
    report, out = run_survival_stage(study, missing="drop")
    missing = pd.read_csv(out / "tables" / "missing.csv")
    assert dict(zip(missing["column"], missing["n_missing"])) == {"age": 2, "tsize": 1}
    assert report.results["cox_multivariable"].n == 297
    assert any("3 of 300 case(s) left out for missing values" in n for n in report.notes)
