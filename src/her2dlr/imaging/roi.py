"""ROI crops for the networks: bounding box + margin, padding, resize, z-score, for 2D and 3D.

The lesion is located by its mask or by a box; its bounding box is widened by ``margin``
pixels (voxels) on every side (10 px, seed 002) and cropped. Where the widened box leaves the
image the crop is *padded* (``pad_mode``), never shifted or squeezed, so the lesion keeps its
place and proportions. The crop is resized with linear interpolation (antialiased when
shrinking) to ``size`` along every axis (64 x 64, seed 000; 224 for the large backbones; a
cube for volumes) and z-scored per image (seed 002).

Seed 000 resizes the rectangle directly, which stretches elongated lesions; with
``keep_aspect=True`` the shorter sides of the box are first widened to the longest one with
real image context (padding only beyond the image), so shape is preserved.

Tiny ROIs (a lesion of a few pixels, or a box of zero width) are widened to ``min_size``
pixels around their centre before the crop, so the network never sees a handful of pixels
blown up to 64 x 64.

Any number of spatial dimensions (``spatial_dims``: 2 for images, 3 for volumes), one code path:

* arrays are NumPy, rows first: ``image[y, x]`` or ``volume[z, y, x]`` (SimpleITK's array
  order), with an optional trailing channel axis; outputs are channel first,
  ``(C, size, size)`` or ``(C, size, size, size)``;
* boxes given by the user are ``(x, y, w, h)`` or ``(x, y, z, w, h, d)`` (lower corner, then
  extent, in image axis order x, y, z); crop boxes (:data:`Box`) are the half-open corners
  ``(x0, y0, x1, y1)`` or ``(x0, y0, z0, x1, y1, z1)``.

Margins and sizes are counted in voxels: an anisotropic MRI volume (thick slices) should be
resampled to isotropic spacing first, or its cube holds a flattened lesion.

2.5D inputs (``RoiSpec(slices=k)``, ``spatial_dims=2``): a volume's lesion becomes ``k`` slices
as the channels of a 2D input, ``(k, size, size)`` (the input of DeepTEPP, seed 004, and of many
MRI networks: cheaper than a cube, with between-slice context kept). The lesion's bounding box
over all its slices gives one in-plane crop (margin, ``margin_fraction``, ``min_size``,
``keep_aspect`` as for 2D crops); the slices are the ``k`` centred on the lesion's centre slice
(:func:`centre_slice`: the slice of largest lesion area for a mask, the middle slice of a box),
padded beyond the volume's first and last slice like the in-plane border (``pad_mode``). Each
slice is resized in plane only, and the ``k`` slices are z-scored together, as one patch, so
the differences between slices (the lesion fading out at its ends) are kept.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from her2dlr.errors import InputError, nearest
from her2dlr.io.images import LUMA_WEIGHTS

__all__ = [
    "PAD_MODES",
    "SPATIAL_DIMS",
    "Box",
    "RoiSpec",
    "centre_slice",
    "crop_box",
    "crop_roi",
    "load_roi",
    "prepare_roi",
    "resize_image",
    "roi_box",
    "slice_stack_box",
    "to_channels",
    "zscore",
]

PathLike = str | os.PathLike[str]
Box = tuple[int, ...]
"""``(x0, y0, x1, y1)`` or ``(x0, y0, z0, x1, y1, z1)``: half-open box, which may reach beyond the image."""

PAD_MODES = ("constant", "edge", "reflect")
#: Allowed numbers of spatial dimensions: images (2) and volumes (3).
SPATIAL_DIMS = (2, 3)
_AXES = "xyz"
_EXTENTS = "whd"


@dataclass(frozen=True)
class RoiSpec:
    """How a lesion becomes a network input.

    Parameters
    ----------
    size : int, default=64
        Output side in pixels along every axis (64 in seed 000, 224 for ImageNet-sized
        backbones; volumes become cubes).
    margin : int, default=10
        Pixels added on every side of the lesion's bounding box (seed 002).
    margin_fraction : float, default=0.0
        Context added on every side as a fraction of the box's side along that axis (on top of
        ``margin``): 0.25 widens a 40 px side by 10 px at each end, so large and small lesions
        keep the same share of surrounding tissue.
    min_size : int, default=16
        Smallest crop side in pixels before resizing; smaller boxes grow around their centre.
    channels : {1, 3}, default=1
        Grey input, or three channels (colour kept when the image has it, else grey replicated).
    keep_aspect : bool, default=False
        Widen the shorter sides to the longest before resizing (seed 000 resizes the rectangle as is).
    pad_mode : {"constant", "edge", "reflect"}, default="constant"
        How pixels beyond the image border are filled.
    fill : float, default=0.0
        Value of ``pad_mode="constant"`` (ultrasound background is black).
    normalise : bool, default=True
        Z-score every crop with its own mean and standard deviation.
    spatial_dims : {2, 3}, default=2
        Images ``(y, x)`` or volumes ``(z, y, x)``: the dimensions of the network input.
    slices : int, optional
        2.5D input: the ``slices`` (odd) slices of a volume around the lesion's centre slice as
        the channels of a 2D input ``(slices, size, size)``; needs ``spatial_dims=2`` and
        ``channels=1``. None: the input has the image's own dimensions.
    """

    size: int = 64
    margin: int = 10
    margin_fraction: float = 0.0
    min_size: int = 16
    channels: int = 1
    keep_aspect: bool = False
    pad_mode: str = "constant"
    fill: float = 0.0
    normalise: bool = True
    spatial_dims: int = 2
    slices: int | None = None

    def __post_init__(self) -> None:
        for name, low in (("size", 4), ("margin", 0), ("min_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"The '{name}' parameter of RoiSpec must be an int >= {low}. Got {value!r} instead.")
        if isinstance(self.margin_fraction, bool) or not 0.0 <= float(self.margin_fraction) <= 2.0:
            raise InputError(f"The 'margin_fraction' parameter of RoiSpec must be a number in [0, 2]. "
                             f"Got {self.margin_fraction!r} instead.")
        if self.channels not in (1, 3):
            raise InputError(f"The 'channels' parameter of RoiSpec must be 1 or 3. Got {self.channels!r} instead.")
        if self.pad_mode not in PAD_MODES:
            raise InputError(
                f"The 'pad_mode' parameter of RoiSpec must be one of {', '.join(map(repr, PAD_MODES))}. "
                f"Got {self.pad_mode!r} instead.{nearest(self.pad_mode, PAD_MODES)}"
            )
        _dims(self.spatial_dims, "RoiSpec")
        self._check_slices()

    def _check_slices(self) -> None:
        k = self.slices
        if k is None:
            return
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
            raise InputError(f"The 'slices' parameter of RoiSpec must be an odd int >= 1 (k slices centred on the "
                             f"lesion's centre slice) or None. Got {k!r} instead.")
        if self.spatial_dims != 2:
            raise InputError(f"The 'slices' parameter of RoiSpec makes 2D inputs (slices as channels) and needs "
                             f"spatial_dims=2. Got spatial_dims={self.spatial_dims!r} instead.")
        if self.channels != 1:
            raise InputError(f"The 'slices' parameter of RoiSpec takes grey volumes (the slices are the channels) and "
                             f"needs channels=1. Got channels={self.channels!r} instead.")

    @property
    def in_channels(self) -> int:
        """Channels of one prepared ROI: ``slices`` for a 2.5D input, else ``channels``."""
        return int(self.slices) if self.slices is not None else self.channels

    @property
    def image_dims(self) -> int:
        """Spatial dimensions of the images it reads: 3 (volumes) for a 2.5D input, else ``spatial_dims``."""
        return 3 if self.slices is not None else self.spatial_dims

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one prepared ROI: ``(channels, size, size[, size])``, ``(slices, size, size)`` for 2.5D."""
        return (self.in_channels,) + (self.size,) * self.spatial_dims

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoiSpec:
        """Inverse of :meth:`to_dict`; unknown keys are refused with the allowed ones (no ``spatial_dims``: 2D)."""
        allowed = set(cls.__dataclass_fields__)
        bad = sorted(set(data) - allowed)
        if bad:
            raise InputError(f"Unknown RoiSpec key(s) {bad}. Allowed: {sorted(allowed)}.")
        return cls(**data)


