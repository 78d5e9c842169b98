"""Synthetic two-texture lesions for the deep tests (helpers, and a check that they differ as meant).

A smooth disc (low variance) or a speckled disc (high variance) of the same mean brightness
in a noisy background: only texture tells the classes apart, so a network that separates
them has learnt something from the pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from her2dlr.imaging.roi import zscore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def texture_image(label: int, rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One image (float, 0..1) and its disc mask; ``label`` 0 smooth, 1 speckled."""
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.5, 0.15, (size, size))
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    r = rng.uniform(size * 0.25, size * 0.33)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    lesion = rng.normal(0.25, 0.03 if label == 0 else 0.25, (size, size))
    img[inside] = lesion[inside]
    return img, inside.astype(np.uint8)


def two_texture_rois(n: int = 60, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """ROI arrays ``(n, 1, size, size)`` (z-scored) and balanced labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rois = np.stack([zscore(texture_image(int(lab), rng, size)[0])[None] for lab in labels]).astype(np.float32)
    return rois, labels


def test_textures_differ_in_variance_not_mean():
    rng = np.random.default_rng(1)
    smooth, mask = texture_image(0, rng)
    rough, mask2 = texture_image(1, rng)
    assert abs(smooth[mask > 0].mean() - rough[mask2 > 0].mean()) < 0.1
    assert rough[mask2 > 0].std() > 4 * smooth[mask > 0].std()
    rois, labels = two_texture_rois(10)
    assert rois.shape == (10, 1, 32, 32) and labels.sum() == 5
