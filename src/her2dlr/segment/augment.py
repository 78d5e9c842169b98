"""Training augmentation of segmentation pairs: one random draw moves image, prompt and mask together.

Spatial steps act on the image channels, the box-prompt channel and the mask with the same
random parameters (MONAI dictionary transforms); intensity steps act on the image channels only:

1. flips: left-right (``hflip_prob``, the x axis); up-down only when asked (``vflip_prob``: in
   ultrasound it moves posterior acoustic shadowing above the lesion);
2. small affine: rotation (``rotate_degrees``; in 3D about each axis), scaling (``scale``) and
   translation (``translate``, a fraction of the side); image borders repeated, the prompt and
   the mask interpolated by nearest neighbour and padded with 0;
3. intensity scale and shift (``intensity``, in SD units of the z-scored input);
4. gamma (``gamma``: MONAI's ``RandAdjustContrast`` within ``(1 - gamma, 1 + gamma)``);
5. speckle: multiplicative noise, the image (shifted to a minimum of 0) times
   ``1 + sigma * N(0, 1)`` per pixel with ``sigma`` drawn in ``(0, speckle)``. MONAI has additive
   Gaussian and Rician noise but no multiplicative speckle, hence :class:`RandSpeckle`.

Each random step owns its generator; :meth:`SegAugment.set_random_state` seeds them all from
one seed (the trainer reseeds once per epoch).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import monai.transforms as mt
import numpy as np
import torch
from monai.data.meta_obj import get_track_meta, set_track_meta
from monai.transforms import MapTransform, Randomizable
from torch.utils.data import Dataset, get_worker_info

from her2dlr.checks import check_number
from her2dlr.imaging.torchutil import torch_threads

__all__ = ["AugmentBatch", "PairDataset", "RandSpeckle", "SegAugment", "SegAugmentSettings"]


@dataclass(frozen=True)
class SegAugmentSettings:
    """Strength and probability of each training augmentation (a probability of 0 switches a step off).

    Parameters
    ----------
    hflip_prob : float, default=0.5
    vflip_prob : float, default=0.0
    affine_prob : float, default=0.5
    rotate_degrees : float, default=15.0
    scale : float, default=0.1
    translate : float, default=0.05
        Largest shift as a fraction of the input side.
    intensity_prob : float, default=0.5
    intensity : float, default=0.1
    gamma_prob : float, default=0.3
    gamma : float, default=0.3
    speckle_prob : float, default=0.3
    speckle : float, default=0.15
        Largest standard deviation of the multiplicative noise.
    """

    hflip_prob: float = 0.5
    vflip_prob: float = 0.0
    affine_prob: float = 0.5
    rotate_degrees: float = 15.0
    scale: float = 0.1
    translate: float = 0.05
    intensity_prob: float = 0.5
    intensity: float = 0.1
    gamma_prob: float = 0.3
    gamma: float = 0.3
    speckle_prob: float = 0.3
    speckle: float = 0.15

    def __post_init__(self) -> None:
        for name in ("hflip_prob", "vflip_prob", "affine_prob", "intensity_prob", "gamma_prob", "speckle_prob"):
            check_number(self, name, getattr(self, name), low=0.0, high=1.0)
        for name in ("rotate_degrees", "scale", "translate", "intensity", "speckle"):
            check_number(self, name, getattr(self, name), low=0.0)
        check_number(self, "gamma", self.gamma, low=0.0, high=0.9)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class RandSpeckle(Randomizable, MapTransform):
    """With probability ``prob``, multiplicative Gaussian noise on the image (speckle-like).

    The image is shifted to a minimum of 0 (inputs are z-scored), multiplied pixel by pixel by
    ``1 + sigma * N(0, 1)`` with ``sigma`` drawn uniformly in ``(0, max_sigma)``, and shifted back.
    """

    def __init__(self, keys: str, max_sigma: float, prob: float) -> None:
        MapTransform.__init__(self, keys)
        self.max_sigma = float(max_sigma)
        self.prob = float(prob)
        self._do = False
        self._sigma = 0.0

    def randomize(self, data: Any = None) -> None:
        """Draw whether to add noise, and its strength."""
        self._do = bool(self.R.rand() < self.prob)
        self._sigma = float(self.R.uniform(0.0, self.max_sigma))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        self.randomize()
        if not self._do:
            return data
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key])
            noise = torch.from_numpy(self.R.standard_normal(tuple(img.shape)).astype(np.float32))
            low = img.amin()
            d[key] = (img - low) * (1.0 + self._sigma * noise) + low
        return d


class SegAugment:
    """A seeded MONAI ``Compose`` of joint augmentations for one ``(x, y)`` pair.

    Parameters
    ----------
    size : int
        Side of the inputs.
    settings : SegAugmentSettings, optional
    seed : int, default=0
    spatial_dims : {2, 3}, default=2
    image_channels : int, default=1
        Leading channels of ``x`` that are image; the rest (a box prompt) get spatial steps only.
    """

    def __init__(self, size: int, settings: SegAugmentSettings | None = None, *, seed: int = 0,
                 spatial_dims: int = 2, image_channels: int = 1) -> None:
        self.size = int(size)
        self.spatial_dims = n = int(spatial_dims)
        self.image_channels = int(image_channels)
        self.settings = s = settings or SegAugmentSettings()
        spatial = ["image", "prompt", "label"]
        steps: list[Any] = []
        for prob, axis in ((s.hflip_prob, n - 1), (s.vflip_prob, n - 2)):
            if prob > 0:
                steps.append(mt.RandFlipd(spatial, prob=prob, spatial_axis=axis, allow_missing_keys=True))
        if s.affine_prob > 0 and (s.rotate_degrees > 0 or s.scale > 0 or s.translate > 0):
            rotate = (math.radians(s.rotate_degrees),) * (1 if n == 2 else 3)
            steps.append(mt.RandAffined(spatial, prob=s.affine_prob, rotate_range=rotate, scale_range=(s.scale,) * n,
                                        translate_range=(s.translate * self.size,) * n,
                                        mode=("bilinear", "nearest", "nearest"),
                                        padding_mode=("border", "zeros", "zeros"), spatial_size=(self.size,) * n,
                                        cache_grid=True, allow_missing_keys=True))
        if s.intensity_prob > 0 and s.intensity > 0:
            steps.append(mt.RandScaleIntensityd("image", factors=s.intensity, prob=s.intensity_prob))
            steps.append(mt.RandShiftIntensityd("image", offsets=s.intensity, prob=s.intensity_prob))
        if s.gamma_prob > 0 and s.gamma > 0:
            steps.append(mt.RandAdjustContrastd("image", prob=s.gamma_prob, gamma=(1 - s.gamma, 1 + s.gamma)))
        if s.speckle_prob > 0 and s.speckle > 0:
            steps.append(RandSpeckle("image", s.speckle, s.speckle_prob))
        self.compose = mt.Compose(steps)
        self.set_random_state(seed)

    def set_random_state(self, seed: int) -> SegAugment:
        """Seed every random step with its own seed derived from ``seed``."""
        steps = [t for t in self.compose.transforms if isinstance(t, Randomizable)]
        children = np.random.SeedSequence(int(seed) % (2**32)).spawn(len(steps))
        for step, child in zip(steps, children):
            step.set_random_state(seed=int(child.generate_state(1)[0]))
        return self

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one input ``(C, *size)`` and its mask ``(*size)``; float32 input and int64 mask tensors."""
        c = self.image_channels
        data: dict[str, Any] = {"image": torch.as_tensor(np.asarray(x[:c], dtype=np.float32)),
                                "label": torch.as_tensor(np.asarray(y, dtype=np.float32)[None])}
        if x.shape[0] > c:
            data["prompt"] = torch.as_tensor(np.asarray(x[c:], dtype=np.float32))
        tracking = get_track_meta()
        set_track_meta(False)  # plain tensors: MetaTensor bookkeeping costs more than the transforms
        try:
            out = self.compose(data)
        finally:
            set_track_meta(tracking)
        parts = [torch.as_tensor(out["image"], dtype=torch.float32)]
        if "prompt" in out:
            parts.append(torch.as_tensor(out["prompt"], dtype=torch.float32))
        xt = torch.cat(parts).contiguous()
        yt = (torch.as_tensor(out["label"])[0] > 0.5).long()
        return xt, yt


class PairDataset(Dataset):
    """Inputs ``(n, C, *size)`` and masks ``(n, *size)`` as a dataset of ``(x, y)`` array pairs."""

    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        self.X, self.Y = X, Y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.X[i], self.Y[i]


class AugmentBatch:
    """Batch maker: augments each pair (single-threaded: small ops are fastest so) and stacks them.

    In a DataLoader worker the copy of ``augment`` is reseeded once from ``seed`` and the worker
    number, else every worker would draw the same transforms.
    """

    def __init__(self, augment: SegAugment, seed: int) -> None:
        self.augment, self.seed, self.worker = augment, seed, None

    def __call__(self, batch: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
        info = get_worker_info()
        if info is not None and self.worker != info.id:
            self.augment.set_random_state((self.seed + 7919 * (info.id + 1)) % (2**32))
            self.worker = info.id
        with torch_threads(1):
            pairs = [self.augment(x, y) for x, y in batch]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
