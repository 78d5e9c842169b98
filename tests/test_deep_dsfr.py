"""DSFR of a study (seed 003): `train seg` -> `extract dsfr` -> `learn dsfr` on a tiny synthetic cohort."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_random_lesion_folders
from her2dlr.cli import app
from her2dlr.cohort.manifest import Manifest
from her2dlr.deep.dsfr import fit_dsfr_models, repetition_table
from her2dlr.deep.features import check_out_of_fold, fold_test_cases, read_fold_features
from her2dlr.errors import InputError
from her2dlr.learn.settings import LearnSettings

runner = CliRunner()
N_PER_CLASS = 14


@pytest.fixture(scope="module")
def dsfr_study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dsfrstudy")
    write_random_lesion_folders(tmp / "cohort", N_PER_CLASS, radii=(8, 14), sd=(4.0, 40.0))
    raw = {
        "name": "dsfr",
        "cohort": {"sources": [{"kind": "folders", "path": str(tmp / "cohort")}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 3, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 2}},
        "radiomics": {"roi": "mask"},
        "segment": {"image_size": 32, "epochs": 8, "batch_size": 8, "patience": 0, "final": False,
                    "dsfr": {"layer": 9, "n_clusters": 2}},
        "learn": {"search": {"inner_splits": 3}, "selection": [{"name": "zscore"}]},
    }
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    return study


def _run(study: Path) -> Path:
    return study.parent / "runs" / "dsfr"


def _intensity_table(study: Path) -> Path:
    """A two-feature stand-in for radiomics: mean and SD inside the given mask."""
    manifest = Manifest.load(_run(study) / "cohort" / "manifest.parquet").included
    from her2dlr.io.images import read_mask_array
    from her2dlr.segment.data import read_array

    rows = []
    for case, image, mask in zip(manifest["case_id"], manifest["image"], manifest["mask"]):
        inside = read_array(image)[read_mask_array(mask) > 0]
        rows.append({"case_id": str(case), "mean": float(inside.mean()), "sd": float(inside.std())})
    path = study.parent / "intensity.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_extract_dsfr_without_networks_names_train_seg(dsfr_study: Path):
    res = runner.invoke(app, ["extract", "dsfr", str(dsfr_study)])
    assert res.exit_code == 2 and "her2dlr train seg" in res.output, res.output


@pytest.fixture(scope="module")
def extracted(dsfr_study: Path) -> Path:
    res = runner.invoke(app, ["train", "seg", str(dsfr_study)])
    assert res.exit_code == 0, res.output
    # a network this small and briefly trained keeps texture in its first layers (its 10th is the 2x2 bottleneck)
    res = runner.invoke(app, ["extract", "dsfr", str(dsfr_study), "--layer", "1", "--heatmaps", "3"])
    assert res.exit_code == 0, res.output
    return _run(dsfr_study) / "features" / "dsfr_unet"


def test_fold_tables_are_out_of_fold(dsfr_study: Path, extracted: Path):
    folds = read_fold_features(extracted)
    assert sorted(folds) == ["r0f0", "r0f1"]  # segment.repetition 0 only; never `final`
    manifest = Manifest.load(_run(dsfr_study) / "cohort" / "manifest.parquet").included
    book = check_out_of_fold(folds, manifest)
    assert not book[(book["role"] == "test") & book["seen_in_training"]].any(axis=None)
    for fold, ff in folds.items():
        test = set(fold_test_cases(manifest, fold))
        assert test and not test & ff.train_cases
        assert ff.train_cases == set(manifest["case_id"].astype(str)) - test
        assert len(ff.features) == 2 * N_PER_CLASS and ff.features.columns[0].startswith("dsfr_")
        assert np.isfinite(ff.features.to_numpy()).all()
    prov = pd.read_csv(extracted / "provenance.csv")
    assert set(prov["lesion"]) == {"mask"}
    info = json.loads((extracted.parent / "dsfr_unet.json").read_text())
    assert info["lesion"] == "mask" and info["layer_asked"] == 1 and info["layer"].endswith(".A")
    assert len(list((extracted / "heatmaps").glob("*.png"))) == 3


def test_a_network_that_saw_its_test_cases_is_refused(dsfr_study: Path, extracted: Path):
    folds = read_fold_features(extracted)
    manifest = Manifest.load(_run(dsfr_study) / "cohort" / "manifest.parquet").included
    bad = folds["r0f0"]
    bad.train_cases = frozenset(bad.features.index)
    with pytest.raises(InputError, match="leak"):
        check_out_of_fold(folds, manifest)


@pytest.fixture(scope="module")
def learned(dsfr_study: Path, extracted: Path) -> Path:
    table = _intensity_table(dsfr_study)
    res = runner.invoke(app, ["learn", "dsfr", str(dsfr_study), "--radiomics", str(table)])
    assert res.exit_code == 0, res.output
    assert "repetition 0 only" in res.output
    return _run(dsfr_study) / "learn" / "dsfr_unet"


def test_learn_dsfr_writes_three_models_on_the_networks_folds(learned: Path):
    metrics = pd.read_csv(learned / "metrics.csv")
    models = set(metrics["model"])
    assert models == {"dsfr_unet-lr", "intensity-lr", "dlr(dsfr_unet,intensity)-lr"}
    pred = pd.read_parquet(learned / "predictions.parquet")
    assert set(pred["fold"]) == {"r0f0", "r0f1"}  # repetition 1 has no out-of-fold networks
    test = pred[pred["split"] == "test"].pivot_table(index=["fold", "case_id"], columns="model", values="prob")
    assert len(test) == 2 * N_PER_CLASS
    np.testing.assert_allclose(test["dlr(dsfr_unet,intensity)-lr"],
                               (test["dsfr_unet-lr"] + test["intensity-lr"]) / 2, rtol=0, atol=1e-12)
    assert (learned / "funnel.csv").is_file()
    assert json.loads((learned / "settings.json").read_text())["repetition"] == 0


def test_dsfr_sees_the_lesion_texture(learned: Path):
    from sklearn.metrics import roc_auc_score

    pred = pd.read_parquet(learned / "predictions.parquet")
    test = pred[(pred["split"] == "test") & (pred["model"] == "dsfr_unet-lr")]
    auc = roc_auc_score(test["label"], test["prob"])
    assert auc > 0.75, auc


def test_channel_clusters_are_fitted_on_training_cases_only(dsfr_study: Path, extracted: Path):
    manifest = Manifest.load(_run(dsfr_study) / "cohort" / "manifest.parquet")
    table = repetition_table(manifest, 0)
    rad = pd.DataFrame({"x": np.arange(len(table), dtype=float)}, index=table["case_id"].astype(str))
    settings = LearnSettings(selection=[{"name": "zscore"}])

    def kept(folds: dict) -> dict[str, list[str]]:
        models = fit_dsfr_models(folds, rad, "r", manifest, arch="unet", settings=settings,
                                 selection=[{"name": "zscore"}])
        return {f.fold: list(f.pipeline.named_steps["dsfr_kmeans"].named_transformers_["dsfr"].selected_features_)
                for f in models.dsfr.fits}

    folds = read_fold_features(extracted)
    before = kept(folds)
    test = fold_test_cases(table, "r0f0")
    scrambled = folds["r0f0"].features.copy()
    scrambled.loc[test] = np.random.default_rng(0).permutation(scrambled.loc[test].to_numpy(), axis=1) * 7.0
    folds["r0f0"].features = scrambled
    assert kept(folds)["r0f0"] == before["r0f0"]
    assert 0 < len(before["r0f0"]) < scrambled.shape[1]


def test_bench_is_registered_and_needs_data():
    from her2dlr.bench import BenchOptions, list_benches, run_bench

    assert "dsfr" in list_benches()
    with pytest.raises(InputError, match="--data"):
        list(run_bench("dsfr", BenchOptions()))
