"""Image readers: grey conversion against hand-computed luma, DICOM / NIfTI / NRRD, masks and boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from her2dlr.errors import InputError
from her2dlr.io.images import bbox_mask, mask_to_bbox, read_image, read_mask


def test_rgb_png_becomes_bt601_luma(tmp_path: Path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "c.png")
    grey = sitk.GetArrayFromImage(read_image(tmp_path / "c.png"))
    assert grey.shape == (4, 5)
    assert np.allclose(grey, 0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_rgba_drops_alpha(tmp_path: Path):
    rgba = np.zeros((3, 3, 4), np.uint8)
    rgba[..., :3] = 90
    rgba[..., 3] = 10
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    assert np.allclose(sitk.GetArrayFromImage(read_image(tmp_path / "a.png")), 90, atol=1e-3)


def test_dicom_2d_roundtrip(tmp_path: Path):
    arr = (np.arange(30 * 40).reshape(30, 40) % 251).astype(np.uint16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.1, 0.2))
    sitk.WriteImage(img, str(tmp_path / "us.dcm"))
    back = read_image(tmp_path / "us.dcm")
    assert back.GetDimension() == 2
    assert np.array_equal(sitk.GetArrayFromImage(back), arr)


def test_nifti_and_nrrd_volumes(tmp_path: Path):
    vol = np.random.default_rng(0).integers(0, 1000, (6, 20, 24)).astype(np.int16)
    img = sitk.GetImageFromArray(vol)
    img.SetSpacing((0.7, 0.7, 2.0))
    for name in ("v.nii.gz", "v.nrrd"):
        sitk.WriteImage(img, str(tmp_path / name))
        back = read_image(tmp_path / name)
        assert back.GetSize() == (24, 20, 6)
        assert back.GetSpacing() == pytest.approx((0.7, 0.7, 2.0))


def test_real_mri_volume_and_mask(shared_data: Path):
    img = read_image(shared_data / "mri-breast1" / "breast1_image.nrrd")
    mask = read_mask(shared_data / "mri-breast1" / "breast1_label.nrrd", img)
    assert img.GetDimension() == 3
    assert sitk.GetArrayViewFromImage(mask).sum() > 0


def test_spacing_override_and_bad_spacing(tmp_path: Path):
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png", spacing=0.08).GetSpacing() == pytest.approx((0.08, 0.08))
    with pytest.raises(InputError, match="Spacing"):
        read_image(tmp_path / "g.png", spacing=(0.1, 0.1, 0.1))


def test_missing_and_unreadable_files_are_named(tmp_path: Path):
    with pytest.raises(InputError, match="not found.*nope.png"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="bad.png"):
        read_image(tmp_path / "bad.png")


def test_mask_checks(tmp_path: Path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "i.png")
    ref = read_image(tmp_path / "i.png")
    m = np.zeros((8, 8), np.uint8)
    m[2:4, 2:5] = 255
    Image.fromarray(m).save(tmp_path / "ok.png")
    assert sitk.GetArrayViewFromImage(read_mask(tmp_path / "ok.png", ref)).sum() == 6
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(tmp_path / "size.png")
    with pytest.raises(InputError, match=r"size \(9, 8\).*size \(8, 8\)"):
        read_mask(tmp_path / "size.png", ref)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="empty"):
        read_mask(tmp_path / "empty.png", ref)
    labels = m.copy()
    labels[5, 5] = 2
    Image.fromarray(labels).save(tmp_path / "labels.png")
    with pytest.raises(InputError, match="values 2"):
        read_mask(tmp_path / "labels.png", ref)


def test_bbox_mask_is_clipped_rectangle_and_inverts_mask_to_bbox(tmp_path: Path):
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "i.png")
    ref = read_image(tmp_path / "i.png")
    arr = sitk.GetArrayFromImage(bbox_mask(ref, (25, 5, 10, 4)))  # runs past the right edge
    assert arr.sum() == 5 * 4
    assert mask_to_bbox(arr) == (25, 5, 5, 4)
    with pytest.raises(InputError, match="no area"):
        bbox_mask(ref, (40, 5, 3, 3))
