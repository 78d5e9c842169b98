"""Segmentation inputs and targets: whole image or box-prompted crop, resized to a square or cube.

Two ways to show the network an image (:class:`SegSpec`):

* unprompted (``box_prompt=False``): the whole image, resized to ``size`` along every axis;
* box-prompted (``box_prompt=True``): the user's box around the lesion, widened by
  ``box_margin`` times its own extent on each side, cropped (padded with 0 where it leaves the
  image), resized, plus one more input channel that is 1 inside the user's box and 0 elsewhere.

Image channels are z-scored per image; the prompt channel is not. Arrays are rows first
(``image[y, x]``, ``volume[z, y, x]``), user boxes are ``(x, y, w, h)`` / ``(x, y, z, w, h, d)``
and crop boxes half-open corners ``(x0, y0, x1, y1)`` / ``(x0, y0, z0, x1, y1, z1)``, as in
:mod:`her2dlr.imaging.roi`, whose crop, box and resize functions do the work here.
:func:`paste_back` maps a network output back onto the full image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from her2dlr.checks import check_number, param_error
from her2dlr.errors import InputError
from her2dlr.imaging.roi import Box, crop_box, resize_image, roi_box, to_channels, zscore

__all__ = [
    "SegSpec",
    "load_seg_pairs",
    "mask_box",
    "paste_back",
    "prepare_seg_input",
    "prepare_seg_target",
    "read_array",
    "write_mask",
]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class SegSpec:
    """How an image becomes a segmentation network input.

    Parameters
    ----------
    size : int, default=128
        Side of the network input along every axis (volumes become cubes).
    spatial_dims : {2, 3}, default=2
        Images ``(y, x)`` or volumes ``(z, y, x)``.
    box_prompt : bool, default=False
        Crop around a user box and add the box as an input channel.
    box_margin : float, default=0.25
        Context added on each side of the box, as a fraction of the box's extent on that axis.
    channels : {1, 3}, default=1
        Image channels (grey, or colour kept / grey replicated).
    """

    size: int = 128
    spatial_dims: int = 2
    box_prompt: bool = False
    box_margin: float = 0.25
    channels: int = 1

    def __post_init__(self) -> None:
        check_number(self, "size", self.size, low=8, integer=True)
        if isinstance(self.spatial_dims, bool) or self.spatial_dims not in (2, 3):
            raise param_error(self, "spatial_dims", "2 (images) or 3 (volumes)", self.spatial_dims)
        if not isinstance(self.box_prompt, (bool, np.bool_)):
            raise param_error(self, "box_prompt", "True or False", self.box_prompt)
        check_number(self, "box_margin", self.box_margin, low=0.0, high=10.0)
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise param_error(self, "channels", "1 or 3", self.channels)

    @property
    def in_channels(self) -> int:
        """Network input channels: the image channels, plus one for the box prompt."""
        return self.channels + int(bool(self.box_prompt))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one prepared input: ``(in_channels, size, size[, size])``."""
        return (self.in_channels,) + (self.size,) * self.spatial_dims

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegSpec:
        """Inverse of :meth:`to_dict`; unknown keys are refused with the allowed ones."""
        bad = sorted(set(data) - set(cls.__dataclass_fields__))
        if bad:
            raise InputError(f"Unknown SegSpec key(s) {bad}. Allowed: {sorted(cls.__dataclass_fields__)}.")
        return cls(**data)


def _image_dims(image: np.ndarray, spec: SegSpec) -> None:
    n = spec.spatial_dims
    if not (image.ndim == n or (image.ndim == n + 1 and image.shape[-1] in (1, 2, 3, 4))):
        want = "2D images (H, W) or (H, W, C)" if n == 2 else "3D volumes (D, H, W)"
        got = f"a {image.ndim}D array of shape {image.shape}"
        raise InputError(f"A {n}D segmentation network takes {want}; got {got}.")


def _crop_of(image_shape: tuple[int, ...], box: Sequence[float] | None, spec: SegSpec) -> tuple[Box, Box | None]:
    """The crop box and, with a prompt, the user's box as a crop box (half-open, at least one pixel)."""
    n = spec.spatial_dims
    shape = tuple(int(v) for v in image_shape[:n])
    if not spec.box_prompt:
        return roi_box(shape, spatial_dims=n), None
    if box is None:
        raise InputError("A box-prompted segmentation spec needs a box (x, y, w, h) or (x, y, z, w, h, d) per image.")
    user = roi_box(shape, bbox=box, margin=0, min_size=1, spatial_dims=n)
    lo, hi = user[:n], user[n:]
    pad = [math.ceil(spec.box_margin * (h - low)) for low, h in zip(lo, hi)]
    crop = tuple(low - p for low, p in zip(lo, pad)) + tuple(h + p for h, p in zip(hi, pad))
    return crop, user


