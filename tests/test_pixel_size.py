"""One pixel size per extraction (her2dlr.radiomics.pixel_size): the plan, the resampling, the stage's record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

from her2dlr.radiomics.pixel_size import (
    apply_pixel_size,
    plan_pixel_size,
    resample_image,
    resample_mask,
    training_rows,
)


def _disc(tmp_path: Path, name: str, radius_px: float, size: int, seed: int = 0) -> tuple[str, str]:
    """A speckled bright disc of radius ``radius_px`` on a dark background, as PNG image + mask."""
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 <= radius_px**2
    rng = np.random.default_rng(seed)
    img = np.clip(np.where(inside, 150, 40) + rng.normal(0, 10, (size, size)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / f"{name}.png")
    Image.fromarray(inside.astype(np.uint8) * 255).save(tmp_path / f"{name}_mask.png")
    return str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}_mask.png")


def _rows(cases: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"case_id": c, "image": i, "mask": m, "bbox": None, "spacing": s}
                         for c, i, m, s in cases])


def test_plan_targets_the_training_pixel_size_only():
    rows = pd.DataFrame({"spacing": [0.1, 0.1, 0.12, 0.05, 0.05], "split": ["train", "train", "train", "test", "test"]})
    plan = plan_pixel_size(rows)
    assert plan.target_mm == pytest.approx(0.1)  # median of the training rows; the test rows' 0.05 do not count
    assert plan.n_resampled == 3 and plan.n_assumed == 0 and plan.assumption is None
    # changing the test rows never moves the target
    assert plan_pixel_size(rows.assign(spacing=[0.1, 0.1, 0.12, 0.3, 0.9])).target_mm == pytest.approx(0.1)
    assert "0.1 mm" in plan.note
    assert training_rows(rows.drop(columns="split")).all()


def test_plan_says_what_it_assumes_when_a_side_has_no_pixel_size():
    no_train = pd.DataFrame({"spacing": [np.nan, np.nan, 0.07], "split": ["train", "train", "test"]})
    plan = plan_pixel_size(no_train)
    assert plan.target_mm is None and plan.n_assumed == 1
    assert "training images give no pixel size" in plan.note and "spacing_mm" in plan.note
    no_test = pd.DataFrame({"spacing": [0.08, 0.08, np.nan], "split": ["train", "train", "test"]})
    plan = plan_pixel_size(no_test)
    assert plan.target_mm == pytest.approx(0.08) and plan.n_assumed == 1
    assert "taken to have the training pixel size 0.08 mm" in plan.note
    neither = plan_pixel_size(pd.DataFrame({"spacing": [np.nan, np.nan]}))
    assert neither.target_mm is None and neither.assumption is None and "No pixel size" in neither.note


def test_apply_warns_and_sets_pixels_aside_when_training_has_none(tmp_path: Path):
    image, mask = _disc(tmp_path, "a", 10, 40)
    rows = _rows([("tr", image, mask, np.nan), ("te", image, mask, 0.07)])
    plan = plan_pixel_size(rows, pd.Series([True, False]))
    with pytest.warns(UserWarning, match="Pixel size: .*training images give no pixel size"):
        out = apply_pixel_size(rows, plan, tmp_path / "out")
    assert out["spacing"].isna().all() and list(out["image"]) == [image, image]  # nothing resampled


def test_resampling_keeps_the_physical_size_of_a_lesion(tmp_path: Path):
    """A disc of radius 4 mm drawn at 0.05 mm (80 px) and at 0.1 mm (40 px): same area in mm^2 after resampling."""
    from her2dlr.radiomics.extract import extract_case

    fine_img, fine_mask = _disc(tmp_path, "fine", 80, 240)
    coarse_img, coarse_mask = _disc(tmp_path, "coarse", 40, 120, seed=1)
    rows = _rows([("coarse", coarse_img, coarse_mask, 0.1), ("fine", fine_img, fine_mask, 0.05)])
    plan = plan_pixel_size(rows, pd.Series([True, False]))
    assert plan.target_mm == pytest.approx(0.1) and plan.n_resampled == 1
    out = apply_pixel_size(rows, plan, tmp_path / "out")
    fine = out.iloc[1]
    assert fine["image"].endswith(".nrrd") and fine["spacing"] == pytest.approx(0.1)
    resampled = sitk.ReadImage(fine["image"])
    assert resampled.GetSize() == (120, 120) and resampled.GetSpacing() == pytest.approx((0.1, 0.1))
    area = math.pi * 4.0**2
    params = {"imageType": {"Original": {}}, "featureClass": {"shape2D": ["PixelSurface"], "firstorder": ["Mean"]},
              "setting": {"binWidth": 5.0, "label": 1}}
    got = extract_case(fine["image"], fine["mask"], params=params, spacing=float(fine["spacing"]))
    ref = extract_case(coarse_img, coarse_mask, params=params, spacing=0.1)
    assert got["original_shape2D_PixelSurface"] == pytest.approx(area, rel=0.03)
    assert ref["original_shape2D_PixelSurface"] == pytest.approx(area, rel=0.03)
    assert got["original_firstorder_Mean"] == pytest.approx(150, abs=3)  # grey levels kept (speckle averaged)
    # a second run reuses the written files
    again = apply_pixel_size(rows, plan, tmp_path / "out")
    assert again.iloc[1]["image"] == fine["image"]


def test_resample_functions_agree_with_a_block_average():
    """Shrinking by 2 with anti-aliasing: close to the 2 x 2 block mean of a smooth ramp; a square mask keeps its area."""
    arr = np.add.outer(np.arange(64.0), 2 * np.arange(64.0)).astype(np.float32)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.05, 0.05))
    out = sitk.GetArrayFromImage(resample_image(img, 0.1))
    block = arr.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    assert out.shape == (32, 32)
    assert np.abs(out[2:-2, 2:-2] - block[2:-2, 2:-2]).max() < 0.05
    m = np.zeros((64, 64), np.uint8)
    m[10:50, 20:40] = 1
    mask = sitk.GetImageFromArray(m)
    mask.SetSpacing((0.05, 0.05))
    small = sitk.GetArrayFromImage(resample_mask(mask, 0.1))
    assert small.sum() == 20 * 10 and small[5:25, 10:20].all()


def test_stage_records_the_pixel_size_plan(tmp_path: Path):
    """The radiomics stage of a study whose sources disagree: the assumption is in the record and in a warning."""
    from her2dlr.cohort.build import build_cohort
    from her2dlr.config import study_from_dict
    from her2dlr.radiomics.settings import RadiomicsSettings
    from her2dlr.radiomics.stage import run_radiomics_stage

    src = tmp_path / "data"
    src.mkdir()
    records = []
    for k in range(8):
        image, mask = _disc(src, f"c{k}", 12 + k, 48, seed=k)
        records.append({"image": Path(image).name, "mask": Path(mask).name, "y": "pos" if k % 2 else "neg",
                        "site": "A" if k < 6 else "B", "px": 0.1 if k >= 6 else None})
    pd.DataFrame(records).to_csv(src / "table.csv", index=False)
    study = study_from_dict({
        "name": "px", "output_dir": str(tmp_path / "run"),
        "cohort": {"sources": [{"kind": "table", "path": str(src / "table.csv"), "image_root": str(src),
                                "image_column": "image", "mask_column": "mask", "centre_column": "site",
                                "spacing_column": "px", "label_columns": ["y"]}]},
        "label": {"rule": "column", "column": "y", "positive": ["pos"], "negative": ["neg"]},
        "split": {"by_centre": {"test_centres": ["B"]}, "kfold": None},
    }, base_dir=tmp_path)
    build_cohort(study, n_jobs=1, progress=False)
    settings = RadiomicsSettings(params="us2d_original", n_jobs=1)
    with pytest.warns(UserWarning, match="training images give no pixel size"):
        res = run_radiomics_stage(study, settings, progress=False)
    assert res.pixel_size is not None and res.pixel_size.target_mm is None and res.pixel_size.n_assumed == 2
    record = json.loads(study.paths.feature_record("radiomics_us2d_original_mask").read_text())
    assert "training images give no pixel size" in record["pixel_size"]["note"]
    # the test centre's shape features are in pixels, like the training centre's (the 0.1 mm was set aside)
    features = pd.read_parquet(res.path)
    assert features["original_shape2D_PixelSurface"].min() > 300
