"""ROI crops: margin, padding at the border (not shifting), tiny ROIs, resizing, z-score, channels."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import write_png
from her2dlr.errors import InputError
from her2dlr.imaging.roi import (
    RoiSpec,
    crop_box,
    crop_roi,
    load_roi,
    prepare_roi,
    resize_image,
    roi_box,
    to_channels,
    zscore,
)


def test_box_from_mask_and_bbox_with_margin():
    mask = np.zeros((100, 120), dtype=np.uint8)
    mask[40:60, 50:80] = 1  # x 50..79, y 40..59
    assert roi_box(mask.shape, mask=mask, margin=10) == (40, 30, 90, 70)
    assert roi_box(mask.shape, bbox=(50, 40, 30, 20), margin=10) == (40, 30, 90, 70)
    assert roi_box(mask.shape) == (0, 0, 120, 100)  # no lesion given: the whole image


def test_square_box_keeps_aspect_with_context():
    x0, y0, x1, y1 = roi_box((200, 200), bbox=(50, 90, 100, 20), margin=0, square=True)
    assert x1 - x0 == y1 - y0 == 100
    assert (y0 + y1) / 2 == pytest.approx(100, abs=1)  # grown around the lesion's centre


def test_crop_at_border_pads_and_does_not_shift():
    img = np.arange(50 * 60, dtype=np.float32).reshape(50, 60) + 1  # no zero inside the image
    mask = np.zeros_like(img, dtype=np.uint8)
    mask[0:5, 0:8] = 1  # lesion in the top-left corner
    crop = crop_roi(img, mask=mask, spec=RoiSpec(margin=10, min_size=1))
    assert crop.shape == (25, 28)  # 5 + 2*10 rows, 8 + 2*10 columns
    assert (crop[:10] == 0).all() and (crop[:, :10] == 0).all()  # padded above and left
    np.testing.assert_array_equal(crop[10:, 10:], img[0:15, 0:18])  # image content where it belongs
    edge = crop_box(img, (-3, -2, 4, 3), pad_mode="edge")
    np.testing.assert_array_equal(edge[:2, 3:], np.repeat(img[:1, :4], 2, axis=0))
    refl = crop_box(img, (-3, -2, 4, 3), pad_mode="reflect")
    assert refl.shape == (5, 7) and refl[0, 3] == img[2, 0]


def test_crop_at_the_far_border_pads_bottom_right():
    img = np.ones((40, 40), dtype=np.uint8) * 7
    crop = crop_roi(img, bbox=(35, 36, 5, 4), spec=RoiSpec(margin=10, fill=0))
    assert crop.shape == (24, 25)
    assert crop[-1, -1] == 0 and crop[0, 0] == 7


@pytest.mark.parametrize("roi", [{"bbox": (30, 30, 1, 1)}, {"bbox": (30, 30, 0, 0)}, {"mask": "one-pixel"}])
def test_tiny_roi_grows_to_the_minimum_size(roi):
    img = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    if "mask" in roi:
        mask = np.zeros((64, 64), dtype=np.uint8)
        mask[30, 30] = 1
        roi = {"mask": mask}
    spec = RoiSpec(size=32, margin=0, min_size=16)
    assert crop_roi(img, spec=spec, **roi).shape == (16, 16)
    out = prepare_roi(img, spec=spec, **roi)
    assert out.shape == (1, 32, 32) and np.isfinite(out).all()
    assert out.std() == pytest.approx(1.0, abs=1e-3)


def test_tiny_roi_at_a_corner_is_padded():
    img = np.full((20, 20), 5.0, dtype=np.float32)
    crop = crop_roi(img, bbox=(0, 0, 1, 1), spec=RoiSpec(margin=2, min_size=12, pad_mode="constant"))
    assert crop.shape == (12, 12)
    assert crop[0, 0] == 0 and crop[-1, -1] == 5


def test_prepare_roi_resizes_rectangle_and_zscores():
    img = np.random.default_rng(0).integers(0, 255, size=(120, 160)).astype(np.uint8)
    out = prepare_roi(img, bbox=(10, 20, 100, 30), spec=RoiSpec(size=64))
    assert out.shape == (1, 64, 64) and out.dtype == np.float32
    assert out.mean() == pytest.approx(0, abs=1e-4) and out.std() == pytest.approx(1, abs=1e-3)
    raw = prepare_roi(img, bbox=(10, 20, 100, 30), spec=RoiSpec(size=64, normalise=False))
    assert raw.min() >= 0 and raw.max() <= 255


def test_bilinear_resize_preserves_a_ramp_and_a_constant():
    ramp = np.tile(np.arange(8, dtype=np.float32), (8, 1))
    up = resize_image(ramp, 16)
    assert up.shape == (16, 16) and np.all(np.diff(up[4]) >= 0)
    np.testing.assert_allclose(resize_image(np.full((3, 50, 30), 2.0), 20), 2.0, rtol=1e-6)


def test_channels_grey_rgb():
    rgb = np.zeros((10, 10, 3), dtype=np.uint8)
    rgb[..., 0] = 100
    assert to_channels(rgb, 1)[0, 0, 0] == pytest.approx(29.9, abs=1e-3)  # luma weight of red
    assert to_channels(rgb, 3).shape == (3, 10, 10)
    assert to_channels(rgb[..., 0], 3).shape == (3, 10, 10)  # grey replicated
    out = prepare_roi(rgb, spec=RoiSpec(size=16, channels=3))
    assert out.shape == (3, 16, 16)


def test_flat_image_zscores_to_zeros():
    np.testing.assert_array_equal(zscore(np.full((4, 4), 3.0)), 0.0)


def test_errors_are_clear():
    img = np.zeros((30, 40))
    with pytest.raises(InputError, match="outside"):
        roi_box(img.shape, bbox=(100, 100, 5, 5))
    with pytest.raises(InputError, match="size"):
        roi_box(img.shape, mask=np.ones((10, 10)))
    with pytest.raises(InputError, match="empty"):
        roi_box(img.shape, mask=np.zeros((30, 40)))
    with pytest.raises(InputError, match="Did you mean 'reflect'"):
        RoiSpec(pad_mode="reflct")
    with pytest.raises(InputError, match="channels"):
        RoiSpec(channels=2)
    with pytest.raises(InputError, match="Unknown RoiSpec"):
        RoiSpec.from_dict({"sise": 64})
    assert RoiSpec.from_dict(RoiSpec(size=32).to_dict()) == RoiSpec(size=32)


def test_load_roi_from_files(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, size=(80, 96), dtype=np.uint8)
    mask = np.zeros((80, 96), dtype=np.uint8)
    mask[20:40, 30:60] = 255
    img_path = write_png(tmp_path / "a.png", grey)
    rgb_path = write_png(tmp_path / "b.png", np.stack([grey] * 3, axis=-1))
    mask_path = write_png(tmp_path / "a_mask.png", mask)
    a = load_roi(img_path, mask=mask_path, spec=RoiSpec(size=32))
    b = load_roi(rgb_path, mask=mask_path, spec=RoiSpec(size=32))
    assert a.shape == (1, 32, 32)
    np.testing.assert_allclose(a, b, atol=1e-3)  # RGB of a grey image -> the same grey
    with pytest.raises(InputError, match="size"):
        load_roi(img_path, mask=np.ones((10, 10), dtype=np.uint8))
