"""Tiny synthetic 3D cohorts: noisy 16^3 NRRD volumes with a bright ball, smooth (benign) or rough (malignant).

Shared by the 3D ROI, segmentation and DSFR tests (``test_roi3d``, ``test_dsfr_stage``). The volumes
carry an anisotropic spacing, an origin and a rotated direction, so any step that loses the
geometry shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["DIRECTION", "ORIGIN", "SIDE", "SPACING", "sphere_case", "volume_image", "write_image",
           "write_sphere_folders"]

SIDE = 16
SPACING = (0.8, 0.7, 1.5)
ORIGIN = (12.0, -40.0, 7.5)
DIRECTION = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # a quarter turn about z


def volume_image(arr: np.ndarray, *, spacing=SPACING, origin=ORIGIN, direction=DIRECTION) -> sitk.Image:
    """A SimpleITK image of ``arr`` (z, y, x) with the given geometry."""
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def write_image(img: sitk.Image, path: Path) -> Path:
    """Write ``img`` (compressed), creating the folder."""
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
            write_image(volume_image(img), root / cls / f"{cls}{i:02d}.nrrd")
            write_image(volume_image(mask), root / cls / f"{cls}{i:02d}_mask.nrrd")
    return root
