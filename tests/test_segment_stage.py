"""`her2dlr train seg`: one network per outer fold, out-of-fold masks, and `roi: auto` reading them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import random_lesion, write_png, write_random_lesion_folders
from her2dlr.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def seg_study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("segstudy")
    write_random_lesion_folders(tmp / "cohort", 14)
    raw = {
        "name": "seg",
        "cohort": {"sources": [{"kind": "folders", "path": str(tmp / "cohort")}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]},
        "split": {"seed": 3, "holdout": None, "kfold": {"n_splits": 2, "n_repeats": 1}},
        "radiomics": {"params": "video", "roi": "auto", "n_jobs": 1, "backend": "sequential"},
        "segment": {"image_size": 32, "epochs": 25, "batch_size": 8, "patience": 0, "final": True},
        "deep": {"roi": "auto", "image_size": 32, "epochs": 1, "batch_size": 8, "patience": 0, "final": True},
        "learn": {"features": ["radiomics_video_auto"], "models": [{"name": "lr", "grid": {}}], "schemes": ["kfold"],
                  "selection": [{"name": "variance"}, {"name": "zscore"}], "search": {"inner_splits": 2}},
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


def test_deep_stage_reads_the_automatic_masks_and_leaves_out_empty_ones(seg_study: Path):
    from her2dlr.cohort.manifest import Manifest, use_auto_masks

    run = seg_study.parent / "runs" / "seg"
    auto = pd.read_csv(run / "segment" / "auto_masks.csv", dtype={"case_id": str})
    auto.loc[1, "empty"] = True
    table = Manifest.load(run / "cohort" / "manifest.parquet").table
    path = run / "segment" / "auto_masks_test.csv"
    auto.to_csv(path, index=False)
    used = use_auto_masks(table, path).set_index("case_id")
    for case, mask, empty in zip(auto["case_id"], auto["mask_auto"], auto["empty"]):
        assert bool(used.loc[case, "include"]) is (not empty)
        assert (used.loc[case, "mask"] is None) if empty else used.loc[case, "mask"] == mask
    assert used.loc[auto.loc[1, "case_id"], "exclude_reason"] == "no automatic ROI"


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


def test_predict_finds_the_lesion_itself_for_a_model_of_automatic_masks(seg_study: Path):
    from her2dlr.errors import InputError
    from her2dlr.learn.artefact import load_artefact, write_checksums
    from her2dlr.predict import Case, predict

    run = seg_study.parent / "runs" / "seg"
    res = runner.invoke(app, ["learn", "run", str(seg_study)])
    assert res.exit_code == 0, res.output
    art = load_artefact(run / "models" / "radiomics_video_auto-lr")
    assert art.segmenter_path is not None and art.segmenter_path.name == "segmenter.pt"
    img, _ = random_lesion(999, rough=True)
    image = write_png(seg_study.parent / "new" / "case.png", img)
    result = predict(art, Case(case_id="new", image=image), progress=False)[0]
    assert 0.0 <= result.probability <= 1.0
    assert result.provenance["lesion"] == "automatic"
    seg = result.provenance["segmentation"]
    assert seg["network"] == "unet" and len(seg["sha256"]) == 64 and not seg["empty"]
    cli = runner.invoke(app, ["predict", str(art.path), "--image", str(image)])  # no mask, no box
    assert cli.exit_code == 0, cli.output
    # without its segmentation network the model says how to get one
    art.segmenter_path.unlink()
    with pytest.raises(InputError, match=r"missing: segmenter.pt"):  # a file taken away is caught first
        load_artefact(art.path)
    write_checksums(art.path)  # as if exported without it
    with pytest.raises(InputError, match="her2dlr train seg"):
        predict(load_artefact(art.path), Case(case_id="new", image=image), progress=False)


def test_a_network_trained_on_automatic_masks_finds_the_lesion_of_a_new_case(seg_study: Path):
    from her2dlr.learn.artefact import load_artefact
    from her2dlr.predict import Case, predict

    res = runner.invoke(app, ["train", "deep", str(seg_study), "--threads", "1", "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    art = load_artefact(seg_study.parent / "runs" / "seg" / "models" / "deep_densenet3block-signature")
    assert art.segmenter_path is not None
    img, _ = random_lesion(998, rough=False)
    image = write_png(seg_study.parent / "new" / "case_deep.png", img)
    result = predict(art, Case(case_id="new", image=image), progress=False)[0]
    assert 0.0 <= result.probability <= 1.0
    assert result.provenance["lesion"] == "automatic" and result.provenance["segmentation"]["network"] == "unet"


def test_report_shows_the_segmentation_quality(seg_study: Path):
    from her2dlr.report.build import build_report

    run = seg_study.parent / "runs" / "seg"
    res = build_report(run, pdf=False, progress=False)
    html = res.html.read_text(encoding="utf-8")
    assert "Lesion segmentation" in html and "Dice (mean)" in html
    summary = json.loads((run / "segment" / "unet" / "summary.json").read_text())
    table = pd.read_csv(res.tables["segmentation_summary"])
    assert table.loc[0, "Dice (mean)"] == pytest.approx(summary["dice_mean"])


def test_train_seg_needs_the_kfold_split(tmp_path: Path, seg_study: Path):
    raw = yaml.safe_load(seg_study.read_text())
    raw["split"] = {"seed": 3, "holdout": {"test_size": 0.3}, "kfold": None}
    raw["output_dir"] = str(tmp_path / "run")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    assert runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"]).exit_code == 0
    res = runner.invoke(app, ["train", "seg", str(study)])
    assert res.exit_code == 2 and "split.kfold" in res.output
