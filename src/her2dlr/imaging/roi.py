"""Rectangular ROI crops for the networks: bounding rectangle + margin, padding, resize, z-score.

The lesion is located by its mask or by a box ``(x, y, w, h)``; its bounding rectangle is
widened by ``margin`` pixels on every side (10 px, seed 002) and cropped. Where the widened
rectangle leaves the image the crop is *padded* (``pad_mode``), never shifted or squeezed, so
the lesion keeps its place and proportions. The crop is resized with bilinear interpolation
(antialiased when shrinking) to ``size x size`` (64, seed 000; 224 for the large backbones)
and z-scored per image (seed 002).

Seed 000 resizes the rectangle directly, which stretches elongated lesions; with
``keep_aspect=True`` the shorter side of the rectangle is first widened to a square with
real image context (padding only beyond the image), so shape is preserved.

Tiny ROIs (a lesion of a few pixels, or a box of zero width) are widened to ``min_size``
pixels around their centre before the crop, so the network never sees a handful of pixels
blown up to 64 x 64.

Arrays are NumPy, rows first: ``image[y, x]``; outputs are channel first ``(C, size, size)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from her2dlr.errors import InputError, nearest
from her2dlr.io.images import LUMA_WEIGHTS, mask_to_bbox

__all__ = ["RoiSpec", "Box", "roi_box", "crop_box", "crop_roi", "resize_image", "zscore", "to_channels",
           "prepare_roi", "load_roi", "PAD_MODES"]

PathLike = str | os.PathLike[str]
Box = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)``: half-open pixel rectangle, which may reach beyond the image."""

PAD_MODES = ("constant", "edge", "reflect")


