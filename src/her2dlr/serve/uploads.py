"""Uploaded files: size limits, type by content, pixel-count limits, DICOM de-identification, temporary copies.

:func:`check_upload` looks at the bytes only (never at the file name, which is not logged
either): PNG and JPEG by their signatures, DICOM by ``DICM`` at offset 128 (Part-10 files).
The image size is read from the header and refused above the limit before any pixel is
decoded (decompression bombs); then the image is decoded once to refuse truncated files.
A DICOM file is de-identified in memory (:mod:`her2dlr.serve.deidentify`) before it is
written anywhere.

:func:`case_folder` is the only place uploads touch a disk: :func:`her2dlr.predict.predict`
reads files, so the checked (and de-identified) bytes are written to a private temporary
folder that is removed when the request ends, on success or error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SIGNATURES", "CheckedUpload", "UploadError", "WithheldValues", "case_folder", "check_upload", "sniff", "write_upload"]

#: File kinds recognised by content: name -> (offset, magic bytes).
SIGNATURES: dict[str, tuple[int, bytes]] = {
    "png": (0, b"\x89PNG\r\n\x1a\n"),
    "jpeg": (0, b"\xff\xd8\xff"),
    "dicom": (128, b"DICM"),
}
_SUFFIX = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}


class UploadError(Exception):
    """A refused upload: HTTP status, the form field and what was expected."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass
class CheckedUpload:
    """An upload that passed the checks: its kind, its (de-identified) bytes, its size in pixels."""

    kind: str
    data: bytes
    shape: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    deidentified: dict[str, Any] | None = None


