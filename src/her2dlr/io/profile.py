"""What an image file is, beyond its pixels: bit depth, intensity range, size and pixel spacing.

A model is only valid on images like those it was trained on. :func:`image_header` reads one
file's facts; :func:`profile_images` summarises a training set into a small JSON-ready dict
that goes into the feature table's record and from there into every model card, so that
prediction can refuse or warn on a new image that does not match (another bit depth, no pixel
spacing where training had one, a size or intensity range far from training).

Pixel spacing is *known* when the file format carries it (DICOM, NIfTI, NRRD, MHA) or a
spacing was given (a manifest ``spacing`` column, ``--spacing``); 2D bitmaps (PNG, JPEG, BMP,
TIFF) without a physical-size chunk read as 1.0, which is a pixel, not a millimetre.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from her2dlr.errors import InputError
from her2dlr.io.images import sitk_file_name

__all__ = ["ImageHeader", "image_header", "pixel_bits", "profile_images"]

#: Leading bytes of the 2D bitmap formats, whose files have no physical pixel size unless they say so.
_BITMAP_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")


def _is_bitmap(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(8)
    return head.startswith(_BITMAP_MAGIC)


@dataclass(frozen=True)
class ImageHeader:
    """The facts of one image file that a model depends on.

    Attributes
    ----------
    bits : int
        Bits per sample of the stored pixel type (8, 16, 32, 64).
    pixel_type : str
        SimpleITK's component type (``8-bit unsigned integer`` ...).
    channels : int
        Components per pixel (1 grey, 3 RGB ...).
    size : tuple of int
        Pixels per axis (x, y[, z]).
    minimum, maximum : float
        Intensity range of the file's pixel values.
    spacing : tuple of float or None
        Pixel size in mm when the file carries it, else None.
    """

    bits: int
    pixel_type: str
    channels: int
    size: tuple[int, ...]
    minimum: float
    maximum: float
    spacing: tuple[float, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Read one image file's bit depth, channels, size, intensity range and pixel spacing.

    Raises
    ------
    InputError
        Missing or undecodable file, or a file name that is not valid UTF-8 (names the file).
    """
    p = Path(path)
    name = sitk_file_name(p)
    if not p.is_file():
        raise InputError(f"File not found: {p}")
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise InputError(f"Cannot read image {p}: {last}") from None
    if image.GetDimension() == 3 and image.GetSize()[2] == 1:
        image = image[:, :, 0]
    arr = sitk.GetArrayViewFromImage(image)
    bits = int(np.dtype(arr.dtype).itemsize * 8)
    spacing = tuple(float(s) for s in image.GetSpacing())
    known = not _is_bitmap(p) or any(abs(s - 1.0) > 1e-9 for s in spacing)
    finite = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (float("nan"), float("nan"))
    return ImageHeader(bits=bits, pixel_type=image.GetPixelIDTypeAsString(), channels=image.GetNumberOfComponentsPerPixel(),
                       size=tuple(int(s) for s in image.GetSize()), minimum=lo, maximum=hi,
                       spacing=spacing if known else None)


def pixel_bits(path: str | os.PathLike[str]) -> int | None:
    """Bits per stored sample of an image file, from its header only (None when the header cannot be read)."""
    reader = sitk.ImageFileReader()
    try:
        reader.SetFileName(sitk_file_name(path))
        reader.ReadImageInformation()
    except (RuntimeError, InputError):
        return None
    return int(sitk.GetArrayFromImage(sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())).dtype.itemsize * 8)


def profile_images(images: Iterable[tuple[str | os.PathLike[str], float | None]], *,
                   progress: bool = False) -> dict[str, Any]:
    """Summarise the images a model is trained on (for its card).

    Parameters
    ----------
    images : iterable of (path, spacing)
        Each image with the spacing given for it (a manifest's ``spacing`` column), or None.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        ``n``; ``bits`` and ``channels`` (value -> count); ``intensity`` ``[min, max]`` over all
        images; ``size`` ``{"min": [...], "max": [...]}`` per axis; ``spacing``: ``known`` and
        ``unknown`` counts, with ``min``, ``median`` and ``max`` (mm, smallest axis) of the known.
        Unreadable files are left out and counted in ``unreadable``.
    """
    from tqdm.auto import tqdm

    items = list(images)
    bits: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    lows, highs, sizes, spacings = [], [], [], []
    unknown = unreadable = 0
    for path, given in tqdm(items, desc="image profile", disable=not progress, leave=False):
        try:
            head = image_header(path)
        except InputError:
            unreadable += 1
            continue
        bits[str(head.bits)] += 1
        channels[str(head.channels)] += 1
        lows.append(head.minimum)
        highs.append(head.maximum)
        sizes.append(head.size)
        if given is not None and np.isfinite(given):
            spacings.append(float(given))
        elif head.spacing is not None:
            spacings.append(min(head.spacing))
        else:
            unknown += 1
    out: dict[str, Any] = {"n": len(sizes), "unreadable": unreadable, "bits": dict(bits), "channels": dict(channels)}
    if sizes:
        dims = min(len(s) for s in sizes)
        arr = np.array([s[:dims] for s in sizes])
        out["intensity"] = [float(np.nanmin(lows)), float(np.nanmax(highs))]
        out["size"] = {"min": arr.min(axis=0).tolist(), "max": arr.max(axis=0).tolist()}
    spacing: dict[str, Any] = {"known": len(spacings), "unknown": unknown}
    if spacings:
        spacing.update(min=float(np.min(spacings)), median=float(np.median(spacings)), max=float(np.max(spacings)))
    out["spacing"] = spacing
    return out
