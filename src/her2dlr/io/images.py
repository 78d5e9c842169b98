"""Image, mask and volume readers built on SimpleITK.

2D files (PNG, JPEG, TIFF, BMP, single-frame DICOM) come back as 2D ``SimpleITK.Image``;
NIfTI, NRRD, MHA and DICOM series folders come back as 3D. Colour images (RGB, RGBA) are
converted to grey with the ITU-R BT.601 luma weights, because PyRadiomics and most
networks expect one channel; the alpha channel is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from her2dlr.errors import InputError

PathLike = str | os.PathLike[str]

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights used to turn RGB into grey."""

ALLOWED_MASK_VALUES = frozenset({0, 1, 255})


def sitk_file_name(path: PathLike) -> str:
    """The path as SimpleITK takes it; refuses a name that is not valid UTF-8, which would abort the process there.

    Raises
    ------
    InputError
        The name holds bytes that are not UTF-8 (e.g. a Latin-1 file name); the message shows it.
    """
    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"The file name {os.fsencode(name)!r} is not valid UTF-8, which the image readers cannot "
                         "open. Rename the file (e.g. `convmv -f latin1 -t utf8 --notest FILE`).") from None
    return name


def _read_any(path: Path) -> sitk.Image:
    name = sitk_file_name(path)
    if not path.exists():
        raise InputError(f"File not found: {path}")
    try:
        if path.is_dir():
            for entry in path.iterdir():
                sitk_file_name(entry)
            reader = sitk.ImageSeriesReader()
            files = reader.GetGDCMSeriesFileNames(name)
            if not files:
                raise InputError(f"Folder {path} holds no DICOM series.")
            reader.SetFileNames(files)
            return reader.Execute()
        return sitk.ReadImage(name)
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Cannot read image {path}: {first_line}") from None


def _squeeze_single_slice(image: sitk.Image) -> sitk.Image:
    """A 3D image of one slice (single-frame DICOM) is returned as 2D."""
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        return image[:, :, 0]
    return image


def to_grey(image: sitk.Image) -> sitk.Image:
    """Return a scalar image: vector pixels (RGB/RGBA/grey+alpha) become luma grey (float32).

    A scalar image is returned unchanged. Spacing, origin and direction are kept.
    """
    n = image.GetNumberOfComponentsPerPixel()
    if n == 1:
        return image
    arr = sitk.GetArrayViewFromImage(image).astype(np.float32)
    if n in (3, 4):
        grey = arr[..., 0] * LUMA_WEIGHTS[0] + arr[..., 1] * LUMA_WEIGHTS[1] + arr[..., 2] * LUMA_WEIGHTS[2]
    elif n == 2:  # grey + alpha
        grey = arr[..., 0]
    else:
        raise InputError(f"Image with {n} channels per pixel cannot be turned into grey.")
    out = sitk.GetImageFromArray(grey)
    out.CopyInformation(image)
    return out


def read_image(path: PathLike, *, spacing: float | tuple[float, ...] | None = None) -> sitk.Image:
    """Read a 2D image or a 3D volume as a scalar (grey) ``SimpleITK.Image``.

    Parameters
    ----------
    path : path-like
        Image file, or a folder holding one DICOM series.
    spacing : float or tuple of float, optional
        Pixel spacing in mm to set when the file does not carry it (PNG and JPEG carry 1.0).

    Raises
    ------
    InputError
        When the file is missing or cannot be decoded; the message names the file.
    """
    return read_image_and_channels(path, spacing=spacing)[0]


def read_image_and_channels(
    path: PathLike, *, spacing: float | tuple[float, ...] | None = None
) -> tuple[sitk.Image, int]:
    """Read an image as :func:`read_image` does, and say how many channels the file had.

    Returns
    -------
    image : SimpleITK.Image
        The scalar (grey) image.
    channels : int
        Components per pixel in the file: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. Anything
        above 1 was converted to grey.
    """
    path = Path(path)
    raw = _squeeze_single_slice(_read_any(path))
    channels = raw.GetNumberOfComponentsPerPixel()
    image = to_grey(raw)
    if spacing is not None:
        values = (spacing,) * image.GetDimension() if np.isscalar(spacing) else tuple(spacing)
        if len(values) != image.GetDimension() or min(values) <= 0:
            raise InputError(f"Spacing {spacing!r} does not fit the {image.GetDimension()}D image {path}.")
        image.SetSpacing([float(v) for v in values])
    return image, channels


