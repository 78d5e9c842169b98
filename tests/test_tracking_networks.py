"""MLflow tracking of `train seg` and `train deep`: Dice and AUC with their CIs, the montage, and the deployable
network as a `pyfunc` model that reads image rows and answers as `her2dlr.predict` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_folder_study, write_random_lesion_folders
from her2dlr.cli import app

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed (pip install her2dlr[tracking])")
runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, list, list]:
    """A 16-image study with tracking on: `train seg` (2 folds), then `train deep` (2 folds and the final network)."""
    import torch

    tmp = tmp_path_factory.mktemp("tracked_nets")
    write_random_lesion_folders(tmp / "cohort", 8)
    study = write_folder_study(
        tmp / "study.yaml", tmp / "cohort", name="nets",
        split={"seed": 3, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        segment={"image_size": 32, "epochs": 3, "batch_size": 8, "patience": 0, "final": False},
        deep={"image_size": 32, "epochs": 1, "batch_size": 8, "patience": 0, "final": True},
        tracking={"mlflow": True},
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for args in (["cohort", "build", str(study), "--n-jobs", "1"], ["train", "seg", str(study)],
                     ["train", "deep", str(study), "--threads", "1", "--n-jobs", "1"]):
            res = runner.invoke(app, args)
            assert res.exit_code == 0, (args, res.output)
    finally:
        torch.set_num_threads(threads)
    run_dir = tmp / "runs" / "nets"
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(f"sqlite:///{(run_dir / 'mlruns' / 'mlflow.db').as_posix()}")
    try:
        exp = mlflow.get_experiment_by_name("nets")
        found = mlflow.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"], output_format="list")
        models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
        figures = [[f.path for f in mlflow.MlflowClient().list_artifacts(r.info.run_id, "figures")] for r in found]
        loaded = [mlflow.pyfunc.load_model(m.model_uri) for m in models]
    finally:
        mlflow.set_tracking_uri(previous)
    return run_dir, list(zip(found, figures)), list(zip(models, loaded))


def test_train_seg_logs_dice_with_its_ci_and_the_montage(runs):
    run_dir, found, _ = runs
    assert [r.data.tags["her2dlr.stage"] for r, _ in found] == ["segment", "deep"]
    seg, figures = found[0]
    summary = json.loads((run_dir / "segment" / "unet" / "summary.json").read_text())
    for name in ("dice_mean", "dice_ci_low", "dice_ci_high", "iou_mean", "detection_rate"):
        assert seg.data.metrics[name] == pytest.approx(summary[name], abs=1e-12), name
    assert seg.data.metrics["dice_ci_low"] <= seg.data.metrics["dice_mean"] <= seg.data.metrics["dice_ci_high"]
    assert figures == ["figures/montage.png"]
    assert seg.data.params["image_size"] == "32" and seg.data.params["epochs"] == "3"


def test_train_deep_logs_auc_and_its_network_as_a_pyfunc_model(runs):
    from her2dlr.predict import cases_from_frame, predict, results_frame

    run_dir, found, models = runs
    deep, _ = found[1]
    metrics = pd.read_csv(run_dir / "deep" / "densenet3block" / "metrics.csv")
    for row in metrics.itertuples():
        for name in ("auc", "ci_low", "ci_high"):
            assert deep.data.metrics[f"{row.model}/{row.split}/{row.scope}/{name}"] == pytest.approx(
                getattr(row, name), abs=1e-12)
    assert deep.data.params["study_hash"] == found[0][0].data.params["study_hash"]
    assert len(models) == 1
    model, loaded = models[0]
    assert model.source_run_id == deep.info.run_id
    # image rows, as a user's table gives them: the image, its mask or its box
    manifest = pd.read_parquet(run_dir / "cohort" / "manifest.parquet").head(4)
    rows = pd.DataFrame({"case_id": manifest["case_id"], "image": manifest["image"],
                         "mask": [manifest["mask"].iloc[0], None, manifest["mask"].iloc[2], None],
                         "box": [None, "10,12,20,18", None, "5,5,30,30"]})
    got = loaded.predict(rows)
    want = results_frame(predict(run_dir / "models" / model.name, cases_from_frame(rows), progress=False))
    assert list(got["case_id"]) == list(rows["case_id"])
    np.testing.assert_allclose(got["prob"].to_numpy(), want["prob"].to_numpy(), rtol=0, atol=1e-12)
    assert (got["class"].to_numpy() == want["class"].to_numpy()).all()