def _prompt_channel(user: Box, crop: Box, size: int) -> np.ndarray:
    """1 inside the user's box on the resized grid of ``crop``, 0 elsewhere."""
    n = len(crop) // 2
    out = np.zeros((size,) * n, dtype=np.float32)
    index = []
    for axis in reversed(range(n)):  # array order: z, y, x
        extent = crop[axis + n] - crop[axis]
        a = math.floor((user[axis] - crop[axis]) * size / extent)
        b = math.ceil((user[axis + n] - crop[axis]) * size / extent)
        index.append(slice(max(a, 0), max(min(b, size), a + 1)))
    out[tuple(index)] = 1.0
    return out


def prepare_seg_input(image: np.ndarray, *, box: Sequence[float] | None = None,
                      spec: SegSpec) -> tuple[np.ndarray, Box]:
    """One network input and the crop it was made from.

    Parameters
    ----------
    image : ndarray of shape (H, W), (H, W, C) or, with a 3D spec, (D, H, W)
    box : (x, y, w, h) or (x, y, z, w, h, d), optional
        The user's lesion box; needed (and only used) with ``spec.box_prompt``.
    spec : SegSpec

    Returns
    -------
    x : ndarray of shape ``spec.shape``, float32
        Image channels z-scored, then the prompt channel (box prompt only).
    crop : Box
        The part of the image the input shows (the whole image when unprompted).

    Raises
    ------
    InputError
        An image of another dimensionality than the spec, a missing box, a box outside the image.

    Examples
    --------
    >>> x, crop = prepare_seg_input(np.zeros((40, 60)), box=(20, 10, 20, 20), spec=SegSpec(size=16, box_prompt=True))
    >>> x.shape, crop
    ((2, 16, 16), (15, 5, 45, 35))
    """
    image = np.asarray(image)
    _image_dims(image, spec)
    n = spec.spatial_dims
    crop, user = _crop_of(image.shape, box, spec)
    patch = crop_box(image, crop, pad_mode="constant", fill=0.0)
    x = zscore(resize_image(to_channels(patch, spec.channels, spatial_dims=n), spec.size, spatial_dims=n))
    if user is not None:
        x = np.concatenate([x, _prompt_channel(user, crop, spec.size)[None]], axis=0)
    return x.astype(np.float32, copy=False), crop


def prepare_seg_target(mask: np.ndarray, crop: Box, spec: SegSpec) -> np.ndarray:
    """The lesion mask on the network's grid: crop, linear resize, threshold at 0.5.

    Parameters
    ----------
    mask : ndarray of the image's spatial shape
        Non-zero is lesion.
    crop : Box
        From :func:`prepare_seg_input`.
    spec : SegSpec

    Returns
    -------
    ndarray of shape (size,) * spatial_dims, uint8 of 0 and 1
    """
    patch = crop_box((np.asarray(mask) > 0).astype(np.float32), crop, pad_mode="constant", fill=0.0)
    return (resize_image(patch, spec.size, spatial_dims=spec.spatial_dims) >= 0.5).astype(np.uint8)


def paste_back(prob: np.ndarray, crop: Box, image_shape: Sequence[int]) -> np.ndarray:
    """A network output ``(size, ...)`` resized onto its crop of the full image; 0 outside the crop.

    Parameters
    ----------
    prob : ndarray of shape (size,) * spatial_dims
        Lesion probability on the network's grid.
    crop : Box
        From :func:`prepare_seg_input`; may reach beyond the image.
    image_shape : sequence of int
        ``(H, W[, C])`` or ``(D, H, W)``: the full image.

    Returns
    -------
    ndarray of shape image_shape[:spatial_dims], float32
    """
    n = len(crop) // 2
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != n:
        raise InputError(f"paste_back: a {n}D crop box {crop} needs a {n}D probability map; got shape {prob.shape}.")
    shape = tuple(int(v) for v in image_shape[:n])
    lo, hi = list(crop[:n])[::-1], list(crop[n:])[::-1]  # array order
    resized = resize_image(prob, [h - low for low, h in zip(lo, hi)], spatial_dims=n)
    out = np.zeros(shape, dtype=np.float32)
    dst = tuple(slice(max(low, 0), min(h, s)) for low, h, s in zip(lo, hi, shape))
    src = tuple(slice(d.start - low, d.stop - low) for d, low in zip(dst, lo))
    if all(d.stop > d.start for d in dst):
        out[dst] = np.clip(resized[src], 0.0, 1.0)
    return out


def read_array(item: PathLike | np.ndarray, *, mask: bool = False) -> np.ndarray:
    """An image (grey, via :func:`her2dlr.io.images.read_image`) or a mask file as an array; arrays pass through."""
    if isinstance(item, np.ndarray):
        return item
    import SimpleITK as sitk

    from her2dlr.io.images import read_image, read_mask_array

    return read_mask_array(item) if mask else sitk.GetArrayFromImage(read_image(item))


def _name(item: Any, index: int, what: str) -> str:
    return str(item) if not isinstance(item, np.ndarray) else f"{what} #{index}"


