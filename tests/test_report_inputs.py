"""Bad and partial run folders: clear errors for what is not a run, notes for missing optional parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from her2dlr.bench.synthetic_run import make_synthetic_run
from her2dlr.errors import InputError
from her2dlr.report.build import build_report
from her2dlr.report.run import RunFolder
from her2dlr.report.views import prediction_views, reference_model


def test_not_a_run_folder_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match=r"cohort/manifest\.parquet.*learn/<set>/predictions\.parquet"):
        build_report(tmp_path, progress=False)
    with pytest.raises(InputError, match="does not exist"):
        RunFolder(tmp_path / "absent")
    study = tmp_path / "study.yaml"
    study.write_text("name: x\n")
    with pytest.raises(InputError, match="study file"):
        RunFolder(study)


def test_cli_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    from her2dlr.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run folder" in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def kfold_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_run(tmp_path_factory.mktemp("kfold") / "run", n_cases=80, n_models=2, scheme="kfold",
                              clinical=False, extras=False, seed=1)


def test_views_and_reference_of_a_kfold_run(kfold_run: Path) -> None:
    run = RunFolder(kfold_run)
    views = prediction_views(run.predictions)
    assert [v.key for v in views] == ["cv"]
    cv = views[0]
    assert cv.frame.groupby("model")["case_id"].nunique().eq(80).all()  # one repetition: every case once
    assert set(cv.frame["fold"].str[:2]) == {"r0"}
    model, why = reference_model(run.metrics, views)
    inner = run.metrics[(run.metrics["split"] == "train_oof")].groupby("model")["auc"].mean()
    assert model == inner.idxmax() and "test data played no part" in why


def test_missing_optional_parts_are_noted(kfold_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"old": True}))
    (out / "stale.png").write_bytes(b"old")
    res = build_report(kfold_run, out=out, progress=False, pdf=False, strict=True)
    assert not (out / "stale.png").exists(), "a rebuild replaces the whole report folder"
    notes = {s.id: " ".join(b.text for b in s.all_blocks() if b.kind == "note") for s in res.sections}
    assert "no combined logistic model" in notes["nomogram"]
    assert "none" in notes["explainability"]
    assert "no survival" in notes["survival"]
    assert "no clinical columns" in notes["tables"]
    html = res.html.read_text(encoding="utf-8")
    assert "Cross-validation (out-of-fold)" in html
    assert (out / "tables" / "auc_cv.csv").exists() and (out / "tables" / "checklist_metrics.csv").exists()


def test_unrelated_output_folder_is_refused(kfold_run: Path, tmp_path: Path) -> None:
    (tmp_path / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="not a her2dlr report folder"):
        build_report(kfold_run, out=tmp_path, progress=False, pdf=False)
    assert (tmp_path / "thesis.docx").exists()
