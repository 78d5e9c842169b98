"""Image, mask and volume readers built on SimpleITK.

2D files (PNG, JPEG, TIFF, BMP, single-frame DICOM) come back as 2D ``SimpleITK.Image``;
NIfTI, NRRD, MHA and DICOM series folders come back as 3D. Colour images (RGB, RGBA) are
converted to grey with the ITU-R BT.601 luma weights, because PyRadiomics and most
networks expect one channel; the alpha channel is dropped.
"""

from __future__ import annotations

import os
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


def bbox_mask(reference: sitk.Image, bbox: tuple[float, float, float, float]) -> sitk.Image:
    """Rectangular ROI mask (seed 000) from a box ``(x, y, w, h)`` in pixels, clipped to the image.

    Raises
    ------
    InputError
        When the box has no area or lies wholly outside the image.
    """
    if reference.GetDimension() != 2:
        raise InputError("Bounding boxes are supported for 2D images only.")
    x, y, w, h = (float(v) for v in bbox)
    width, height = reference.GetSize()
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
    if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
        raise InputError(
            f"Bounding box {list(bbox)} (x, y, w, h) has no area inside the {width}x{height} image."
        )
    arr = np.zeros((height, width), dtype=np.uint8)
    arr[y0:y1, x0:x1] = 1
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(reference)
    return out


def mask_to_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding rectangle ``(x, y, w, h)`` of the foreground of a 2D mask array."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise InputError("Cannot take the bounding box of an empty mask.")
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
