"""Deep models on the manifest's outer folds: the predictions contract, thresholds, checkpoints, predict_images, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import lesion_image, lesion_mask, write_lesion_folders, write_png
from her2dlr.cohort.splits import repeated_group_kfold, stratified_group_holdout
from her2dlr.deep.cv import deep_table, load_deep_model, predict_images, run_deep_cv
from her2dlr.deep.train import TrainSettings, load_checkpoint
from her2dlr.errors import InputError
from her2dlr.imaging.roi import RoiSpec
from her2dlr.learn.cv import PREDICTION_COLUMNS
from her2dlr.learn.thresholds import choose_threshold

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 36


@pytest.fixture
def manifest(tmp_path) -> pd.DataFrame:
    """36 PNG cases with masks (smooth vs rough lesions), two patients with two images each, 3-fold + hold-out."""
    rows = []
    for i in range(N):
        label = i % 2
        img = write_png(tmp_path / "img" / f"c{i}.png", lesion_image(i, texture="rough" if label else "smooth"))
        mask = write_png(tmp_path / "img" / f"c{i}_mask.png", lesion_mask())
        rows.append({"case_id": f"c{i}", "patient_id": f"p{i // 2 if i < 4 else i}", "image": str(img),
                     "mask": str(mask), "bbox": None, "label": label, "modality": "US"})
    table = pd.DataFrame(rows)
    y, groups = table["label"].to_numpy(), table["patient_id"].to_numpy()
    table["fold_r0"] = repeated_group_kfold(y, groups, 3, 1, seed=0)[0]
    table["split"] = np.where(stratified_group_holdout(y, groups, 0.3, seed=0), "test", "train")
    return table


def _settings(**kw) -> TrainSettings:
    base = {"image_size": 32, "epochs": 2, "batch_size": 8, "progress": False, "num_threads": 1, "min_class_cases": 4,
                "arch_options": {"growth_rate": 4, "block_layers": (1, 1, 2)}}
    base.update(kw)
    return TrainSettings(**base)


def test_outer_folds_predictions_thresholds_and_files(manifest, tmp_path):
    out = tmp_path / "deep"
    res = run_deep_cv(manifest, settings=_settings(), scheme=["kfold", "holdout"], out_dir=out, progress=False)
    pred = res.predictions
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert set(pred["split"]) == {"test", "train", "train_oof"} and set(pred["model"]) == {"deep-densenet3block"}
    kfold_test = pred[(pred["split"] == "test") & pred["fold"].str.startswith("r0")]
    assert sorted(kfold_test["case_id"]) == sorted(manifest["case_id"])  # every case once out of fold
    for fold in res.folds:
        rows = pred[pred["fold"] == fold.fold]
        test_cases = set(rows.loc[rows["split"] == "test", "case_id"])
        assert not test_cases & set(fold.train_cases)  # a fold never tests what it trained on
        oof = rows[rows["split"] == "train_oof"]
        assert set(oof["case_id"]) <= set(fold.train_cases)
        expected = choose_threshold(oof["label"], oof["prob"]).value  # Youden on the inner validation rows
        assert fold.threshold.value == pytest.approx(expected)
        assert (rows["threshold"] == fold.threshold.value).all()
        assert ((rows["prob"] >= fold.threshold.value).astype(int) == rows["class"]).all()
        ckpt = load_checkpoint(out / fold.fold / "best.pt")
        assert ckpt["extra"]["threshold"]["value"] == pytest.approx(fold.threshold.value)
        assert ckpt["extra"]["roi"]["size"] == 32 and set(ckpt["extra"]["train_cases"]) == set(fold.train_cases)
        assert (out / fold.fold / "last.pt").is_file()
    by_patient = pred[pred["split"] == "test"].groupby(["fold", "patient_id"])["case_id"].nunique()
    assert set(res.fold_table()["fold"]) == {"r0f0", "r0f1", "r0f2", "holdout"}
    assert by_patient.max() <= 2
    assert {"test", "train"} <= set(res.metrics["split"])
    assert ((res.metrics["split"] == "test") & (res.metrics["scope"] == "mean")).any()
    for name in ("predictions.parquet", "metrics.csv", "folds.csv", "history.csv", "settings.json"):
        assert (out / name).is_file()
    saved = pd.read_parquet(out / "predictions.parquet")
    pd.testing.assert_frame_equal(saved, pred, check_dtype=False)

    # the same network on the same files gives the same probabilities through predict_images
    fold = res.folds[0]
    test_rows = pred[(pred["fold"] == fold.fold) & (pred["split"] == "test")]
    files = manifest.set_index("case_id").loc[test_rows["case_id"]]
    prob = predict_images(out / fold.fold / "best.pt", files["image"].tolist(), files["mask"].tolist())
    np.testing.assert_allclose(prob, test_rows["prob"].to_numpy(), rtol=1e-5, atol=1e-6)
    model, spec, info = load_deep_model(out / fold.fold / "best.pt")
    assert spec == RoiSpec(size=32, channels=1) and info["arch"] == "densenet3block"
    assert model.embed(__import__("torch").zeros(1, 1, 32, 32)).shape == (1, model.embed_dim)


def test_predict_images_with_boxes_arrays_and_whole_images(manifest, tmp_path):
    res = run_deep_cv(manifest, settings=_settings(epochs=1), scheme="holdout", out_dir=tmp_path / "d",
                      keep_train=False, final=True, progress=False)
    assert [f.fold for f in res.folds] == ["holdout", "final"]
    final = res.predictions[res.predictions["fold"] == "final"]
    assert set(final["split"]) <= {"train", "train_oof"} and "final" not in set(res.metrics["scope"])
    assert sorted(final.loc[final["split"] == "train", "case_id"]) == sorted(
        manifest.loc[manifest["split"] == "train", "case_id"])
    ckpt = tmp_path / "d" / "holdout" / "best.pt"
    img = lesion_image(3, texture="rough")
    prob = predict_images(ckpt, [manifest["image"][0], img, img], [(10, 20, 40, 30), None, lesion_mask() > 0])
    assert prob.shape == (3,) and ((prob >= 0) & (prob <= 1)).all()
    assert set(res.predictions.loc[res.predictions["fold"] == "holdout", "split"]) == {"test", "train_oof"}
    with pytest.raises(InputError, match="3 images but 2 ROIs"):
        predict_images(ckpt, [img, img, img], [None, None])
    with pytest.raises(InputError, match="not a her2dlr"):
        (tmp_path / "x.pt").write_bytes(b"")
        import torch

        torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
        predict_images(tmp_path / "x.pt", [img])


def test_roi_settings_must_fit_the_network(manifest):
    with pytest.raises(InputError, match="ROI settings"):
        run_deep_cv(manifest, settings=_settings(), roi=RoiSpec(size=64), progress=False)
    with pytest.raises(InputError, match="fold_r"):
        run_deep_cv(manifest.drop(columns=["fold_r0"]), settings=_settings(), progress=False)
    assert len(deep_table(manifest.assign(label=[None] + [1, 0] * 17 + [1]))) == N - 1


@pytest.mark.filterwarnings("ignore::her2dlr.deep.train.FewCasesWarning")
def test_cli_train_deep(tmp_path):
    from typer.testing import CliRunner

    from her2dlr.cli import app

    root = tmp_path / "cohort"
    write_lesion_folders(root, 10)
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: t\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"cohort:\n  sources:\n    - kind: folders\n      path: {root}\n"
        "label:\n  rule: column\n  column: class\n  positive: [malignant]\n  negative: [benign]\n"
        "split:\n  kfold:\n    n_splits: 2\n    n_repeats: 1\n"
    )
    runner = CliRunner()
    built = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert built.exit_code == 0, built.output
    out = runner.invoke(app, ["train", "deep", str(study), "--epochs", "1", "--image-size", "32", "--threads", "1",
                              "--batch-size", "8", "--n-jobs", "1"])
    assert out.exit_code == 0, out.output
    run = tmp_path / "run" / "deep" / "densenet3block"
    assert (run / "predictions.parquet").is_file() and (run / "r0f0" / "best.pt").is_file()
    bad = runner.invoke(app, ["train", "deep", str(study), "--arch", "resnet5"])
    assert bad.exit_code == 2 and "Did you mean" in bad.output
    listed = runner.invoke(app, ["train", "archs"])
    assert listed.exit_code == 0 and "densenet3block" in listed.output and "vit" in listed.output


@pytest.mark.filterwarnings("ignore::her2dlr.deep.train.FewCasesWarning")
def test_study_file_deep_section_drives_train_deep(tmp_path, folder_cohort):
    import json

    from typer.testing import CliRunner

    from her2dlr.cli import app

    study = tmp_path / "study.yaml"
    study.write_text(
        "name: t\n"
        f"output_dir: {tmp_path / 'run'}\n"
        f"cohort:\n  sources:\n    - kind: folders\n      path: {folder_cohort}\n"
        "label:\n  rule: column\n  column: class\n  positive: [malignant]\n  negative: [benign]\n"
        "split:\n  kfold:\n    n_splits: 2\n    n_repeats: 1\n"
        "deep:\n  epochs: 1\n  image_size: 32\n  margin: 4\n  batch_size: 8\n  schemes: [holdout]\n  keep: last\n"
    )
    runner = CliRunner()
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    bad = runner.invoke(app, ["train", "deep", str(study), "--keep", "median"])
    assert bad.exit_code == 2 and "--keep" in bad.output
    out = runner.invoke(app, ["train", "deep", str(study), "--threads", "1", "--n-jobs", "1", "--margin", "6"])
    assert out.exit_code == 0, out.output
    saved = json.loads((tmp_path / "run" / "deep" / "densenet3block" / "settings.json").read_text())
    assert saved["scheme"] == "holdout" and saved["train"]["epochs"] == 1 and saved["train"]["keep"] == "last"
    assert saved["roi"]["size"] == 32 and saved["roi"]["margin"] == 6  # the option overrides the study file
    assert (tmp_path / "run" / "models" / "deep_densenet3block-signature" / "network.pt").is_file()
