"""Training augmentation and test-time preparation of ROI arrays (MONAI array transforms).

Inputs are channel-first ROI arrays ``(C, size, size)`` (``(C, size, size, size)`` for volumes,
``spatial_dims=3``), already cropped, resized and z-scored by
:func:`her2dlr.imaging.roi.prepare_roi`. At test time nothing more is done (seed 002:
"for test images, processing was restricted to normalization only"); :func:`test_transform`
only turns the array into a tensor.

Training (:func:`train_transform`), each step with its own probability:

1. random crop: a window of 85-100 % of each side at a random place, resized back (bilinear,
   trilinear for volumes);
2. horizontal flip (``p = 0.5``, the x axis); vertical flip only when asked (``vflip_prob``, the
   y axis; seed 002 used it, but it moves posterior acoustic shadowing above the lesion, so it is
   off by default);
3. small rotation (+-10 degrees) and scaling (+-10 %), border pixels repeated. Images: MONAI
   reads the scalar ranges as one in-plane angle and a scale of the first (row) axis only, kept
   as it is so that 2D runs stay reproducible. Volumes: the same angle range about each of the
   three axes and the same scale range on each axis, drawn independently;
4. intensity jitter: multiply by ``1 + U(-0.1, 0.1)`` and add ``U(-0.1, 0.1)`` (in SD units).

Each random transform owns its generator: :meth:`Augment.set_random_state` seeds them all, so
a seed reproduces the same augmented images (the trainer reseeds once per epoch, which also
makes a resumed run identical to an uninterrupted one).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import monai.transforms as mt
import numpy as np
import torch
from monai.data.meta_obj import get_track_meta, set_track_meta
from monai.transforms import Randomizable, Transform

from her2dlr.errors import InputError
from her2dlr.imaging.roi import SPATIAL_DIMS

__all__ = ["Augment", "AugmentSettings", "RandCropResize", "test_transform", "train_transform"]


@dataclass(frozen=True)
class AugmentSettings:
    """Strength of each training augmentation (0 switches one off).

    Parameters
    ----------
    crop_prob : float, default=0.5
    crop_scale : float, default=0.85
        Smallest crop side as a fraction of the ROI side.
    hflip_prob : float, default=0.5
    vflip_prob : float, default=0.0
    affine_prob : float, default=0.5
    rotate_degrees : float, default=10.0
    scale : float, default=0.1
    intensity_prob : float, default=0.5
    intensity : float, default=0.1
        Range of the multiplicative and additive intensity jitter.
    """

    crop_prob: float = 0.5
    crop_scale: float = 0.85
    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    affine_prob: float = 0.5
    rotate_degrees: float = 10.0
    scale: float = 0.1
    intensity_prob: float = 0.5
    intensity: float = 0.1

    def __post_init__(self) -> None:
        for name in ("crop_prob", "hflip_prob", "vflip_prob", "affine_prob", "intensity_prob"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise InputError(f"The '{name}' parameter of AugmentSettings must be in [0, 1]. Got {value!r} instead.")
        if not 0.0 < self.crop_scale <= 1.0:
            raise InputError(f"The 'crop_scale' parameter of AugmentSettings must be in (0, 1]. "
                             f"Got {self.crop_scale!r} instead.")
        for name in ("rotate_degrees", "scale", "intensity"):
            if float(getattr(self, name)) < 0:
                raise InputError(f"The '{name}' parameter of AugmentSettings must be >= 0. "
                                 f"Got {getattr(self, name)!r} instead.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class Augment:
    """A seeded MONAI ``Compose`` of training augmentations returning plain float32 tensors.

    Parameters
    ----------
    size : int
        ROI side (the output keeps it).
    settings : AugmentSettings, optional
    seed : int, default=0
    spatial_dims : {2, 3}, default=2
        ROIs ``(C, size, size)`` or ``(C, size, size, size)``.
    """

    def __init__(self, size: int, settings: AugmentSettings | None = None, *, seed: int = 0,
                 spatial_dims: int = 2) -> None:
        if isinstance(spatial_dims, bool) or spatial_dims not in SPATIAL_DIMS:
            raise InputError(f"The 'spatial_dims' parameter of Augment must be 2 or 3. Got {spatial_dims!r} instead.")
        self.size = int(size)
        self.spatial_dims = int(spatial_dims)
        self.settings = settings or AugmentSettings()
        s = self.settings
        n = self.spatial_dims
        steps: list[Any] = []
        if s.crop_prob > 0 and s.crop_scale < 1.0:
            steps.append(RandCropResize(self.size, s.crop_scale, s.crop_prob, spatial_dims=n))
        if s.hflip_prob > 0:
            steps.append(mt.RandFlip(prob=s.hflip_prob, spatial_axis=n - 1))  # x: the last axis
        if s.vflip_prob > 0:
            steps.append(mt.RandFlip(prob=s.vflip_prob, spatial_axis=n - 2))  # y
        if s.affine_prob > 0 and (s.rotate_degrees > 0 or s.scale > 0):
            rotate: Any = math.radians(s.rotate_degrees)
            scale: Any = s.scale
            if n == 3:
                rotate, scale = (rotate,) * 3, (scale,) * 3
            steps.append(mt.RandAffine(prob=s.affine_prob, rotate_range=rotate, scale_range=scale,
                                       padding_mode="border", mode="bilinear", spatial_size=(self.size,) * n,
                                       cache_grid=True))
        if s.intensity_prob > 0 and s.intensity > 0:
            steps.append(mt.RandScaleIntensity(factors=s.intensity, prob=s.intensity_prob))
            steps.append(mt.RandShiftIntensity(offsets=s.intensity, prob=s.intensity_prob))
        self.compose = mt.Compose(steps)
        self.set_random_state(seed)

    def set_random_state(self, seed: int) -> Augment:
        """Seed every random transform with its own seed derived from ``seed``.

        (MONAI's ``Compose.set_random_state`` gives every step the same seed, so their draws,
        e.g. "flip?" and "rotate?", would coincide.)
        """
        steps = [t for t in self.compose.transforms if isinstance(t, Randomizable)]
        children = np.random.SeedSequence(int(seed) % (2**32)).spawn(len(steps))
        for step, child in zip(steps, children):
            step.set_random_state(seed=int(child.generate_state(1)[0]))
        return self

    def __call__(self, roi: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Augment one ``(C, H, W)`` (or ``(C, D, H, W)``) ROI; returns a float32 tensor of the same shape."""
        tracking = get_track_meta()
        set_track_meta(False)  # plain tensors: 20x faster than MetaTensor bookkeeping
        try:
            x = torch.as_tensor(np.asarray(roi, dtype=np.float32) if not isinstance(roi, torch.Tensor) else roi)
            out = self.compose(x)
        finally:
            set_track_meta(tracking)
        return torch.as_tensor(out, dtype=torch.float32).contiguous()


