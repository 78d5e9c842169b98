"""The ``external`` benchmark (BUSI -> BrEaST-Lesions-USG) in its quick mode (skipped without ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from her2dlr.bench import BenchOptions, list_benches, run_bench
from her2dlr.errors import InputError

pytestmark = pytest.mark.realdata


def test_external_registered_and_needs_both_cohorts(tmp_path: Path):
    assert "external" in list_benches()
    with pytest.raises(InputError, match="--train"):
        list(run_bench("external", BenchOptions(test=tmp_path)))
    with pytest.raises(InputError, match="--test"):
        list(run_bench("external", BenchOptions(train=tmp_path)))


def test_nominal_spacing_from_fields_of_view():
    from her2dlr.bench.external import busi_nominal_spacing

    train = pd.DataFrame({"width": [500, 520, 540], "height": [400, 410, 420], "spacing": np.nan})
    test = pd.DataFrame({"width": [400, 400, 400], "height": [328, 328, 328], "spacing": [0.1, 0.1, 0.1]})
    # height: 32.8 mm / 410 px = 0.08; width: 40 mm / 520 px = 0.0769
    assert busi_nominal_spacing(train, test) == pytest.approx(0.078, abs=1e-3)
    with pytest.raises(InputError, match="pixel size"):
        busi_nominal_spacing(train, test.assign(spacing=np.nan))


def test_scaled_test_rows_use_the_declared_training_pixel_size_only(tmp_path: Path):
    import SimpleITK as sitk
    from PIL import Image

    from her2dlr.bench.external import scaled_test_rows

    img = (np.arange(100 * 80) % 251).astype(np.uint8).reshape(100, 80)
    mask = np.zeros((100, 80), np.uint8)
    mask[20:60, 10:50] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "a_mask.png")
    rows = pd.DataFrame({"case_id": ["a", "b"], "image": [str(tmp_path / "a.png")] * 2,
                         "mask": [str(tmp_path / "a_mask.png")] * 2, "spacing": [0.05, np.nan]})
    out = scaled_test_rows(rows, 0.1, tmp_path / "out")
    new_mask = sitk.GetArrayFromImage(sitk.ReadImage(out.loc[0, "mask"]))
    assert sitk.ReadImage(out.loc[0, "image"]).GetSize() == (40, 50) and new_mask.shape == (50, 40)
    assert new_mask.sum() == 20 * 20  # 40 x 40 px at 0.05 mm -> 20 x 20 px at 0.1 mm
    assert (out["spacing"] == 1.0).all()  # one pixel is one training pixel on both sides
    from her2dlr.radiomics.extract import load_case

    image, roi = load_case(out.loc[0, "image"], out.loc[0, "mask"], spacing=out.loc[0, "spacing"])
    assert image.GetSpacing() == (1.0, 1.0) and roi.GetSpacing() == (1.0, 1.0)  # not the file's 0.1 mm
    assert out.loc[1, "image"] == rows.loc[1, "image"]  # no spacing: taken to have the training pixel size
    # the other test rows never change how one row is prepared
    alone = scaled_test_rows(rows.iloc[:1], 0.1, tmp_path / "out")
    assert alone.loc[0, "image"] == out.loc[0, "image"]
    assert scaled_test_rows(rows, None, tmp_path / "out")["image"].tolist() == rows["image"].tolist()
    assert (scaled_test_rows(rows, None, tmp_path / "out")["spacing"] == 1.0).all()


def test_external_quick(shared_data: Path, tmp_path: Path):
    import her2dlr.bench.external as bench

    opts = BenchOptions(train=shared_data / "busi", test=shared_data / "breast-lesions-usg", quick=True,
                        work_dir=tmp_path, n_jobs=2)
    lines = {line["metric"]: line for line in run_bench("external", opts)}
    for setting in ("mask", "box"):
        line = lines[f"auc_external_{setting}"]
        assert 0.0 <= line["ci_low"] <= line["value"] <= line["ci_high"] <= 1.0
        assert line["n"] == 40 and line["n_train"] == 80 and line["model"] == "lr"
        assert line["variant"] == bench.DEFAULT_VARIANT and line["transductive"] is False
        twin = lines[f"auc_external_{setting}_transductive"]
        assert twin["variant"] == bench.TRANSDUCTIVE_VARIANT and twin["transductive"] is True
        assert 0.0 <= line["auc_plain_lr"] <= 1.0
        for variant in bench.QUICK_VARIANTS:
            v_line = lines[f"auc_external_{setting}_{variant}"]
            assert 0.0 <= v_line["value"] <= 1.0 and v_line["transductive"] is (variant == bench.TRANSDUCTIVE_VARIANT)
    assert lines["auc_external_mask"]["value"] > 0.6
    assert lines["busi_pixel_mm"]["value"] == bench.BUSI_PIXEL_MM
    # the declared BUSI pixel size is the one the two cohorts' fields of view give
    assert lines["busi_pixel_mm"]["from_fields_of_view"] == pytest.approx(bench.BUSI_PIXEL_MM, abs=0.002)
    assert lines["seconds"]["value"] > 0


def test_test_folder_is_checked_before_the_training_side(tmp_path: Path):
    train = tmp_path / "empty_train"  # no class folders: building it would fail with another message
    train.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not a cohort")
    with pytest.raises(InputError, match=r"--test .*junk is not a cohort this benchmark can read.*study file"):
        list(run_bench("external", BenchOptions(train=train, test=junk)))
    with pytest.raises(InputError, match=r"--test .*nowhere does not exist"):
        list(run_bench("external", BenchOptions(train=train, test=tmp_path / "nowhere")))


def test_test_cohort_may_be_a_study_or_a_class_folder(tmp_path: Path):
    import yaml

    from conftest import write_lesion_folders
    from her2dlr.bench.external import resolve_test_study
    from her2dlr.cohort.build import build_cohort

    folders = write_lesion_folders(tmp_path / "other", 4)
    study = resolve_test_study(folders, tmp_path / "out1")
    built = build_cohort(study.model_copy(update={"split": study.split.model_copy(update={"kfold": None})}),
                         n_jobs=1, progress=False)
    assert sorted(built.manifest.included["label"].astype(int).value_counts().tolist()) == [4, 4]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump({
        "name": "ext", "cohort": {"sources": [{"kind": "folders", "path": str(folders)}]},
        "label": {"rule": "column", "column": "class", "positive": ["malignant"], "negative": ["benign"]}}))
    from_study = resolve_test_study(tmp_path, tmp_path / "out2")
    assert from_study.name == "ext" and Path(from_study.output_dir) == tmp_path / "out2"