def read_mask_array(path: PathLike) -> np.ndarray:
    """Read a mask file as an integer array in (z,) y, x order, without any check.

    Colour masks are reduced to their first channel that is not constant.
    """
    path = Path(path)
    image = _squeeze_single_slice(_read_any(path))
    arr = sitk.GetArrayFromImage(image)
    if image.GetNumberOfComponentsPerPixel() > 1:
        channels = [arr[..., c] for c in range(min(arr.shape[-1], 3))]
        varying = [c for c in channels if c.min() != c.max()]
        arr = varying[0] if varying else channels[0]
    return arr


def mask_problems(mask: np.ndarray, image_shape: tuple[int, ...] | None, path: PathLike) -> list[str]:
    """List what is wrong with a mask array (empty list when it is usable).

    Checks: same size as the image, only the values 0/1/255, at least one foreground pixel.
    """
    return [message for _, message in check_mask(mask, image_shape, path)]


MASK_PROBLEM_CODES = ("mask_size", "mask_values", "mask_empty")
"""Codes returned by :func:`check_mask`, one per kind of problem."""


def check_mask(
    mask: np.ndarray, image_shape: tuple[int, ...] | None, path: PathLike
) -> list[tuple[str, str]]:
    """List what is wrong with a mask array as ``(code, message)`` pairs.

    Parameters
    ----------
    mask : ndarray of shape (height, width) or (depth, height, width)
        The mask as read by :func:`read_mask_array`.
    image_shape : tuple of int or None
        Shape of the image array in the same order, or None to skip the size check.
    path : path-like
        The mask file, named in the messages.

    Returns
    -------
    list of (str, str)
        ``code`` is one of :data:`MASK_PROBLEM_CODES`; empty list when the mask is usable.
    """
    problems = []
    if image_shape is not None and tuple(mask.shape) != tuple(image_shape):
        problems.append((
            "mask_size",
            f"mask {path} has size {tuple(mask.shape)[::-1]} but its image has size {tuple(image_shape)[::-1]}",
        ))
    values = set(np.unique(mask).tolist())
    extra = sorted(values - ALLOWED_MASK_VALUES)
    if extra:
        shown = ", ".join(str(v) for v in extra[:6]) + (" ..." if len(extra) > 6 else "")
        problems.append((
            "mask_values",
            f"mask {path} has values {shown}; a lesion mask may hold only 0 and 1 or 0 and 255",
        ))
    if not (mask > 0).any():
        problems.append(("mask_empty", f"mask {path} is empty (no lesion pixel)"))
    return problems


def read_mask(path: PathLike, reference: sitk.Image | None = None) -> sitk.Image:
    """Read a binary lesion mask as a ``sitk.sitkUInt8`` image of 0 and 1.

    When ``reference`` (the image) is given, the mask must have its size and takes its
    spacing, origin and direction.

    Raises
    ------
    InputError
        Missing or unreadable file, size mismatch, values other than 0/1/255, or an empty mask.
    """
    arr = read_mask_array(path)
    ref_shape = None if reference is None else sitk.GetArrayViewFromImage(reference).shape[: arr.ndim]
    if reference is not None and reference.GetDimension() != arr.ndim:
        raise InputError(
            f"mask {path} is {arr.ndim}D but its image is {reference.GetDimension()}D"
        )
    problems = mask_problems(arr, ref_shape, path)
    if problems:
        raise InputError("; ".join(problems) + ".")
    out = sitk.GetImageFromArray((arr > 0).astype(np.uint8))
    if reference is not None:
        out.CopyInformation(reference)
    return out