def _pair(image: Any, mask: Any, box: Sequence[float] | None, index: int,
          spec: SegSpec) -> tuple[np.ndarray, np.ndarray, Box]:
    img = read_array(image)
    if not isinstance(image, np.ndarray) and img.ndim != spec.spatial_dims:
        raise InputError(f"{image} is {img.ndim}D; this segmentation spec takes {spec.spatial_dims}D "
                         f"{'images' if spec.spatial_dims == 2 else 'volumes'} (segment.spatial_dims: "
                         f"{img.ndim if img.ndim in (2, 3) else spec.spatial_dims} for these; a 2D network is not "
                         "run slice by slice on volumes).")
    msk = read_array(mask, mask=True)
    shape = img.shape[:spec.spatial_dims]
    if msk.shape[:spec.spatial_dims] != shape or msk.ndim != spec.spatial_dims:
        raise InputError(f"mask {_name(mask, index, 'mask')} has size {tuple(msk.shape[:spec.spatial_dims])[::-1]} "
                         f"but image {_name(image, index, 'image')} has size {tuple(shape)[::-1]}.")
    if spec.box_prompt and box is None:
        if not (msk > 0).any():
            raise InputError(f"mask {_name(mask, index, 'mask')} is empty and no box was given: a box-prompted "
                             "network needs a box per image.")
        box = mask_box(msk)
    try:
        x, crop = prepare_seg_input(img, box=box, spec=spec)
    except InputError as exc:
        raise InputError(f"image {_name(image, index, 'image')}: {exc}") from None
    return x, prepare_seg_target(msk, crop, spec), crop


def mask_box(mask: np.ndarray) -> tuple[int, ...]:
    """User box ``(x, y[, z], w, h[, d])`` of the mask's bounding rectangle."""
    where = np.nonzero(mask)
    lo = [int(w.min()) for w in where][::-1]
    hi = [int(w.max()) + 1 for w in where][::-1]
    return tuple(lo) + tuple(h - low for low, h in zip(lo, hi))


def load_seg_pairs(images: Sequence[PathLike | np.ndarray], masks: Sequence[PathLike | np.ndarray],
                   boxes: Sequence[Sequence[float] | None] | None = None, *, spec: SegSpec, n_jobs: int = 1,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[Box]]:
    """Network inputs and targets of image / mask pairs.

    Parameters
    ----------
    images : sequence of path or ndarray
        Image files (colour becomes grey) or arrays; volume files (NIfTI, NRRD, MHA, DICOM
        series folder) or ``(D, H, W)`` arrays with a 3D spec.
    masks : sequence of path or ndarray
        One lesion mask per image, of its size; may be empty (no lesion).
    boxes : sequence of (x, y, w, h) or (x, y, z, w, h, d) or None, optional
        User boxes, used by a box-prompted spec only; where absent, the bounding box of the mask.
    spec : SegSpec
    n_jobs : int, default=1
        Threads reading files.
    progress : bool, default=True

    Returns
    -------
    X : ndarray of shape (n, *spec.shape), float32
    Y : ndarray of shape (n, size, size[, size]), uint8 of 0 and 1
    crops : list of Box

    Raises
    ------
    InputError
        Unreadable files, a mask of another size (naming the file), a box outside its image,
        counts that differ.
    """
    n = len(images)
    if len(masks) != n or (boxes is not None and len(boxes) != n):
        raise InputError(f"Got {n} images, {len(masks)} masks and {len(boxes) if boxes is not None else n} boxes: "
                         "give one mask (and box) per image.")
    box_list = list(boxes) if boxes is not None else [None] * n

    def job(i: int) -> tuple[np.ndarray, np.ndarray, Box]:
        return _pair(images[i], masks[i], box_list[i], i, spec)

    if n_jobs == 1 or n < 8:
        it: Any = range(n)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, desc="segmentation inputs", unit="image", leave=False)
        out = [job(i) for i in it]
    else:
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=n_jobs, prefer="threads", verbose=5 if progress else 0)(
            delayed(job)(i) for i in range(n))
    if not out:
        return np.zeros((0, *spec.shape), np.float32), np.zeros((0,) + (spec.size,) * spec.spatial_dims, np.uint8), []
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), [o[2] for o in out]


def write_mask(mask: np.ndarray, image: PathLike, path: str | os.PathLike[str]) -> Path:
    """Write a 2D mask as PNG (0/255), a volume as NRRD with the geometry of ``image``; atomically."""
    import SimpleITK as sitk

    from her2dlr.io.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if mask.ndim == 2:
            from PIL import Image

            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp, format="PNG")
        else:
            from her2dlr.io.images import read_image

            out = sitk.GetImageFromArray(mask.astype(np.uint8))
            out.CopyInformation(read_image(image))
            sitk.WriteImage(out, str(tmp), useCompression=True, imageIO="NrrdImageIO")
    return path
