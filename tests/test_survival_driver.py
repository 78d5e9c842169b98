"""run_survival, SurvivalSettings and the `her2dlr survival run` sub-command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from her2dlr.cli.survival import app
from her2dlr.errors import InputError, StudyFileError
from her2dlr.survival import RiskStratifier, SurvivalSettings, load_survival_settings, run_survival

FIX = Path(__file__).parent / "fixtures" / "survival"


@pytest.fixture(scope="module")
def gbsg2() -> pd.DataFrame:
    df = pd.read_csv(FIX / "gbsg2.csv")
    rng = np.random.default_rng(0)
    df["case_id"] = [f"P{i:03d}" for i in range(len(df))]
    df["status"] = np.where(df["progrec"] > 20, "HER2-low", "HER2-zero")
    flip = rng.random(len(df)) < 0.15
    df["pred"] = np.where(flip, np.where(df["status"] == "HER2-low", "HER2-zero", "HER2-low"), df["status"])
    df["split"] = np.where(rng.random(len(df)) < 0.7, "train", "test")
    return df


def small_settings(**kw) -> SurvivalSettings:
    base = {
        "time_column": "time", "event_column": "cens", "time_unit": "days", "id_column": "case_id", "group_columns": ["horTh"],
        "covariates": ["horTh", "age", "tgrade", "pnodes"], "score_covariates": ["tgrade", "pnodes", "progrec"],
        "treatment_column": "horTh", "treatment_name": "hormonal therapy", "reference_arm": False,  # YAML 'no' -> False
        "her2low": {"true_column": "status", "pred_column": "pred", "positive": "HER2-low", "stepwise": False,
                 "covariates": ["tgrade", "pnodes"]},
        "n_bootstrap": 50,
    }
    base.update(kw)
    return SurvivalSettings(**base)


def test_run_survival_writes_everything(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    rep = run_survival(gbsg2, small_settings(), tmp_path / "out")
    out = tmp_path / "out"
    for name in ("km_overall", "km_horTh", "logrank", "cox_multivariable", "cox_stepwise_steps", "concordance",
                 "risk_groups", "risk_km_all", "risk_hr_all", "psm_balance", "treatment_benefit", "her2low_models"):
        assert name in rep.tables, name
        assert rep.tables[name].exists()
    for name in ("km_overall", "km_horTh", "forest_multivariable", "km_risk_groups_all", "psm_balance",
                 "treatment_by_group", "her2low_km"):
        png = rep.figures[name]
        assert png.suffix == ".png" and png.read_bytes()[:4] == b"\x89PNG", name
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    settings = json.loads((out / "survival_settings.json").read_text())
    assert settings["time_column"] == "time"
    summary = (out / "summary.txt").read_text()
    assert "benefit from hormonal therapy in the low-risk group" in summary
    groups = pd.read_csv(rep.tables["risk_groups"])
    assert list(groups.columns[:3]) == ["case_id", "risk_score", "risk_group"]
    assert set(groups["risk_group"]) <= {"low", "moderate", "high"}
    conc = pd.read_csv(rep.tables["concordance"])
    assert {"harrell", "uno"} <= set(conc["method"]) and conc["c_index"].between(0.5, 1).all()
    logrank = pd.read_csv(rep.tables["logrank"])
    assert logrank.loc[0, "test_statistic"] == pytest.approx(8.5648, abs=1e-3)
    assert rep.summary.shape[0] == len(rep.tables) + len(rep.figures)
    assert isinstance(rep.results["risk_stratifier"], RiskStratifier)


def test_risk_cutoff_is_fitted_on_training_cases_only(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    s = small_settings(split_column="split", treatment_column=None, her2low=None, covariates=[], group_columns=[],
                       risk_covariates=["age"])
    a = run_survival(gbsg2, s, tmp_path / "a")
    # scramble the outcomes of the test cases: the fitted cut-off and centres must not move
    df = gbsg2.copy()
    test = df["split"] == "test"
    df.loc[test, "time"] = df.loc[test, "time"].to_numpy()[::-1]
    df.loc[test, "cens"] = 1 - df.loc[test, "cens"]
    b = run_survival(df, s, tmp_path / "b")
    sa = json.loads((tmp_path / "a" / "risk_stratifier.json").read_text())["state"]
    sb = json.loads((tmp_path / "b" / "risk_stratifier.json").read_text())["state"]
    assert sa["cutoff_"] == sb["cutoff_"] and sa["centers_"] == sb["centers_"]
    assert {"km_risk_groups_train", "km_risk_groups_test"} <= set(a.figures)
    hr = pd.read_csv(a.tables["risk_hr_test"], index_col=0)  # HR vs low, adjusted for age
    assert {"risk_group[moderate]", "risk_group[high]", "age"} <= set(hr.index)
    assert any("out-of-fold" in n for n in b.notes)


def test_run_survival_bad_input(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"The covariate \(covariates\) 'pnode' is not in the table.*'pnodes'"):
        run_survival(gbsg2, small_settings(covariates=["pnode"]), tmp_path / "x")
    bad = gbsg2.copy()
    bad.loc[5, "time"] = -3
    with pytest.raises(InputError, match="Time column 'time' has negative follow-up times at row 5"):
        run_survival(bad, small_settings(), tmp_path / "y")


def write_study(folder: Path, survival: str | None) -> Path:
    """A minimal valid study file, with ``survival`` (YAML lines, indented) as its survival section."""
    text = ("name: demo\ncohort:\n  sources:\n    - {kind: table, path: cohort.csv, image_column: image}\n"
            "label: {column: y}\n")
    if survival is not None:
        text += "survival:\n" + survival
    path = folder / "study.yaml"
    path.write_text(text)
    return path


def test_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(StudyFileError, match="unknown key 'time_colum'.*Did you mean 'time_column'"):
        load_survival_settings({"time_colum": "t"})
    with pytest.raises(StudyFileError, match="psm.calipr"):
        load_survival_settings({"psm": {"calipr": 0.1}})
    with pytest.raises(StudyFileError, match="horizons"):
        load_survival_settings({"horizons": [1, -2]})
    from her2dlr.config import load_study

    study = load_study(write_study(tmp_path, "  time_column: t\n  event_column: e\n  psm:\n    ratio: 2\n"))
    s = load_survival_settings(study, event_column="dead")
    assert (s.time_column, s.event_column, s.psm.ratio) == ("t", "dead", 2)
    assert s.per_year == 365.25
    with pytest.raises(StudyFileError, match=r"survival\.psm\.calipr.*Did you mean 'caliper'"):
        load_survival_settings(load_study(write_study(tmp_path, "  psm: {calipr: 0.1}\n")))
    with pytest.raises(StudyFileError, match="has no 'survival:' section"):
        load_survival_settings(load_study(write_study(tmp_path, None)))
    with pytest.raises(TypeError, match="'source' parameter of load_survival_settings"):
        load_survival_settings(42)


def test_settings_come_from_the_loaded_study(tmp_path: Path) -> None:
    from her2dlr.config import load_study

    study = load_study(write_study(tmp_path, "  time_column: t\n  event_column: e\n  psm: {ratio: 2}\n"))
    (tmp_path / "study.yaml").unlink()  # the loaded Study is all that is needed: no second read
    s = load_survival_settings(study, time_unit="months")
    assert (s.time_column, s.event_column, s.psm.ratio, s.time_unit) == ("t", "e", 2, "months")
    assert study.survival.time_unit == "days"  # the study's own settings are left as they were
    assert load_survival_settings(study.survival) == study.survival
    with pytest.raises(StudyFileError, match="time_unit.*'fortnights'"):
        load_survival_settings(study, time_unit="fortnights")
    study.survival = None
    with pytest.raises(StudyFileError, match="Study 'demo' has no 'survival:' section"):
        load_survival_settings(study)


def test_cli_run(gbsg2: pd.DataFrame, tmp_path: Path) -> None:
    data = tmp_path / "cohort.csv"
    gbsg2.to_csv(data, index=False)
    settings = write_study(tmp_path, "  time_column: time\n  event_column: cens\n  n_bootstrap: 20\n  stepwise: none\n")
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--data", str(data), "--settings", str(settings), "--out", str(tmp_path / "o"),
                              "--group", "tgrade", "--covariate", "age", "--covariate", "pnodes"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "tables" / "km_tgrade.csv").exists()
    assert (tmp_path / "o" / "figures" / "forest_multivariable.png").exists()
    bad = runner.invoke(app, ["run", "--data", str(data), "--out", str(tmp_path / "p"), "--time", "tme"])
    assert bad.exit_code == 2
    assert "Did you mean 'time'" in bad.output


def test_cli_run_reads_the_study_file_once(gbsg2: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    data = tmp_path / "cohort.csv"
    gbsg2.to_csv(data, index=False)
    study = write_study(tmp_path, "  time_column: time\n  event_column: cens\n  stepwise: none\n  n_bootstrap: 10\n")
    reads = []
    safe_load = yaml.safe_load
    monkeypatch.setattr(yaml, "safe_load", lambda text: reads.append(1) or safe_load(text))
    res = CliRunner().invoke(app, ["run", str(study), "--data", str(data), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert len(reads) == 1
    assert json.loads((tmp_path / "o" / "survival_settings.json").read_text())["event_column"] == "cens"
    no_section = write_study(tmp_path / "o", None)
    bad = CliRunner().invoke(app, ["run", str(no_section), "--data", str(data), "--out", str(tmp_path / "p")])
    assert bad.exit_code != 0 and "has no 'survival:' section" in bad.output