class RandCropResize(Randomizable, Transform):
    """With probability ``prob``, crop ``scale``-``1`` of each side at a random place and resize back.

    Parameters
    ----------
    size : int
        Output side.
    scale : float
        Smallest crop side as a fraction of the input side.
    prob : float
    spatial_dims : {2, 3}, default=2
    """

    def __init__(self, size: int, scale: float, prob: float, *, spatial_dims: int = 2) -> None:
        self.prob = float(prob)
        self.crop = mt.RandScaleCrop(roi_scale=scale, max_roi_scale=1.0, random_center=True, random_size=True)
        self.resize = mt.Resize((int(size),) * spatial_dims, mode="bilinear" if spatial_dims == 2 else "trilinear",
                                anti_aliasing=False)
        self._do = False

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None
                         ) -> RandCropResize:
        """Seed this step and its crop (the crop gets ``seed + 1``)."""
        super().set_random_state(seed, state)
        self.crop.set_random_state(seed=None if seed is None else (int(seed) + 1) % (2**32), state=state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw whether to crop."""
        self._do = bool(self.R.rand() < self.prob)

    def __call__(self, img: Any) -> Any:
        self.randomize()
        return self.resize(self.crop(img)) if self._do else img


def train_transform(size: int, settings: AugmentSettings | None = None, *, seed: int = 0,
                    spatial_dims: int = 2) -> Augment:
    """The training augmentation of ROIs of side ``size`` (see the module docstring)."""
    return Augment(size, settings, seed=seed, spatial_dims=spatial_dims)


def test_transform(roi: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Test-time preparation: the (already z-scored) ROI as a float32 tensor, nothing else."""
    return torch.as_tensor(np.asarray(roi, dtype=np.float32) if not isinstance(roi, torch.Tensor) else roi,
                           dtype=torch.float32)