@dataclass(frozen=True)
class RoiSpec:
    """How a lesion becomes a network input.

    Parameters
    ----------
    size : int, default=64
        Output height and width in pixels (64 in seed 000, 224 for ImageNet-sized backbones).
    margin : int, default=10
        Pixels added on every side of the lesion's bounding rectangle (seed 002).
    min_size : int, default=16
        Smallest crop side in pixels before resizing; smaller rectangles grow around their centre.
    channels : {1, 3}, default=1
        Grey input, or three channels (colour kept when the image has it, else grey replicated).
    keep_aspect : bool, default=False
        Widen the shorter side to a square before resizing (seed 000 resizes the rectangle as is).
    pad_mode : {"constant", "edge", "reflect"}, default="constant"
        How pixels beyond the image border are filled.
    fill : float, default=0.0
        Value of ``pad_mode="constant"`` (ultrasound background is black).
    normalise : bool, default=True
        Z-score every crop with its own mean and standard deviation.
    """

    size: int = 64
    margin: int = 10
    min_size: int = 16
    channels: int = 1
    keep_aspect: bool = False
    pad_mode: str = "constant"
    fill: float = 0.0
    normalise: bool = True

    def __post_init__(self) -> None:
        for name, low in (("size", 4), ("margin", 0), ("min_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"The '{name}' parameter of RoiSpec must be an int >= {low}. Got {value!r} instead.")
        if self.channels not in (1, 3):
            raise InputError(f"The 'channels' parameter of RoiSpec must be 1 or 3. Got {self.channels!r} instead.")
        if self.pad_mode not in PAD_MODES:
            raise InputError(
                f"The 'pad_mode' parameter of RoiSpec must be one of {', '.join(map(repr, PAD_MODES))}. "
                f"Got {self.pad_mode!r} instead.{nearest(self.pad_mode, PAD_MODES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RoiSpec":
        """Inverse of :meth:`to_dict`; unknown keys are refused with the allowed ones."""
        allowed = set(cls.__dataclass_fields__)
        bad = sorted(set(data) - allowed)
        if bad:
            raise InputError(f"Unknown RoiSpec key(s) {bad}. Allowed: {sorted(allowed)}.")
        return cls(**data)


def _image_hw(image: np.ndarray) -> tuple[int, int]:
    if image.ndim not in (2, 3):
        raise InputError(f"A 2D image (height, width[, channels]) is needed; got an array of shape {image.shape}.")
    return int(image.shape[0]), int(image.shape[1])


def roi_box(image_shape: tuple[int, ...], *, mask: np.ndarray | None = None,
            bbox: tuple[float, float, float, float] | None = None, margin: int = 10, min_size: int = 16,
            square: bool = False) -> Box:
    """The crop rectangle of a lesion: its bounding rectangle widened by ``margin``.

    Parameters
    ----------
    image_shape : tuple of int
        ``(height, width[, channels])`` of the image.
    mask : ndarray of shape (height, width), optional
        Lesion mask (non-zero = lesion). Takes precedence over ``bbox``.
    bbox : (x, y, w, h), optional
        Lesion box in pixels. With neither mask nor box the whole image is the ROI.
    margin : int, default=10
    min_size : int, default=16
        Each side is at least this long (grown around the centre).
    square : bool, default=False
        Grow the shorter side to the longer one (around the centre).

    Returns
    -------
    (x0, y0, x1, y1)
        Half-open rectangle; may extend beyond the image (the crop pads there).

    Raises
    ------
    InputError
        A mask of another size than the image, an empty mask, or a box without area inside the image.

    Examples
    --------
    >>> roi_box((100, 100), bbox=(40, 50, 10, 20), margin=10)
    (30, 40, 60, 80)
    >>> roi_box((100, 100), bbox=(0, 0, 2, 2), margin=0, min_size=8)
    (-3, -3, 5, 5)
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:2] != (height, width):
            raise InputError(f"The mask has size {mask.shape[1::-1]} but the image has size {(width, height)}.")
        x, y, w, h = mask_to_bbox(mask if mask.ndim == 2 else mask[..., 0])
        x0, y0, x1, y1 = x, y, x + w, y + h
    elif bbox is not None:
        bx, by, bw, bh = (float(v) for v in bbox)
        if not all(math.isfinite(v) for v in (bx, by, bw, bh)) or bw < 0 or bh < 0:
            raise InputError(f"Bounding box {list(bbox)} (x, y, w, h) must be finite with w, h >= 0.")
        x0, y0 = int(math.floor(bx)), int(math.floor(by))
        x1, y1 = max(int(math.ceil(bx + bw)), x0 + 1), max(int(math.ceil(by + bh)), y0 + 1)
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise InputError(f"Bounding box {list(bbox)} (x, y, w, h) lies outside the {width}x{height} image.")
    else:
        return 0, 0, width, height
    x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
    want_w = max(x1 - x0, min_size)
    want_h = max(y1 - y0, min_size)
    if square:
        want_w = want_h = max(want_w, want_h)
    x0, x1 = _grow(x0, x1, want_w)
    y0, y1 = _grow(y0, y1, want_h)
    return x0, y0, x1, y1


def _grow(lo: int, hi: int, length: int) -> tuple[int, int]:
    """Widen ``[lo, hi)`` to ``length`` around its centre (the extra pixel goes after)."""
    extra = length - (hi - lo)
    if extra <= 0:
        return lo, hi
    return lo - extra // 2, hi + extra - extra // 2


def crop_box(image: np.ndarray, box: Box, *, pad_mode: str = "constant", fill: float = 0.0) -> np.ndarray:
    """Cut ``box`` out of ``image``, padding where the box leaves the image.

    Parameters
    ----------
    image : ndarray of shape (height, width) or (height, width, channels)
    box : (x0, y0, x1, y1)
    pad_mode : {"constant", "edge", "reflect"}
    fill : float
        Value used by ``"constant"``.

    Returns
    -------
    ndarray of shape (y1 - y0, x1 - x0[, channels])
        Same dtype as ``image`` (float32 when padding with a non-integer fill).
    """
    if pad_mode not in PAD_MODES:
        raise InputError(f"pad_mode must be one of {PAD_MODES}. Got {pad_mode!r}.{nearest(pad_mode, PAD_MODES)}")
    height, width = _image_hw(image)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"Crop box {box} (x0, y0, x1, y1) has no area.")
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if cx1 <= cx0 or cy1 <= cy0:
        raise InputError(f"Crop box {box} (x0, y0, x1, y1) lies outside the {width}x{height} image.")
    inner = image[cy0:cy1, cx0:cx1]
    pads = [(cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)] + [(0, 0)] * (image.ndim - 2)
    if not any(p for pair in pads for p in pair):
        return inner.copy()
    mode = pad_mode
    if mode == "reflect" and min(inner.shape[:2]) < 2:
        mode = "edge"  # nothing to mirror in a one-pixel strip
    if mode == "constant":
        if not float(fill).is_integer() and inner.dtype.kind in "iub":
            inner = inner.astype(np.float32)
        return np.pad(inner, pads, mode="constant", constant_values=fill)
    return np.pad(inner, pads, mode=mode)


def resize_image(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a channel-first array ``(C, H, W)`` (or ``(H, W)``), antialiased when shrinking.

    Returns float32 of shape ``(C, size, size)`` (or ``(size, size)``).
    """
    out_hw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    arr = np.asarray(image, dtype=np.float32)
    squeeze = arr.ndim == 2
    tensor = torch.from_numpy(np.ascontiguousarray(arr[None] if squeeze else arr))[None]
    if tuple(tensor.shape[-2:]) != out_hw:
        shrink = tensor.shape[-2] > out_hw[0] or tensor.shape[-1] > out_hw[1]
        tensor = F.interpolate(tensor, size=out_hw, mode="bilinear", align_corners=False, antialias=shrink)
    out = tensor[0].numpy()
    return out[0] if squeeze else out


def zscore(image: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """``(image - mean) / std`` over all pixels and channels of one image; a flat image becomes zeros."""
    arr = np.asarray(image, dtype=np.float32)
    std = float(arr.std())
    return ((arr - float(arr.mean())) / (std if std > eps else 1.0)).astype(np.float32)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A ``(H, W)`` or ``(H, W, C)`` image as channel-first float32 with ``channels`` (1 or 3) channels.

    Colour becomes grey with the ITU-R BT.601 luma weights for 1 channel; grey is replicated for 3;
    an alpha channel is dropped.
    """
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        grey = arr[None]
        return grey if channels == 1 else np.repeat(grey, 3, axis=0)
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"An image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) is needed; got {arr.shape}.")
    if arr.shape[2] in (1, 2):
        return to_channels(arr[..., 0], channels)
    rgb = arr[..., :3]
    if channels == 3:
        return np.moveaxis(rgb, -1, 0).copy()
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return (rgb @ weights)[None]


def crop_roi(image: np.ndarray, *, mask: np.ndarray | None = None,
             bbox: tuple[float, float, float, float] | None = None, spec: RoiSpec | None = None) -> np.ndarray:
    """The padded crop of the lesion (margin, minimum size, square when ``keep_aspect``), not resized.

    Returns
    -------
    ndarray of shape (h, w[, channels]), the image's dtype
    """
    spec = spec or RoiSpec()
    image = np.asarray(image)
    box = roi_box(image.shape, mask=mask, bbox=bbox, margin=spec.margin, min_size=spec.min_size,
                  square=spec.keep_aspect)
    return crop_box(image, box, pad_mode=spec.pad_mode, fill=spec.fill)


def prepare_roi(image: np.ndarray, *, mask: np.ndarray | None = None,
                bbox: tuple[float, float, float, float] | None = None, spec: RoiSpec | None = None) -> np.ndarray:
    """One network input: crop (see :func:`crop_roi`), channels, bilinear resize, z-score.

    Parameters
    ----------
    image : ndarray of shape (height, width) or (height, width, channels)
    mask : ndarray of shape (height, width), optional
    bbox : (x, y, w, h), optional
    spec : RoiSpec, default=RoiSpec()

    Returns
    -------
    ndarray of shape (spec.channels, spec.size, spec.size), float32

    Examples
    --------
    >>> img = np.arange(100 * 120, dtype=np.uint8).reshape(100, 120)
    >>> prepare_roi(img, bbox=(0, 0, 30, 20), spec=RoiSpec(size=32)).shape
    (1, 32, 32)
    """
    spec = spec or RoiSpec()
    crop = crop_roi(image, mask=mask, bbox=bbox, spec=spec)
    out = resize_image(to_channels(crop, spec.channels), spec.size)
    return zscore(out) if spec.normalise else out


def load_roi(image: PathLike, *, mask: PathLike | np.ndarray | None = None,
             bbox: tuple[float, float, float, float] | None = None, spec: RoiSpec | None = None) -> np.ndarray:
    """Read an image file (grey, see :func:`her2dlr.io.images.read_image`) and prepare its ROI.

    Parameters
    ----------
    image : path
        2D image file (PNG, JPEG, TIFF, BMP, single-frame DICOM).
    mask : path or ndarray, optional
        Lesion mask file (or array) of the image's size.
    bbox : (x, y, w, h), optional
    spec : RoiSpec

    Returns
    -------
    ndarray of shape (spec.channels, spec.size, spec.size), float32

    Raises
    ------
    InputError
        Unreadable files, a 3D volume, a mask of another size, an empty mask; the message names the file.
    """
    import SimpleITK as sitk

    from her2dlr.io.images import read_image, read_mask_array

    img = read_image(image)
    if img.GetDimension() != 2:
        raise InputError(f"{image} is a {img.GetDimension()}D volume; the networks take 2D images "
                         "(choose a slice or frame first).")
    arr = sitk.GetArrayFromImage(img)
    mask_arr = None
    if mask is not None:
        mask_arr = read_mask_array(mask) if not isinstance(mask, np.ndarray) else mask
        if mask_arr.shape != arr.shape:
            raise InputError(f"mask {mask if not isinstance(mask, np.ndarray) else '(array)'} has size "
                             f"{mask_arr.shape[::-1]} but image {image} has size {arr.shape[::-1]}.")
        if not (mask_arr > 0).any():
            raise InputError(f"mask {mask if not isinstance(mask, np.ndarray) else '(array)'} of {image} is empty.")
    return prepare_roi(arr, mask=mask_arr, bbox=bbox, spec=spec)
