"""MLflow tracking of `learn run`: two runs of one study in the run folder's store, their metrics equal to
metrics.csv, the model artefacts loadable as `pyfunc` models that answer exactly as `her2dlr.predict`."""

from __future__ import annotations

import builtins
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.config import load_study
from her2dlr.errors import InputError

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed (pip install her2dlr[tracking])")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "feature_only"
runner = CliRunner()


def feature_only_study(root: Path, *, build: bool = True, **keys: Any) -> Path:
    """The smallest learning study: a clinical table without images and a feature table computed elsewhere
    (with ``build``, its cohort built)."""
    for name in ("clinical.csv", "features.csv"):
        shutil.copy(FIXTURE / name, root / name)
    raw = {
        "name": "tracked",
        "cohort": {"sources": [{"kind": "table", "path": "clinical.csv", "case_id_column": "Lesion ID",
                                "patient_id_column": "Patient ID", "clinical_columns": ["Age", "Menopause"],
                                "label_columns": ["HER2"]}]},
        "label": {"rule": "column", "column": "HER2", "positive": ["positive"], "negative": ["negative"]},
        "split": {"seed": 3, "holdout": {"test_size": 0.3}, "kfold": None},
        "learn": {"features": ["features.csv"], "models": [{"name": "lr", "grid": {}}],
                  "selection": [{"name": "zscore"}], "schemes": ["holdout"]},
        **keys,
    }
    study = root / "study.yaml"
    study.write_text(yaml.safe_dump(raw, sort_keys=False))
    if build:
        res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
        assert res.exit_code == 0, res.output
    return study


@contextmanager
def store(run_dir: Path) -> Iterator[list[Any]]:
    """The runs of the experiment in the run folder's store (oldest first), that store being MLflow's for the block."""
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(f"sqlite:///{(run_dir / 'mlruns' / 'mlflow.db').as_posix()}")
    try:
        exp = mlflow.get_experiment_by_name("tracked")
        assert exp is not None
        yield mlflow.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], output_format="list")
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Path:
    """One study, `learn run` twice, tracking on with the default store."""
    root = tmp_path_factory.mktemp("tracked")
    study = feature_only_study(root, tracking={"mlflow": True})
    for _ in range(2):
        res = runner.invoke(app, ["learn", "run", str(study)])
        assert res.exit_code == 0, res.output
    return study


def test_two_learn_runs_are_two_mlflow_runs_of_one_study(tracked: Path):
    from her2dlr.tracking import study_hash

    study = load_study(tracked)
    with store(study.run_dir) as runs:
        client = mlflow.MlflowClient()
        logged = [{f.path for f in client.list_artifacts(r.info.run_id, "tables")} for r in runs]
        figures = [[f.path for f in client.list_artifacts(r.info.run_id, "figures")] for r in runs]
    assert len(runs) == 2
    digest = study_hash(study)
    metrics = pd.read_csv(study.run_dir / "learn" / "features" / "metrics.csv")
    assert len(metrics) >= 2  # test and training rows of the hold-out
    for run, tables in zip(runs, logged):
        assert run.info.status == "FINISHED"
        assert run.data.params["study_hash"] == digest and run.data.tags["her2dlr.study_hash"] == digest
        assert run.data.params["selection.0.name"] == "zscore" and run.data.params["models.0.name"] == "lr"
        for row in metrics.itertuples():
            for name in ("auc", "ci_low", "ci_high"):
                key = f"{row.model}/{row.split}/{row.scope}/{name}"
                assert run.data.metrics[key] == pytest.approx(getattr(row, name), abs=1e-12), key
        assert {"tables/metrics.csv", "tables/settings.json"} <= tables
    assert figures == [["figures/roc_test.png"]] * 2
    assert not list((study.run_dir / "learn" / "features").glob("*.png"))  # drawn for the store only
    # the hold-out AUC is a real one: the first three features carry HER2
    test = metrics[(metrics["split"] == "test")].iloc[0]
    assert runs[0].data.metrics[f"{test['model']}/test/{test['scope']}/auc"] > 0.75


def test_learn_artefacts_load_as_pyfunc_and_answer_as_predict(tracked: Path):
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import cases_from_frame, predict, results_frame

    study = load_study(tracked)
    features = pd.read_csv(FIXTURE / "features.csv").rename(columns={"Lesion ID": "case_id"}).head(12)
    with store(study.run_dir) as runs:
        models = mlflow.search_logged_models(experiment_ids=[runs[0].info.experiment_id], output_format="list")
        assert {m.source_run_id for m in models} == {r.info.run_id for r in runs}  # each run logged its artefact
        model = next(m for m in models if m.source_run_id == runs[-1].info.run_id)
        loaded = mlflow.pyfunc.load_model(model.model_uri)
    folder = study.run_dir / "models" / model.name
    assert (folder / "model_card.json").is_file()
    got = loaded.predict(features)
    want = results_frame(predict(load_artefact(folder), cases_from_frame(features), progress=False))
    assert list(got["case_id"]) == list(features["case_id"].astype(str))
    np.testing.assert_allclose(got["prob"].to_numpy(), want["prob"].to_numpy(), rtol=0, atol=1e-12)
    assert (got["class"].to_numpy() == want["class"].to_numpy()).all()
    assert got["prob"].between(0, 1).all() and got["prob"].nunique() > 1