def _dims(spatial_dims: Any, owner: str) -> int:
    if isinstance(spatial_dims, bool) or spatial_dims not in SPATIAL_DIMS:
        raise InputError(f"The 'spatial_dims' parameter of {owner} must be 2 (images) or 3 (volumes). "
                         f"Got {spatial_dims!r} instead.")
    return int(spatial_dims)


def _size_text(shape: Sequence[int]) -> str:
    """``120x100`` (width x height[ x depth]) of an array shape in rows-first order."""
    return "x".join(str(int(v)) for v in reversed(shape))


def _to_box(lo: Sequence[int], hi: Sequence[int]) -> Box:
    """Array-order corners ``(z, y, x)`` -> ``(x0, y0[, z0], x1, y1[, z1])``."""
    return tuple(int(v) for v in lo[::-1]) + tuple(int(v) for v in hi[::-1])


def _from_box(box: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(x0, y0[, z0], x1, y1[, z1])`` -> array-order lower and upper corners."""
    n = len(box) // 2
    return [int(v) for v in box[:n]][::-1], [int(v) for v in box[n:]][::-1]


def _mask_bounds(mask: np.ndarray) -> tuple[list[int], list[int]]:
    """Array-order half-open bounds of the non-zero elements of ``mask``."""
    where = np.nonzero(mask)
    if where[0].size == 0:
        raise InputError("Cannot take the bounding box of an empty mask.")
    return [int(w.min()) for w in where], [int(w.max()) + 1 for w in where]


def _bbox_bounds(bbox: Sequence[float], shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """Array-order half-open bounds of a box ``(x, y[, z], w, h[, d])``, at least one pixel wide."""
    n = len(shape)
    names = f"({', '.join(_AXES[:n])}, {', '.join(_EXTENTS[:n])})"
    if len(bbox) != 2 * n:
        raise InputError(f"Bounding box {list(bbox)} must have {2 * n} numbers {names} for a {n}D image.")
    values = [float(v) for v in bbox]
    start, extent = values[:n], values[n:]
    if not all(math.isfinite(v) for v in values) or min(extent) < 0:
        raise InputError(f"Bounding box {list(bbox)} {names} must be finite with {', '.join(_EXTENTS[:n])} >= 0.")
    lo = [math.floor(s) for s in start]
    hi = [max(math.ceil(s + e), low + 1) for s, e, low in zip(start, extent, lo)]
    size = shape[::-1]  # x, y[, z] order, as the box
    if any(h <= 0 for h in hi) or any(low >= s for low, s in zip(lo, size)):
        raise InputError(f"Bounding box {list(bbox)} {names} lies outside the {_size_text(shape)} image.")
    return lo[::-1], hi[::-1]


def roi_box(image_shape: tuple[int, ...], *, mask: np.ndarray | None = None,
            bbox: Sequence[float] | None = None, margin: int = 10, min_size: int = 16,
            square: bool = False, spatial_dims: int = 2, margin_fraction: float = 0.0) -> Box:
    """The crop box of a lesion: its bounding box widened by ``margin``.

    Parameters
    ----------
    image_shape : tuple of int
        ``(height, width[, channels])`` of an image or ``(depth, height, width[, channels])``
        of a volume.
    mask : ndarray of shape (height, width) or (depth, height, width), optional
        Lesion mask (non-zero = lesion). Takes precedence over ``bbox``.
    bbox : (x, y, w, h) or (x, y, z, w, h, d), optional
        Lesion box in pixels. With neither mask nor box the whole image is the ROI.
    margin : int, default=10
    min_size : int, default=16
        Each side is at least this long (grown around the centre).
    square : bool, default=False
        Grow the shorter sides to the longest one (around the centre): a square or a cube.
    spatial_dims : {2, 3}, default=2
    margin_fraction : float, default=0.0
        Further context on every side: this fraction of the lesion box's side along that axis
        (rounded to whole pixels).

    Returns
    -------
    (x0, y0, x1, y1) or (x0, y0, z0, x1, y1, z1)
        Half-open box; may extend beyond the image (the crop pads there).

    Raises
    ------
    InputError
        A mask of another size than the image, an empty mask, or a box without extent inside the image.

    Examples
    --------
    >>> roi_box((100, 100), bbox=(40, 50, 10, 20), margin=10)
    (30, 40, 60, 80)
    >>> roi_box((100, 100), bbox=(40, 50, 10, 20), margin=0, margin_fraction=0.5)
    (35, 40, 55, 80)
    >>> roi_box((100, 100), bbox=(0, 0, 2, 2), margin=0, min_size=8)
    (-3, -3, 5, 5)
    >>> roi_box((20, 100, 100), bbox=(40, 50, 5, 10, 20, 4), margin=2, min_size=1, spatial_dims=3)
    (38, 48, 3, 52, 72, 11)
    """
    n = _dims(spatial_dims, "roi_box")
    shape = tuple(int(v) for v in image_shape[:n])
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape[:n] != shape:
            raise InputError(f"The mask has size {mask.shape[:n][::-1]} but the image has size {shape[::-1]}.")
        lo, hi = _mask_bounds(mask if mask.ndim == n else mask[..., 0])
    elif bbox is not None:
        lo, hi = _bbox_bounds(bbox, shape)
    else:
        return _to_box([0] * n, shape)
    extra = [margin + int(margin_fraction * (h - low) + 0.5) for low, h in zip(lo, hi)]
    lo, hi = [v - e for v, e in zip(lo, extra)], [v + e for v, e in zip(hi, extra)]
    want = [max(h - low, min_size) for low, h in zip(lo, hi)]
    if square:
        want = [max(want)] * n
    grown = [_grow(low, h, w) for low, h, w in zip(lo, hi, want)]
    return _to_box([g[0] for g in grown], [g[1] for g in grown])


def _grow(lo: int, hi: int, length: int) -> tuple[int, int]:
    """Widen ``[lo, hi)`` to ``length`` around its centre (the extra pixel goes after)."""
    extra = length - (hi - lo)
    if extra <= 0:
        return lo, hi
    return lo - extra // 2, hi + extra - extra // 2


def centre_slice(image_shape: tuple[int, ...], *, mask: np.ndarray | None = None,
                 bbox: Sequence[float] | None = None) -> int:
    """The lesion's centre slice in a volume: the centre of a 2.5D input's slices.

    Parameters
    ----------
    image_shape : tuple of int
        ``(depth, height, width[, channels])``.
    mask : ndarray of shape (depth, height, width), optional
        The slice of largest lesion area (the lesion's largest cross-section, where its size is
        measured); ties go to the slice nearest the middle of the lesion's slices, then to the
        lower one. Takes precedence over ``bbox``.
    bbox : (x, y, z, w, h, d), optional
        A box has no areas: its middle slice, ``z + (d - 1) // 2`` (the largest cross-section of
        a lesion symmetric along z).

    Returns
    -------
    int
        Slice index (the volume's middle slice when neither is given).

    Examples
    --------
    >>> m = np.zeros((9, 4, 4), bool); m[2:7, 1, 1] = True; m[5, 2, 2] = True
    >>> centre_slice(m.shape, mask=m), centre_slice(m.shape, bbox=(1, 1, 2, 2, 2, 5))
    (5, 4)
    """
    shape = tuple(int(v) for v in image_shape[:3])
    if len(shape) != 3:
        raise InputError(f"centre_slice needs a volume (depth, height, width); got shape {tuple(image_shape)}.")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape[:3] != shape:
            raise InputError(f"The mask has size {m.shape[:3][::-1]} but the image has size {shape[::-1]}.")
        areas = (m if m.ndim == 3 else m[..., 0]).reshape(shape[0], -1).astype(bool).sum(axis=1)
        if not areas.any():
            raise InputError("Cannot take the centre slice of an empty mask.")
        lesion = np.flatnonzero(areas)
        middle = (lesion[0] + lesion[-1]) / 2
        largest = np.flatnonzero(areas == areas.max())
        return int(min(largest, key=lambda z: (abs(z - middle), z)))
    if bbox is not None:
        lo, hi = _bbox_bounds(bbox, shape)
        return (lo[0] + hi[0] - 1) // 2
    return (shape[0] - 1) // 2


def slice_stack_box(image_shape: tuple[int, ...], *, mask: np.ndarray | None = None,
                    bbox: Sequence[float] | None = None, spec: RoiSpec) -> Box:
    """The crop box ``(x0, y0, z0, x1, y1, z1)`` of a 2.5D input (``spec.slices`` slices as channels).

    In plane: the lesion's bounding rectangle over all its slices, widened as a 2D crop
    (:func:`roi_box` with the spec's margin, ``margin_fraction``, ``min_size`` and ``keep_aspect``);
    along z: the ``spec.slices`` slices centred on :func:`centre_slice`, which may pass the
    volume's ends (the crop pads there).

    Examples
    --------
    >>> slice_stack_box((8, 24, 24), bbox=(5, 6, 0, 10, 8, 2), spec=RoiSpec(margin=1, min_size=1, slices=3))
    (4, 5, -1, 16, 15, 2)
    """
    if spec.slices is None:
        raise InputError("slice_stack_box needs a RoiSpec with slices (a 2.5D input).")
    shape = tuple(int(v) for v in image_shape[:3])
    if len(shape) != 3:
        raise InputError(f"A 2.5D input (slices={spec.slices}) is cut from a volume (depth, height, width); "
                         f"got an image of shape {tuple(image_shape)}.")
    options: dict[str, Any] = {"margin": spec.margin, "min_size": spec.min_size, "square": spec.keep_aspect,
                               "margin_fraction": spec.margin_fraction}
    if mask is not None:
        m = np.asarray(mask)
        if m.shape[:3] != shape:
            raise InputError(f"The mask has size {m.shape[:3][::-1]} but the image has size {shape[::-1]}.")
        m = (m if m.ndim == 3 else m[..., 0]).astype(bool)
        plane = roi_box(shape[1:], mask=m.any(axis=0), **options)
        z = centre_slice(shape, mask=m)
    elif bbox is not None:
        lo, hi = _bbox_bounds(bbox, shape)
        plane = roi_box(shape[1:], bbox=(lo[2], lo[1], hi[2] - lo[2], hi[1] - lo[1]), **options)
        z = centre_slice(shape, bbox=bbox)
    else:
        plane = roi_box(shape[1:], **options)
        z = centre_slice(shape)
    half = int(spec.slices) // 2
    return (plane[0], plane[1], z - half, plane[2], plane[3], z + half + 1)


def crop_box(image: np.ndarray, box: Box, *, pad_mode: str = "constant", fill: float = 0.0) -> np.ndarray:
    """Cut ``box`` out of ``image``, padding where the box leaves the image.

    Parameters
    ----------
    image : ndarray of shape (height, width[, channels]) or (depth, height, width[, channels])
    box : (x0, y0, x1, y1) or (x0, y0, z0, x1, y1, z1)
        Its length says whether ``image`` is an image or a volume.
    pad_mode : {"constant", "edge", "reflect"}
    fill : float
        Value used by ``"constant"``.

    Returns
    -------
    ndarray of shape (y1 - y0, x1 - x0[, channels]) or (z1 - z0, y1 - y0, x1 - x0[, channels])
        Same dtype as ``image`` (float32 when padding with a non-integer fill).
    """
    if pad_mode not in PAD_MODES:
        raise InputError(f"pad_mode must be one of {PAD_MODES}. Got {pad_mode!r}.{nearest(pad_mode, PAD_MODES)}")
    if len(box) not in (4, 6):
        raise InputError(f"Crop box {box} must be (x0, y0, x1, y1) or (x0, y0, z0, x1, y1, z1).")
    n = len(box) // 2
    if image.ndim not in (n, n + 1):
        what = "2D image (height, width[, channels])" if n == 2 else "3D volume (depth, height, width[, channels])"
        raise InputError(f"A {what} is needed; got an array of shape {image.shape}.")
    lo, hi = _from_box(box)
    names = f"({', '.join(f'{a}0' for a in _AXES[:n])}, {', '.join(f'{a}1' for a in _AXES[:n])})"
    if any(h <= low for low, h in zip(lo, hi)):
        raise InputError(f"Crop box {box} {names} has no {'area' if n == 2 else 'volume'}.")
    shape = image.shape[:n]
    clo = [max(low, 0) for low in lo]
    chi = [min(h, s) for h, s in zip(hi, shape)]
    if any(h <= low for low, h in zip(clo, chi)):
        raise InputError(f"Crop box {box} {names} lies outside the {_size_text(shape)} image.")
    inner = image[tuple(slice(low, h) for low, h in zip(clo, chi))]
    pads = [(c - low, h - ch) for low, h, c, ch in zip(lo, hi, clo, chi)] + [(0, 0)] * (image.ndim - n)
    if not any(p for pair in pads for p in pair):
        return inner.copy()
    mode = pad_mode
    if mode == "reflect" and min(inner.shape[:n]) < 2:
        mode = "edge"  # nothing to mirror in a one-pixel strip
    if mode == "constant":
        if not float(fill).is_integer() and inner.dtype.kind in "iub":
            inner = inner.astype(np.float32)
        return np.pad(inner, pads, mode="constant", constant_values=fill)
    return np.pad(inner, pads, mode=mode)


def resize_image(image: np.ndarray, size: int | Sequence[int], *, spatial_dims: int = 2) -> np.ndarray:
    """Linear resize of a channel-first array, antialiased when shrinking.

    Parameters
    ----------
    image : ndarray of shape (C, H, W) or (H, W); (C, D, H, W) or (D, H, W) with ``spatial_dims=3``
    size : int or sequence of int
        Output side (every axis) or one side per spatial axis.
    spatial_dims : {2, 3}, default=2
        Bilinear (antialiased by torch) or trilinear (antialiased by MONAI's Gaussian
        smoothing, as ``monai.transforms.Resize(anti_aliasing=True)``).

    Returns
    -------
    ndarray, float32
        ``(C, *size)`` (or ``size`` without channel axis).
    """
    n = _dims(spatial_dims, "resize_image")
    out_shape = (int(size),) * n if np.isscalar(size) else tuple(int(s) for s in size)[:n]  # type: ignore[union-attr]
    arr = np.asarray(image, dtype=np.float32)
    squeeze = arr.ndim == n
    if n == 3:
        return _resize_volume(arr[None] if squeeze else arr, out_shape, squeeze)
    tensor = torch.from_numpy(np.ascontiguousarray(arr[None] if squeeze else arr))[None]
    if tuple(tensor.shape[-2:]) != out_shape:
        shrink = tensor.shape[-2] > out_shape[0] or tensor.shape[-1] > out_shape[1]
        tensor = F.interpolate(tensor, size=out_shape, mode="bilinear", align_corners=False, antialias=shrink)
    out = tensor[0].numpy()
    return out[0] if squeeze else out


def _resize_volume(arr: np.ndarray, out_shape: tuple[int, ...], squeeze: bool) -> np.ndarray:
    """Trilinear resize of ``(C, D, H, W)`` with MONAI (torch antialiases only bilinear 2D)."""
    if tuple(arr.shape[1:]) == out_shape:
        out = arr
    else:
        from monai.data.meta_obj import get_track_meta, set_track_meta
        from monai.transforms import Resize

        shrink = any(a > b for a, b in zip(arr.shape[1:], out_shape))
        tracking = get_track_meta()
        set_track_meta(False)
        try:
            resized = Resize(out_shape, mode="trilinear", align_corners=False, anti_aliasing=shrink)(
                torch.from_numpy(np.ascontiguousarray(arr)))
        finally:
            set_track_meta(tracking)
        out = np.asarray(torch.as_tensor(resized), dtype=np.float32)
    return out[0] if squeeze else out


def zscore(image: np.ndarray, *, eps: float = 1e-6) -> np.ndarray:
    """``(image - mean) / std`` over all pixels and channels of one image; a flat image becomes zeros."""
    arr = np.asarray(image, dtype=np.float32)
    std = float(arr.std())
    return ((arr - float(arr.mean())) / (std if std > eps else 1.0)).astype(np.float32)


def to_channels(image: np.ndarray, channels: int, *, spatial_dims: int = 2) -> np.ndarray:
    """An image (or volume) as channel-first float32 with ``channels`` (1 or 3) channels.

    ``image`` is ``(H, W)`` or ``(H, W, C)``; ``(D, H, W)`` or ``(D, H, W, C)`` with
    ``spatial_dims=3``. Colour becomes grey with the ITU-R BT.601 luma weights for 1 channel;
    grey is replicated for 3; an alpha channel is dropped.
    """
    n = _dims(spatial_dims, "to_channels")
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == n:
        grey = arr[None]
        return grey if channels == 1 else np.repeat(grey, 3, axis=0)
    if arr.ndim != n + 1 or arr.shape[n] not in (1, 2, 3, 4):
        shapes = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4)" if n == 2 else "(D, H, W) or (D, H, W, C<=4)"
        raise InputError(f"An image of shape {shapes} is needed; got {arr.shape}.")
    if arr.shape[n] in (1, 2):
        return to_channels(arr[..., 0], channels, spatial_dims=n)
    rgb = arr[..., :3]
    if channels == 3:
        return np.moveaxis(rgb, -1, 0).copy()
    weights = np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    return (rgb @ weights)[None]


def crop_roi(image: np.ndarray, *, mask: np.ndarray | None = None, bbox: Sequence[float] | None = None,
             spec: RoiSpec | None = None) -> np.ndarray:
    """The padded crop of the lesion (margin, minimum size, square / cube when ``keep_aspect``), not resized.

    With ``spec.slices`` the image is a volume and the crop its ``slices`` slices around the
    lesion's centre slice (:func:`slice_stack_box`).

    Returns
    -------
    ndarray of shape (h, w[, channels]) or (d, h, w[, channels]), the image's dtype
        ``(slices, h, w[, channels])`` for a 2.5D spec.
    """
    spec = spec or RoiSpec()
    image = np.asarray(image)
    if spec.slices is not None:
        if image.ndim not in (3, 4):
            raise InputError(f"A 2.5D input (slices={spec.slices}) is cut from a volume (depth, height, width); "
                             f"got an image of shape {image.shape}.")
        box = slice_stack_box(image.shape, mask=mask, bbox=bbox, spec=spec)
    else:
        box = roi_box(image.shape, mask=mask, bbox=bbox, margin=spec.margin, min_size=spec.min_size,
                      square=spec.keep_aspect, spatial_dims=spec.spatial_dims, margin_fraction=spec.margin_fraction)
    return crop_box(image, box, pad_mode=spec.pad_mode, fill=spec.fill)


def prepare_roi(image: np.ndarray, *, mask: np.ndarray | None = None, bbox: Sequence[float] | None = None,
                spec: RoiSpec | None = None) -> np.ndarray:
    """One network input: crop (see :func:`crop_roi`), channels, linear resize, z-score.

    With ``spec.slices`` (2.5D) the crop's slices become the channels, each resized in plane, and
    the z-score is taken over all of them together.

    Parameters
    ----------
    image : ndarray of shape (height, width[, channels]), or (depth, height, width) for a 3D or 2.5D spec
    mask : ndarray of the image's spatial shape, optional
    bbox : (x, y, w, h) or (x, y, z, w, h, d), optional
    spec : RoiSpec, default=RoiSpec()

    Returns
    -------
    ndarray of shape ``spec.shape``: (spec.channels, spec.size, spec.size[, spec.size]), float32;
        (spec.slices, spec.size, spec.size) for a 2.5D spec

    Examples
    --------
    >>> img = np.arange(100 * 120, dtype=np.uint8).reshape(100, 120)
    >>> prepare_roi(img, bbox=(0, 0, 30, 20), spec=RoiSpec(size=32)).shape
    (1, 32, 32)
    >>> vol = np.random.default_rng(0).normal(size=(20, 40, 40))
    >>> prepare_roi(vol, bbox=(5, 5, 5, 10, 10, 4), spec=RoiSpec(size=16, spatial_dims=3)).shape
    (1, 16, 16, 16)
    >>> prepare_roi(vol, bbox=(5, 5, 5, 10, 10, 4), spec=RoiSpec(size=16, slices=5)).shape
    (5, 16, 16)
    """
    spec = spec or RoiSpec()
    crop = crop_roi(image, mask=mask, bbox=bbox, spec=spec)
    n = spec.spatial_dims
    if spec.slices is not None:
        out = resize_image(to_channels(crop, 1, spatial_dims=3)[0], spec.size, spatial_dims=2)
    else:
        out = resize_image(to_channels(crop, spec.channels, spatial_dims=n), spec.size, spatial_dims=n)
    return zscore(out) if spec.normalise else out


def load_roi(image: PathLike, *, mask: PathLike | np.ndarray | None = None, bbox: Sequence[float] | None = None,
             spec: RoiSpec | None = None) -> np.ndarray:
    """Read an image or volume file (grey, see :func:`her2dlr.io.images.read_image`) and prepare its ROI.

    Parameters
    ----------
    image : path
        2D image file (PNG, JPEG, TIFF, BMP, single-frame DICOM), or with a 3D or 2.5D ``spec``
        a volume (NIfTI, NRRD, MHA, a DICOM series folder).
    mask : path or ndarray, optional
        Lesion mask file (or array) of the image's size.
    bbox : (x, y, w, h) or (x, y, z, w, h, d), optional
    spec : RoiSpec

    Returns
    -------
    ndarray of shape ``spec.shape``, float32

    Raises
    ------
    InputError
        Unreadable files, an image of another dimensionality than ``spec.spatial_dims``, a mask
        of another size, an empty mask; the message names the file.
    """
    import SimpleITK as sitk

    from her2dlr.io.images import read_image, read_mask_array

    spec = spec or RoiSpec()
    img = read_image(image)
    if img.GetDimension() != spec.image_dims:
        if spec.slices is not None:
            raise InputError(f"{image} is a {img.GetDimension()}D image; slices={spec.slices} (deep.slices) stacks "
                             "slices of a volume (NIfTI, NRRD, MHA, a DICOM series folder) as channels.")
        if spec.spatial_dims == 2:
            raise InputError(f"{image} is a {img.GetDimension()}D volume; the networks take 2D images "
                             "(choose a slice or frame first, or set spatial_dims: 3).")
        raise InputError(f"{image} is a {img.GetDimension()}D image; spatial_dims=3 takes volumes (NIfTI, NRRD, "
                         "MHA, a DICOM series folder).")
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
