"""Study-level heat maps and deep features from fold checkpoints on disk (small synthetic cohort)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from deep_helpers import save_fold_checkpoints, write_lesion_cohort
from her2dlr.deep.checkpoints import find_fold_checkpoints
from her2dlr.errors import InputError

N = 20


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    root = tmp_path_factory.mktemp("deep")
    manifest = write_lesion_cohort(root / "images", N)
    save_fold_checkpoints(root / "deep" / "densenet3block", manifest)
    return root, manifest


def test_fold_checkpoints_and_their_cases(on_disk):
    root, manifest = on_disk
    found = find_fold_checkpoints(root / "deep" / "densenet3block", manifest=manifest)
    assert list(found) == [f"r0f{k}" for k in range(5)]
    ck = found["r0f2"]
    assert ck.train_cases == frozenset(manifest.loc[manifest["fold_r0"] != 2, "case_id"])
    assert ck.load().target_layer == "features.relu_final"
    with pytest.raises(InputError, match="train deep"):
        find_fold_checkpoints(root / "nothing")


def test_explain_cases_writes_scores_overlays_montage(on_disk, tmp_path):
    from PIL import Image

    from her2dlr.deep.explain_study import explain_cases

    root, manifest = on_disk
    found = find_fold_checkpoints(root / "deep" / "densenet3block", manifest=manifest)
    res = explain_cases(found, manifest, tmp_path / "explain", method="gradcam", n_per_group=2,
                        embedding="pca")
    scores = pd.read_csv(tmp_path / "explain" / "heat_scores.csv")
    assert len(scores) == N and scores["case_id"].is_unique
    assert set(scores["group"]) <= {"TP", "FP", "FN", "TN"}
    # every case was explained by the network of the fold where it is a test case
    fold_of = dict(zip(manifest["case_id"], manifest["fold_r0"]))
    assert all(f == f"r0f{fold_of[c]}" for c, f in zip(scores["case_id"], scores["fold"]))
    assert scores["lesion_area"].between(0, 1).all()
    has_heat = scores["heat_total"] > 0
    assert scores.loc[has_heat, "heat_in_lesion"].between(0, 1).all()
    assert len(list((tmp_path / "explain" / "cases").glob("*.png"))) == N
    assert Image.open(res.montage).size[0] > 200
    summary = json.loads((tmp_path / "explain" / "heat_summary.json").read_text())
    assert summary["method"] == "gradcam" and summary["n"] == N
    maps = np.load(tmp_path / "explain" / "heat_maps.npz")
    assert maps["maps"].shape == (N, 32, 32)
    emb = pd.read_csv(tmp_path / "explain" / "embedding.csv")
    assert len(emb) == N and emb["seen_in_training"].sum() == N - 4  # fold r0f0's training cases
    with pytest.raises(InputError, match="overlays"):
        explain_cases(found, manifest, tmp_path / "x", overlays="some")


def test_cam_applies_to_the_seed000_network(on_disk):
    from her2dlr.deep.explain import CamExplainer, check_gap_head

    root, manifest = on_disk
    net = find_fold_checkpoints(root / "deep" / "densenet3block", manifest=manifest)["r0f0"].load()
    x = torch.randn(4, 1, 32, 32)
    assert check_gap_head(net, x) == "classifier"
    cam = CamExplainer(net, method="cam")(x, class_idx=1).maps
    grad = CamExplainer(net, method="gradcam")(x, class_idx=1).maps
    for a, b in zip(cam, grad):
        if b.std() > 0:
            assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99


def test_extract_fold_features_from_checkpoints(on_disk, tmp_path):
    from her2dlr.deep.features import (
        extract_fold_features,
        in_fold_pca,
        write_fold_features,
    )

    root, manifest = on_disk
    found = find_fold_checkpoints(root / "deep" / "densenet3block", manifest=manifest)
    folds = extract_fold_features(found, manifest)
    dim = found["r0f0"].load().embed_dim
    assert all(ff.features.shape == (N, dim) for ff in folds.values())
    for fold, ff in folds.items():
        test = set(manifest.loc[manifest["fold_r0"] == int(fold[-1]), "case_id"])
        prov = ff.provenance().set_index("case_id")
        assert not prov.loc[sorted(test), "seen_in_training"].any()
    report = in_fold_pca(folds, manifest, n_components=64)
    assert (report.table["n_components"] == min(15, dim)).all()  # 16 training cases: at most 15
    folder = write_fold_features(folds, tmp_path / "features", "densenet3block")
    assert sorted(p.stem for p in folder.glob("*.parquet")) == sorted(folds)


def test_cli_extract_deep_and_explain(tmp_path, folder_cohort):
    import yaml
    from typer.testing import CliRunner

    from her2dlr.cli import app
    from her2dlr.cohort.manifest import Manifest

    raw = {"name": "synthetic", "cohort": {"sources": [{"kind": "folders", "path": str(folder_cohort)}]},
           "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
           "split": {"seed": 1, "kfold": {"n_splits": 3, "n_repeats": 1}},
           "learn": {"selection": [{"name": "variance"}], "models": [{"name": "lr", "grid": {}}],
                     "search": {"inner_splits": 2}}}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    runner = CliRunner()
    res = runner.invoke(app, ["explain", str(study)])
    assert res.exit_code == 2  # no cohort yet: a clear message, no traceback
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    res = runner.invoke(app, ["explain", str(study)])
    assert res.exit_code == 2 and "train deep" in res.output
    run = tmp_path / "runs" / "synthetic"
    manifest = Manifest.load(run / "cohort" / "manifest.parquet").table
    save_fold_checkpoints(run / "deep" / "densenet3block", manifest)
    res = runner.invoke(app, ["extract", "deep", str(study), "--pca", "8"])
    assert res.exit_code == 0, res.output
    assert (run / "features" / "deep_densenet3block" / "r0f2.parquet").is_file()
    assert (run / "features" / "deep_densenet3block_pca.csv").is_file()
    res = runner.invoke(app, ["explain", str(study), "--overlays", "montage", "--n-per-group", "2",
                              "--embedding", "pca", "--method", "gradcampp"])
    assert res.exit_code == 0, res.output
    out = run / "deep" / "densenet3block" / "explain"
    assert (out / "montage.png").is_file() and (out / "embedding.png").is_file()
    assert len(pd.read_csv(out / "heat_scores.csv")) == 24
    assert 0 < len(list((out / "cases").glob("*.png"))) <= 8

    # the DLR models on the study's folds, with a radiomics table from the features folder
    from her2dlr.config import load_study
    from her2dlr.deep.dlr import run_study_dlr

    rng = np.random.default_rng(0)
    labels = manifest.set_index("case_id")["label"]
    rad = pd.DataFrame({"original_firstorder_Mean": labels + rng.normal(0, 0.5, len(labels)),
                        "noise": rng.normal(size=len(labels))}, index=labels.index.rename("case_id"))
    rad.to_parquet(run / "features" / "radiomics_fake_bbox.parquet")
    dlr = run_study_dlr(load_study(study), radiomics="radiomics_fake", n_components=4)
    assert (run / "learn" / "dlr_densenet3block" / "metrics.csv").is_file()
    models = set(dlr.metrics["model"])
    assert {"deep_densenet3block-lr", "deep_densenet3block+radiomics_fake_bbox-lr", "radiomics_fake_bbox-lr",
            "deep_densenet3block-signature"} <= models
    assert any(m.startswith("late(") for m in models)