def test_tracking_is_off_by_default_and_writes_no_store(tmp_path: Path):
    study = feature_only_study(tmp_path)
    assert load_study(study).tracking.mlflow is False
    res = runner.invoke(app, ["learn", "run", str(study)])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "tracked"
    assert (run / "learn" / "features" / "metrics.csv").is_file()
    assert not (run / "mlruns").exists()


def test_tracking_on_without_mlflow_is_a_clear_error_before_any_work(tmp_path: Path, monkeypatch):
    from her2dlr.tracking import check_tracking

    study = feature_only_study(tmp_path, build=False, tracking={"mlflow": True})
    real_import = builtins.__import__

    def no_mlflow(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mlflow)
    with pytest.raises(InputError, match=r"pip install her2dlr\[tracking\]"):
        check_tracking(load_study(study))
    for command in (["learn", "run"], ["run"]):  # (train deep / seg make the same call first; they load torch)
        res = runner.invoke(app, [*command, str(study)])
        assert res.exit_code == 2 and "her2dlr[tracking]" in res.output, (command, res.output)
    assert not (tmp_path / "runs").exists()  # refused before any work


def test_unknown_tracking_key_names_the_allowed_ones(tmp_path: Path):
    from her2dlr.config import study_from_dict
    from her2dlr.errors import StudyFileError

    raw = yaml.safe_load(feature_only_study(tmp_path, build=False).read_text())
    raw["tracking"] = {"mlflow": True, "url": "http://localhost:5000"}
    with pytest.raises(StudyFileError, match=r"unknown key 'tracking.url'.*uri"):
        study_from_dict(raw, base_dir=tmp_path)


def test_failed_logging_is_a_warning_and_keeps_the_results(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # nothing listens on port 9: fail at once
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    study = load_study(feature_only_study(tmp_path, tracking={"mlflow": True, "uri": "http://127.0.0.1:9"}))
    with pytest.warns(UserWarning, match="MLflow tracking of stage 'learn' failed"):
        res = runner.invoke(app, ["learn", "run", str(study.base_dir / "study.yaml")])
    assert res.exit_code == 0, res.output
    assert (study.run_dir / "learn" / "features" / "metrics.csv").is_file()
    assert list((study.run_dir / "models").glob("*/model_card.json"))


def test_flattened_params_and_metric_names_are_ones_mlflow_accepts():
    from her2dlr.tracking import flatten_params, metric_key

    flat = flatten_params({"selection": [{"name": "zscore", "k": 5}], "grid": {}, "schemes": ["kfold"],
                           "long": "x" * 7000, "clinical": {"fusion": []}})
    assert flat["selection.0.name"] == "zscore" and flat["selection.0.k"] == "5"
    assert flat["grid"] == "{}" and flat["schemes"] == '["kfold"]' and flat["clinical.fusion"] == "[]"
    assert len(flat["long"]) <= 6000
    assert metric_key("late(radiomics,clinical)-lr", "test", "holdout", "auc") == "late_radiomics_clinical_-lr/test/holdout/auc"


def test_her2dlr_run_logs_a_parent_run_with_the_stages_it_ran_nested(tmp_path: Path):
    import json

    from her2dlr.pipeline import run_study

    study = load_study(feature_only_study(tmp_path, tracking={"mlflow": True, "experiment": "tracked"}))
    first = run_study(study, only=["cohort", "learn"], pdf=False, progress=False, n_jobs=1)
    again = run_study(study, only=["cohort", "learn"], pdf=False, progress=False, n_jobs=1)
    assert first["learn"].status == "ran" and again["learn"].status == "reused"
    with store(study.run_dir) as runs:
        pass
    parents = [r for r in runs if r.data.tags["her2dlr.stage"] == "run"]
    children = [r for r in runs if r.data.tags["her2dlr.stage"] == "learn"]
    assert len(parents) == 2 and len(children) == 1  # the reused stage logged nothing new
    assert children[0].data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert parents[0].data.tags["her2dlr.stage.learn"] == "ran" and parents[1].data.tags["her2dlr.stage.learn"] == "reused"
    assert parents[0].data.params["study_hash"] == children[0].data.params["study_hash"]
    assert all(r.info.status == "FINISHED" for r in runs)
    stamps = json.loads((study.run_dir / "stages.json").read_text())["stages"]
    assert not [rel for s in stamps.values() for rel in s["outputs"] if rel.startswith("mlruns/")]
