"""`her2dlr train seg`: one network per outer fold, out-of-fold masks, and `roi: auto` reading them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_png
from her2dlr.cli import app

runner = CliRunner()


def _lesion(seed: int, rough: bool, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Speckle background and an ellipse of random place and size; its exact mask."""
    rng = np.random.default_rng(seed)
    img = rng.gamma(2.0, 30.0, size=(size, size))
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(20, size - 20, size=2)
    ry, rx = rng.integers(7, 14, size=2)
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    img[inside] = rng.normal(60, 35 if rough else 5, size=(size, size))[inside] - 30
    return np.clip(img, 0, 255).astype(np.uint8), inside.astype(np.uint8) * 255


@pytest.fixture(scope="module")
def seg_study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("segstudy")
    for cls, rough, offset in (("benign", False, 0), ("malignant", True, 100)):
        for i in range(14):
            img, mask = _lesion(offset + i, rough)
            write_png(tmp / "cohort" / cls / f"{cls} ({i + 1}).png", img)
            write_png(tmp / "cohort" / cls / f"{cls} ({i + 1})_mask.png", mask)
    raw = {
        "name": "seg",
        "cohort": {"sources": [{"kind": "folders", "path": str(tmp / "cohort")}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 3, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "radiomics": {"params": "video", "roi": "auto", "n_jobs": 1, "backend": "sequential"},
        "segment": {"image_size": 32, "epochs": 25, "batch_size": 8, "patience": 0, "final": True},
    }
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    return study


def test_roi_auto_without_trained_networks_names_the_command(seg_study: Path):
    res = runner.invoke(app, ["extract", "radiomics", str(seg_study)])
    assert res.exit_code == 2 and "her2dlr train seg" in res.output


def test_train_seg_gives_every_case_an_out_of_fold_mask(seg_study: Path):
    res = runner.invoke(app, ["train", "seg", str(seg_study)])
    assert res.exit_code == 0, res.output
    run = seg_study.parent / "runs" / "seg"
    masks = pd.read_csv(run / "segment" / "unet" / "masks.csv", dtype={"case_id": str})
    manifest = pd.read_parquet(run / "cohort" / "manifest.parquet")
    assert sorted(masks["case_id"]) == sorted(manifest["case_id"].astype(str))
    # each case is segmented by the network of its own fold, which trained on the other fold only
    for fold, net in zip(masks["fold"], masks["network"]):
        assert net == f"r0f{fold}"
    assert "final" not in set(masks["network"])
    for net in ("r0f0", "r0f1", "final"):
        assert (run / "segment" / "unet" / net / "best.pt").is_file()
    # the networks learned: out-of-fold Dice against the true masks
    summary = json.loads((run / "segment" / "unet" / "summary.json").read_text())
    assert summary["dice_mean"] > 0.6, summary
    assert summary["dice_ci_low"] <= summary["dice_mean"] <= summary["dice_ci_high"]
    assert (run / "segment" / "unet" / "montage.png").is_file()
    auto = pd.read_csv(run / "segment" / "auto_masks.csv")
    assert list(auto.columns) == ["case_id", "mask_auto", "empty", "confidence", "network"]
    assert all(Path(p).is_file() for p in auto["mask_auto"])


def test_radiomics_reads_the_automatic_masks(seg_study: Path):
    res = runner.invoke(app, ["extract", "radiomics", str(seg_study)])
    assert res.exit_code == 0, res.output
    run = seg_study.parent / "runs" / "seg"
    feats = pd.read_parquet(run / "features" / "radiomics_video_auto.parquet")
    auto = pd.read_csv(run / "segment" / "auto_masks.csv", dtype={"case_id": str})
    assert len(feats) == int((~auto["empty"]).sum())
    record = json.loads((run / "features" / "radiomics_video_auto.json").read_text())
    assert record["roi"] == "auto"
    # an empty automatic mask is a recorded failure, never the whole image
    auto.loc[0, "empty"] = True
    auto.to_csv(run / "segment" / "auto_masks.csv", index=False)
    res = runner.invoke(app, ["extract", "radiomics", str(seg_study)])
    assert res.exit_code == 0, res.output
    failures = pd.read_csv(run / "features" / "radiomics_video_auto_failures.csv", dtype={"case_id": str})
    assert auto.loc[0, "case_id"] in set(failures["case_id"])
    assert "no automatic mask" in failures.set_index("case_id").loc[auto.loc[0, "case_id"], "reason"]


def test_train_seg_needs_the_kfold_split(tmp_path: Path, seg_study: Path):
    raw = yaml.safe_load(seg_study.read_text())
    raw["split"] = {"seed": 3, "holdout": {"test_size": 0.3}, "kfold": None}
    raw["output_dir"] = str(tmp_path / "run")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    res = runner.invoke(app, ["train", "seg", str(study)])
    assert res.exit_code == 2 and "split.kfold" in res.output