def bbox_mask(reference: sitk.Image, bbox: Sequence[float]) -> sitk.Image:
    """Box ROI mask on the image's grid: ``(x, y, w, h)`` for an image (seed 000), ``(x, y, z, w, h, d)`` for a volume.

    The box is in voxel indices, x fastest (as :func:`her2dlr.imaging.roi.roi_box` takes it),
    and is clipped to the image. The mask carries the image's spacing, origin and direction.

    Raises
    ------
    InputError
        A box of the other form than the image's dimension (the message says which is
        expected), or one without extent, or one wholly outside the image.
    """
    from her2dlr.io.cells import bbox_form

    ndim = reference.GetDimension()
    values = [float(v) for v in bbox]
    if ndim not in (2, 3) or len(values) != 2 * ndim:
        raise InputError(f"Bounding box {list(bbox)} has {len(values)} numbers; a {ndim}D "
                         f"{'image' if ndim == 2 else 'volume'} takes {bbox_form(ndim)}.")
    size = reference.GetSize()
    lo = [max(int(np.floor(v)), 0) for v in values[:ndim]]
    hi = [min(int(np.ceil(v + e)), n) for v, e, n in zip(values[:ndim], values[ndim:], size)]
    if min(values[ndim:]) <= 0 or any(h <= low for low, h in zip(lo, hi)):
        axes = "x, y, w, h" if ndim == 2 else "x, y, z, w, h, d"
        raise InputError(f"Bounding box {list(bbox)} ({axes}) has no {'area' if ndim == 2 else 'extent'} inside the "
                         f"{'x'.join(str(n) for n in size)} {'image' if ndim == 2 else 'volume'}.")
    arr = np.zeros(tuple(reversed(size)), dtype=np.uint8)
    arr[tuple(slice(low, h) for low, h in zip(reversed(lo), reversed(hi)))] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def mask_to_bbox(mask: np.ndarray) -> tuple[int, ...]:
    """Bounding box ``(x, y, w, h)`` of a 2D mask array's foreground, ``(x, y, z, w, h, d)`` of a 3D one."""
    where = np.nonzero(mask)
    if where[0].size == 0:
        raise InputError("Cannot take the bounding box of an empty mask.")
    lo = [int(w.min()) for w in reversed(where)]
    hi = [int(w.max()) + 1 for w in reversed(where)]
    return tuple(lo) + tuple(h - low for low, h in zip(lo, hi))


def geometry_differences(reference: sitk.Image, other: sitk.Image | sitk.ImageFileReader) -> list[str]:
    """How the grid of ``other`` differs from ``reference`` (empty when they match within a tenth of a voxel).

    Compares size, spacing (relative 1e-3), origin (a tenth of the smallest voxel side) and
    direction cosines (1e-3). ``other`` may be a reader that has read the file's header only.
    """
    out = []
    if reference.GetDimension() != other.GetDimension():
        return [f"{other.GetDimension()}D vs {reference.GetDimension()}D"]
    if reference.GetSize() != other.GetSize():
        out.append(f"size {other.GetSize()} vs {reference.GetSize()}")
    if not np.allclose(reference.GetSpacing(), other.GetSpacing(), rtol=1e-3):
        out.append(f"spacing {tuple(round(v, 4) for v in other.GetSpacing())} vs "
                   f"{tuple(round(v, 4) for v in reference.GetSpacing())} mm")
    if np.abs(np.subtract(reference.GetOrigin(), other.GetOrigin())).max() > 0.1 * min(reference.GetSpacing()):
        out.append(f"origin {tuple(round(v, 2) for v in other.GetOrigin())} vs "
                   f"{tuple(round(v, 2) for v in reference.GetOrigin())} mm")
    if not np.allclose(reference.GetDirection(), other.GetDirection(), atol=1e-3):
        out.append("orientation (direction cosines) differs")
    return out


def mask_geometry_differences(path: PathLike, reference: sitk.Image) -> list[str]:
    """How the grid of the volume mask file ``path`` differs from its image's (see :func:`geometry_differences`).

    Only volumes are compared: 2D mask files (PNG) carry no geometry of their own. The header
    alone is read.
    """
    path = Path(path)
    if reference.GetDimension() != 3 or path.is_dir():
        return []
    reader = sitk.ImageFileReader()
    reader.SetFileName(sitk_file_name(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return []  # unreadable: the mask reader reports it
    return geometry_differences(reference, reader)


def resample_mask_onto(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """A 0/1 mask on the grid of ``reference``, taken by physical position (nearest neighbour; 0 outside)."""
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    return sitk.Resample(binary, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
