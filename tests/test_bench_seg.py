"""Segmentation benchmarks ``busi-seg``, ``busi-autoroi`` and ``seg-external`` on tiny synthetic cohorts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import lesion_image, lesion_mask, write_lesion_folders, write_png
from her2dlr.bench import BenchOptions, list_benches, run_bench
from her2dlr.errors import InputError


@pytest.fixture
def tiny_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """30 cases, 32 px, 2 epochs, logistic regression untuned after a selection without LASSO: the code paths, fast."""
    import her2dlr.bench.busi_radiomics as br
    import her2dlr.bench.seg_autoroi as sa
    import her2dlr.bench.seg_quality as sq

    monkeypatch.setattr(sa, "MODEL", {"name": "lr", "label": "lr", "grid": {}})
    monkeypatch.setattr(br, "SELECTION", [{"name": "variance"}, {"name": "zscore"}])
    monkeypatch.setattr(sq, "QUICK_CASES", 30)
    monkeypatch.setattr(sq, "QUICK_IMAGE_SIZE", 32)
    monkeypatch.setattr(sq, "QUICK_EPOCHS", 2)


def _check(line: dict, low: float = 0.0, high: float = 1.0) -> None:
    assert low <= line["ci_low"] <= line["value"] <= line["ci_high"] <= high


def test_seg_benches_registered_and_need_data():
    names = list_benches()
    for name in ("busi-seg", "busi-autoroi", "seg-external"):
        assert name in names
    for name in ("busi-seg", "busi-autoroi"):
        with pytest.raises(InputError, match="--data"):
            list(run_bench(name, BenchOptions()))
    with pytest.raises(InputError, match="--train"):
        list(run_bench("seg-external", BenchOptions()))


def test_quality_lines_names_and_targets():
    from her2dlr.bench.seg_quality import quality_lines, seg_summary
    from her2dlr.segment.metrics import segmentation_table

    rng = np.random.default_rng(0)
    truth = [np.pad(np.ones((8 + i % 5, 9), bool), 10) for i in range(20)]
    pred = [np.roll(t, rng.integers(-2, 3), axis=0) for t in truth]
    table = segmentation_table(pred, truth, [str(i) for i in range(20)]).reset_index()
    table.loc[0, "dice"] = np.nan  # a case without a true mask is not scored
    lines = quality_lines("busi-seg", seg_summary(table), "_box_prompt", {"arch": "unet"}, "dice_box_prompt")
    assert [ln["metric"] for ln in lines] == ["dice_box_prompt", "iou_box_prompt", "hd95_px_box_prompt",
                                              "detection_rate_box_prompt"]
    _check(lines[0])
    assert lines[0]["target"] == 0.87 and lines[0]["n"] == 19 and lines[0]["arch"] == "unet"
    assert lines[2]["value"] >= 0 and lines[2]["statistic"] == "median"


def test_busi_seg_then_autoroi_reuses_masks(tmp_path: Path, tiny_budget: None):
    data = write_lesion_folders(tmp_path / "busi", 15)
    opts = BenchOptions(data=data, quick=True, work_dir=tmp_path / "work", n_jobs=1)
    lines = {ln["metric"]: ln for ln in run_bench("busi-seg", opts)}
    for metric in ("dice", "dice_box_prompt", "detection_rate", "detection_rate_box_prompt"):
        _check(lines[metric])
        assert lines[metric]["n"] == 30
    assert lines["dice"]["target"] == 0.78 and lines["dice_box_prompt"]["target"] == 0.87
    assert lines["dice"]["image_size"] == 32 and lines["dice"]["epochs"] == 2
    assert lines["seconds"]["cached"] is False and lines["seconds"]["peak_mb"] > 0
    again = {ln["metric"]: ln for ln in run_bench("busi-seg", opts)}
    assert again["seconds"]["cached"] is True and again["dice"]["value"] == lines["dice"]["value"]

    auc = {ln["metric"]: ln for ln in run_bench("busi-autoroi", opts)}
    assert auc["seconds"]["seg_cached"] is True
    for metric in ("auc_manual", "auc_auto", "auc_box_prompt", "auc_box"):
        line = auc[metric]
        if line.get("value") is not None:
            _check(line)
    assert auc["auc_box_prompt"]["target"] == 0.95 and auc["auc_auto"]["empty_masks"] == "excluded"
    assert auc["auc_auto"]["n"] + auc["auc_auto"]["n_dropped"] == 30
    assert auc["auc_manual"]["value"] > 0.8  # smooth vs rough lesions


def test_external_dice_on_synthetic_pairs(tmp_path: Path):
    from her2dlr.bench.seg_quality import external_dice
    from her2dlr.segment.settings import SegmentSettings

    def rows(start: int, n: int) -> pd.DataFrame:
        out = []
        for i in range(start, start + n):
            img = write_png(tmp_path / f"{i}.png", lesion_image(i))
            mask = write_png(tmp_path / f"{i}_mask.png", lesion_mask())
            out.append({"case_id": str(i), "image": str(img), "mask": str(mask), "group": str(i)})
        return pd.DataFrame(out)

    settings = SegmentSettings(image_size=32, epochs=2, box_prompt=True, device="cpu", final=False)
    summary = external_dice(rows(0, 12), rows(100, 6), settings, progress=False)
    assert summary["n_cases"] == 6
    assert 0.0 <= summary["dice_ci_low"] <= summary["dice_mean"] <= summary["dice_ci_high"] <= 1.0


def test_budget_stage_trains_with_the_segment_stages_defaults(tmp_path: Path):
    from her2dlr.bench.seg_quality import seg_settings, seg_work_dir
    from her2dlr.segment.settings import SegmentSettings

    stage = SegmentSettings()
    full = seg_settings(BenchOptions(extra={"budget": "stage"}), box_prompt=False)
    assert (full.size, full.epochs, full.patience) == (stage.size, stage.epochs, stage.patience) == (128, 60, 10)
    small = seg_settings(BenchOptions(), box_prompt=True)
    assert (small.size, small.epochs, small.patience) == (64, 10, 4) and small.box_prompt
    quick = seg_settings(BenchOptions(quick=True, extra={"budget": "stage"}), box_prompt=False)
    assert quick.epochs == 3  # --quick stays a smoke run whatever the budget
    assert seg_work_dir(BenchOptions(extra={"budget": "stage"}, work_dir=tmp_path)).name == "full-seed0-unet128-e60-p10"
    with pytest.raises(InputError, match="--budget must be one of bench, stage; got 'huge'"):
        seg_settings(BenchOptions(extra={"budget": "huge"}), box_prompt=False)
