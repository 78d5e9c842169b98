"""3D lesion ROIs: a user's box [x, y, z, w, h, d], mask geometry, out-of-fold 3D segmentation and 3D DSFR."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from typer.testing import CliRunner

from her2dlr.cli import app
from her2dlr.errors import InputError
from her2dlr.io.cells import parse_bbox
from her2dlr.io.images import bbox_mask, mask_to_bbox

runner = CliRunner()
SIDE = 16
SPACING = (0.8, 0.7, 1.5)
ORIGIN = (12.0, -40.0, 7.5)
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a quarter turn about z
#: Radiomics kept small: first-order and GLCM of the original image.
PARAMS = {"imageType": {"Original": {}}, "featureClass": {"firstorder": [], "glcm": []},
          "setting": {"binWidth": 25, "label": 1}}


def _volume(arr: np.ndarray, *, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _write(img: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path), True)
    return path


def sphere_case(seed: int, rough: bool) -> tuple[np.ndarray, np.ndarray]:
    """A noisy 16^3 volume with a bright ball of random place and radius, smooth or rough inside; its exact mask."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:SIDE, :SIDE, :SIDE]
    cz, cy, cx = rng.integers(6, SIDE - 6, size=3)
    r = rng.uniform(3.0, 4.5)
    inside = (zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img = rng.normal(100.0, 15.0, size=(SIDE,) * 3)
    img[inside] = rng.normal(300.0, 90.0 if rough else 8.0, size=(SIDE,) * 3)[inside]
    return img.astype(np.float32), inside.astype(np.uint8)


def write_sphere_folders(root: Path, n_per_class: int) -> Path:
    """Folders ``benign`` (smooth balls) and ``malignant`` (rough balls) of NRRD volumes with masks on their grid."""
    for cls, rough, offset in (("benign", False, 0), ("malignant", True, 500)):
        for i in range(n_per_class):
            img, mask = sphere_case(offset + i, rough)
            _write(_volume(img), root / cls / f"{cls}{i:02d}.nrrd")
            _write(_volume(mask), root / cls / f"{cls}{i:02d}_mask.nrrd")
    return root


# ------------------------------------------------------------------ a user's 3D box
def test_box_forms_follow_the_dimension():
    assert parse_bbox("[1, 2, 3, 4, 5, 6]") == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    assert parse_bbox([1, 2, 3, 4]) == (1.0, 2.0, 3.0, 4.0)
    with pytest.raises(InputError, match=r"six numbers \[x, y, z, w, h, d\]"):
        parse_bbox([1, 2, 3, 4], where="bbox of row 7", ndim=3)
    with pytest.raises(InputError, match="bbox of row 7"):
        parse_bbox([1, 2, 3, 4, 5], where="bbox of row 7")
    vol = _volume(np.zeros((10, 12, 14), np.float32))  # z, y, x
    box = bbox_mask(vol, (2, 3, 4, 5, 6, 3))
    arr = sitk.GetArrayFromImage(box)
    expected = np.zeros((10, 12, 14), np.uint8)
    expected[4:7, 3:9, 2:7] = 1  # z from 4 (3 deep), y from 3 (6 high), x from 2 (5 wide): x fastest
    np.testing.assert_array_equal(arr, expected)
    assert box.GetSpacing() == vol.GetSpacing() and box.GetOrigin() == vol.GetOrigin()
    assert box.GetDirection() == vol.GetDirection()
    assert mask_to_bbox(arr) == (2, 3, 4, 5, 6, 3)
    with pytest.raises(InputError, match=r"3D volume takes six numbers"):
        bbox_mask(vol, (2, 3, 5, 6))
    with pytest.raises(InputError, match="no extent inside the 14x12x10 volume"):
        bbox_mask(vol, (2, 3, 40, 5, 6, 3))


def test_radiomics_of_a_3d_box_equal_pyradiomics_on_the_hand_built_box(tmp_path: Path):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    from her2dlr.radiomics.extract import extract_radiomics

    img, _ = sphere_case(1, rough=True)
    path = _write(_volume(img), tmp_path / "vol.nrrd")
    box = [4, 5, 3, 7, 6, 8]
    manifest = pd.DataFrame({"case_id": ["a"], "image": [str(path)], "mask": [None], "bbox": [json.dumps(box)]})
    ours = extract_radiomics(manifest, PARAMS, progress=False, backend="sequential").features.loc["a"]
    hand = np.zeros(img.shape, np.uint8)
    hand[3:11, 5:11, 4:11] = 1
    mask = sitk.GetImageFromArray(hand)
    mask.CopyInformation(sitk.ReadImage(str(path)))
    with warnings.catch_warnings():  # pykwalify's deprecated load_module()
        warnings.simplefilter("ignore", DeprecationWarning)
        extractor = RadiomicsFeatureExtractor(PARAMS)
    direct = extractor.execute(sitk.ReadImage(str(path)), mask, label=1)
    direct = {k: float(v) for k, v in direct.items() if not k.startswith("diagnostics_")}
    assert set(ours.index) == set(direct) and len(direct) > 30
    np.testing.assert_allclose(ours[list(direct)].to_numpy(), list(direct.values()), rtol=1e-10)


# ------------------------------------------------------------------ QC: box form and mask geometry
def _table_study(tmp: Path, rows: list[dict], **qc) -> Path:
    pd.DataFrame(rows).to_csv(tmp / "cases.csv", index=False)
    raw = {"name": "qc3d", "output_dir": str(tmp / "run"),
           "cohort": {"sources": [{"kind": "table", "path": str(tmp / "cases.csv"), "image_column": "image",
                                   "mask_column": "mask", "bbox_column": "box", "case_id_column": "case",
                                   "modality": "MR", "label_columns": ["y"]}]},
           "label": {"rule": "column", "column": "y", "positive": [1], "negative": [0]},
           "split": {"seed": 1, "holdout": None, "kfold": None}, "qc": qc}
    study = tmp / "study.yaml"
    study.write_text(yaml.safe_dump(raw))
    return study


def test_qc_checks_the_box_form_and_the_mask_grid(tmp_path: Path):
    img, mask = sphere_case(2, rough=False)
    image = _write(_volume(img), tmp_path / "img.nrrd")
    on_grid = _write(_volume(mask), tmp_path / "on_grid_mask.nrrd")
    # the same lesion drawn on a grid twice as coarse in x and shifted 3 mm: another geometry
    coarse = sitk.Resample(_volume(mask), [8, 16, 16], sitk.Transform(), sitk.sitkNearestNeighbor,
                           ORIGIN, (1.6, 0.7, 1.5), DIRECTION, 0, sitk.sitkUInt8)
    off = _write(coarse, tmp_path / "coarse_mask.nrrd")
    rows = [{"case": "good", "image": "img.nrrd", "mask": "on_grid_mask.nrrd", "box": "", "y": 1},
            {"case": "box3d", "image": "img.nrrd", "mask": "", "box": "[2, 3, 4, 5, 6, 3]", "y": 0},
            {"case": "box2d", "image": "img.nrrd", "mask": "", "box": "[2, 3, 5, 6]", "y": 0},
            {"case": "outside", "image": "img.nrrd", "mask": "", "box": "[2, 3, 30, 5, 6, 3]", "y": 1},
            {"case": "grid", "image": "img.nrrd", "mask": "coarse_mask.nrrd", "box": "", "y": 1}]
    study = _table_study(tmp_path, rows)
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(tmp_path / "run" / "cohort" / "qc.csv").set_index("case_id")
    assert qc.loc["good", "include"] and qc.loc["box3d", "include"]
    assert not qc.loc["box2d", "include"]
    assert f"bbox of image {image}" in qc.loc["box2d", "exclude_reason"]
    assert "six numbers [x, y, z, w, h, d]" in qc.loc["box2d", "exclude_reason"]
    assert not qc.loc["outside", "include"] and "no extent inside" in qc.loc["outside", "exclude_reason"]
    reason = qc.loc["grid", "exclude_reason"]
    assert not qc.loc["grid", "include"] and str(off) in reason and "spacing" in reason
    assert "qc.resample_mask" in reason
    # asked to, QC resamples the mask onto the image's grid by physical position
    study = _table_study(tmp_path, rows, resample_mask=True)
    res = runner.invoke(app, ["cohort", "build", str(study), "--n-jobs", "1"])
    assert res.exit_code == 0, res.output
    qc = pd.read_csv(tmp_path / "run" / "cohort" / "qc.csv").set_index("case_id")
    assert qc.loc["grid", "include"]
    manifest = pd.read_parquet(tmp_path / "run" / "cohort" / "manifest.parquet").set_index("case_id")
    moved = sitk.ReadImage(manifest.loc["grid", "mask"])
    assert moved.GetSize() == (SIDE,) * 3 and np.allclose(moved.GetSpacing(), SPACING)
    assert np.allclose(moved.GetDirection(), DIRECTION) and np.allclose(moved.GetOrigin(), ORIGIN)
    dice = 2 * (sitk.GetArrayFromImage(moved) & mask).sum() / (sitk.GetArrayFromImage(moved).sum() + mask.sum())
    assert dice > 0.8, dice
    assert Path(manifest.loc["good", "mask"]) == on_grid  # a mask on the grid is kept as given


def test_radiomics_refuses_a_mask_on_another_grid(tmp_path: Path):
    from her2dlr.radiomics.extract import extract_case

    img, mask = sphere_case(3, rough=False)
    image = _write(_volume(img), tmp_path / "img.nrrd")
    moved = _write(_volume(mask, origin=(0.0, 0.0, 0.0)), tmp_path / "mask.nrrd")
    with pytest.raises(InputError, match=r"does not lie on the grid of its image .*origin"):
        extract_case(image, moved, params=PARAMS)