class WithheldValues(logging.Filter):
    """Rewrites pydicom's log records, whose messages may quote attribute values, to a message without them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = "pydicom: a DICOM element did not validate (its value is not logged)", ()
        return True


def sniff(data: bytes) -> str | None:
    """The kind of a file from its first bytes (``"png"``, ``"jpeg"``, ``"dicom"``), None when unknown."""
    for kind, (offset, magic) in SIGNATURES.items():
        if data[offset:offset + len(magic)] == magic:
            return kind
    return None


def _check_pixels(field_name: str, width: int, height: int, frames: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise UploadError(400, field_name, f"{field_name}: the file declares an empty image ({width} x {height}).")
    if width * height * max(frames, 1) > max_pixels:
        raise UploadError(413, field_name, f"{field_name}: {width} x {height} pixels"
                          f"{f' x {frames} frames' if frames > 1 else ''} is more than the server accepts "
                          f"({max_pixels:,} pixels).")


def _check_raster(field_name: str, data: bytes, kind: str, max_pixels: int) -> tuple[int, int]:
    import struct

    from PIL import Image, UnidentifiedImageError

    if kind == "png" and len(data) >= 24 and data[12:16] == b"IHDR":  # the size, before Pillow's own bomb check
        width, height = struct.unpack(">II", data[16:24])
        _check_pixels(field_name, width, height, 1, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # reads the header only
            width, height = img.size
            _check_pixels(field_name, width, height, getattr(img, "n_frames", 1), max_pixels)
            img.load()
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadError(413, field_name, f"{field_name}: the file declares more pixels than the server accepts "
                          f"({max_pixels:,} pixels).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadError(400, field_name, f"{field_name}: the {kind.upper()} file cannot be decoded "
                          f"({type(exc).__name__}); it may be truncated or damaged.") from None
    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "F"):
        raise UploadError(400, field_name, f"{field_name}: image mode {img.mode!r} is not supported "
                          "(grey or RGB images are).")
    return height, width


def _check_dicom(field_name: str, data: bytes, max_pixels: int) -> CheckedUpload:
    with warnings.catch_warnings():
        # pydicom's warnings about invalid values quote the values (a birth date, a name): never shown
        warnings.simplefilter("ignore")
        return _read_dicom(field_name, data, max_pixels)


def read_dicom_header(field_name: str, data: bytes) -> tuple[Any, int, int, int]:
    """The dataset of an uploaded DICOM file and its rows, columns and frame count (call inside
    ``warnings.catch_warnings``: pydicom's warnings may quote attribute values).

    Raises
    ------
    UploadError
        400 when it cannot be read or holds no pixel data.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (InvalidDicomError, ValueError, TypeError, KeyError, AttributeError, EOFError, OSError) as exc:
        raise UploadError(400, field_name, f"{field_name}: the DICOM file cannot be read ({type(exc).__name__}).") from None
    if "PixelData" not in ds:
        raise UploadError(400, field_name, f"{field_name}: the DICOM file holds no image (no pixel data).")
    return ds, rows, cols, frames


def _read_dicom(field_name: str, data: bytes, max_pixels: int) -> CheckedUpload:
    from her2dlr.serve.deidentify import deidentify_dataset

    ds, rows, cols, frames = read_dicom_header(field_name, data)
    _check_pixels(field_name, cols, rows, frames, max_pixels)
    if frames > 1:
        raise UploadError(400, field_name, f"{field_name}: a multi-frame DICOM ({frames} frames) is a cine loop or a "
                          "volume; this endpoint reads one 2D image.")
    report = deidentify_dataset(ds)  # before anything else reads it
    try:
        ds.pixel_array  # noqa: B018  (decodes once: refuses damaged or unsupported pixel data)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
    except Exception as exc:  # pydicom raises many types for bad pixel data; the message names none of its values
        raise UploadError(400, field_name, f"{field_name}: the DICOM pixel data cannot be decoded "
                          f"({type(exc).__name__}).") from None
    notes = []
    if report.burned_in_annotation:
        notes.append("The DICOM file declares text burned into its pixels (BurnedInAnnotation = YES); it cannot be "
                     "removed and stays in the image held for this request.")
    return CheckedUpload("dicom", buf.getvalue(), (rows, cols), notes,
                         {"removed_elements": report.removed, "replaced_uids": report.replaced_uids})


def check_upload(field_name: str, data: bytes, *, max_bytes: int, max_pixels: int,
                 allowed: tuple[str, ...] = ("png", "jpeg", "dicom")) -> CheckedUpload:
    """Check one uploaded file by its content; de-identify DICOM.

    Parameters
    ----------
    field_name : str
        The form field (named in errors).
    data : bytes
    max_bytes, max_pixels : int
    allowed : tuple of str
        Kinds accepted for this field.

    Raises
    ------
    UploadError
        413 too large, 415 not an accepted kind, 400 undecodable.
    """
    if len(data) > max_bytes:
        raise UploadError(413, field_name, f"{field_name}: {len(data):,} bytes is more than the server accepts "
                          f"({max_bytes:,} bytes).")
    if not data:
        raise UploadError(400, field_name, f"{field_name}: the file is empty.")
    kind = sniff(data)
    if kind not in allowed:
        what = {"png": "PNG", "jpeg": "JPEG", "dicom": "DICOM (Part-10, 'DICM' at byte 128)"}
        found = f"a {what[kind]} file" if kind else "a file of unknown type"
        raise UploadError(415, field_name, f"{field_name}: expected {' or '.join(what[k] for k in allowed)}, "
                          f"got {found} (the type is read from the content, not the name).")
    if kind == "dicom":
        return _check_dicom(field_name, data, max_pixels)
    return CheckedUpload(kind, data, _check_raster(field_name, data, kind, max_pixels))


@contextlib.contextmanager
def case_folder() -> Iterator[Path]:
    """A private temporary folder (mode 0700) for one request's files, removed on exit, on success or error."""
    folder = Path(tempfile.mkdtemp(prefix="her2dlr-serve-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_upload(folder: Path, name: str, upload: CheckedUpload) -> Path:
    """Write a checked upload into ``folder`` as ``<name>.<png|jpg|dcm>``; return the path."""
    path = folder / f"{name}{_SUFFIX[upload.kind]}"
    path.write_bytes(upload.data)
    return path
