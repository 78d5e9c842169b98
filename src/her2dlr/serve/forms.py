"""Reading a multipart form in memory, within limits, and checking its plain fields.

Starlette's own form parser spools files larger than 1 MB to a temporary file on disk; this
one keeps them in memory (the body is bounded first: ``Content-Length`` and a running count),
so an upload reaches the disk only as the checked copy in the request's temporary folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request

from her2dlr.errors import InputError, nearest
from her2dlr.serve.uploads import UploadError

__all__ = ["METHODS", "Form", "parse_box_field", "parse_clinical_field", "parse_flag", "parse_spacing", "read_form"]

#: Heat map methods (as ``her2dlr predict --method``).
METHODS = ("cam", "gradcam", "gradcampp")


@dataclass
class Form:
    """A parsed form: file fields as bytes, text fields as strings."""

    files: dict[str, bytes] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


async def _bounded(stream: AsyncGenerator[bytes, None], limit: int) -> AsyncGenerator[bytes, None]:
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise UploadError(413, "body", f"The request body is larger than the server accepts ({limit:,} bytes).")
        yield chunk


async def read_form(request: Request, *, files: tuple[str, ...], fields: tuple[str, ...], max_file_bytes: int) -> Form:
    """Parse a ``multipart/form-data`` body with these file and text fields, all in memory.

    A body of text fields only may also come as ``application/x-www-form-urlencoded``.

    Raises
    ------
    UploadError
        415 not multipart, 413 body too large, 400 malformed body, 422 unknown field or a text
        field sent as a file (and the reverse).
    """
    ctype = request.headers.get("content-type", "")
    urlencoded = ctype.lower().startswith("application/x-www-form-urlencoded")  # text fields only
    if not ctype.lower().startswith("multipart/form-data") and not urlencoded:
        raise UploadError(415, "body", f"Send the case as multipart/form-data (fields: {', '.join(files + fields)}); "
                          f"got content type {ctype[:60] or 'none'!r}.")
    limit = len(files) * max_file_bytes + 256 * 1024
    try:
        declared = int(request.headers.get("content-length", "0") or 0)
    except ValueError:
        raise UploadError(400, "body", "The Content-Length header is not a number.") from None
    if declared > limit:
        raise UploadError(413, "body", f"The request body ({declared:,} bytes) is larger than the server accepts "
                          f"({limit:,} bytes).")
    stream = _bounded(request.stream(), limit)
    parser: MultiPartParser | FormParser
    if urlencoded:
        parser = FormParser(request.headers, stream, max_fields=len(fields) + len(files), max_part_size=256 * 1024)
    else:
        parser = MultiPartParser(request.headers, stream, max_files=len(files), max_fields=len(fields) + len(files),
                                 max_part_size=256 * 1024)
        parser.spool_max_size = max_file_bytes + 1  # keep uploads in memory (never spooled to disk)
    try:
        data = await parser.parse()
    except MultiPartException as exc:
        raise UploadError(400, "body", f"The multipart body is malformed: {exc.message}") from None
    out = Form()
    try:
        for key, value in data.multi_items():
            if key not in files and key not in fields:
                raise UploadError(422, key, f"Unknown field '{key}'. Fields: {', '.join(files + fields)}."
                                  f"{nearest(key, files + fields)}")
            if key in out.files or key in out.fields:
                raise UploadError(422, key, f"Field '{key}' is given twice.")
            if key in files:
                if not isinstance(value, UploadFile):
                    raise UploadError(422, key, f"Field '{key}' must be a file upload.")
                out.files[key] = await value.read(max_file_bytes + 1)
            else:
                if isinstance(value, UploadFile):
                    raise UploadError(422, key, f"Field '{key}' must be text, not a file.")
                out.fields[key] = value
    finally:
        await data.close()
    return out


def parse_flag(name: str, text: str | None, default: bool) -> bool:
    """``true/false/1/0/yes/no/on/off`` (any case) -> bool; absent or empty -> ``default``."""
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise UploadError(422, name, f"{name}: expected true or false; got {text[:40]!r}.")


def parse_spacing(text: str | None) -> float | None:
    """Pixel size in mm (0 < spacing <= 10), or None when absent."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise UploadError(422, "spacing", f"spacing: expected the pixel size in mm (a number); got {text[:40]!r}.") from None
    if not math.isfinite(value) or not 0 < value <= 10:
        raise UploadError(422, "spacing", f"spacing: the pixel size in mm must be in (0, 10]; got {value:g}.")
    return value


def parse_box_field(text: str | None, shape: tuple[int, int] | None) -> tuple[float, ...] | None:
    """The lesion box ``x,y,w,h`` in pixels (as ``her2dlr predict --box``), inside an image of ``shape`` (rows, cols)."""
    from her2dlr.predict.inputs import parse_box

    if text is None or not text.strip():
        return None
    try:
        box = parse_box(text[:200])
    except InputError as exc:
        raise UploadError(422, "box", f"box: {exc}") from None
    if box is None or len(box) != 4 or not all(math.isfinite(float(v)) for v in box):
        raise UploadError(422, "box", f"box: expected x,y,w,h in pixels; got {text[:60]!r}.")
    x, y, w, h = (float(v) for v in box)
    if w < 1 or h < 1:
        raise UploadError(422, "box", f"box: width and height must be at least 1 pixel; got {w:g} x {h:g}.")
    if shape is not None:
        rows, cols = shape
        if x < 0 or y < 0 or x + w > cols or y + h > rows:
            raise UploadError(422, "box", f"box: ({x:g}, {y:g}, {w:g}, {h:g}) does not lie inside the image "
                              f"({cols} x {rows} pixels).")
    return box


def parse_clinical_field(text: str | None, types: Mapping[str, str]) -> dict[str, Any]:
    """Clinical values from a JSON object ``{"Age": 52, "Shape": "irregular"}``, checked against the model's columns."""
    if text is None or not text.strip():
        return {}
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise UploadError(422, "clinical", 'clinical: expected a JSON object such as {"Age": 52}; the text is not '
                          "valid JSON.") from None
    if not isinstance(values, dict):
        raise UploadError(422, "clinical", f"clinical: expected a JSON object of column -> value; got a "
                          f"{type(values).__name__}.")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in types:
            known = ", ".join(types) or "none"
            raise UploadError(422, "clinical", f"clinical: the model reads no column '{key[:60]}'. Its clinical "
                              f"columns: {known}.{nearest(key, types)}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise UploadError(422, "clinical", f"clinical: '{key}' must be a number or a text, not a "
                              f"{type(value).__name__}.")
        if types[key] == "numeric" and value is not None and value != "":
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise UploadError(422, "clinical", f"clinical: '{key}' is numeric; got {str(value)[:40]!r}.") from None
            if not math.isfinite(number):
                raise UploadError(422, "clinical", f"clinical: '{key}' must be a finite number.")
            value = number
        out[key] = value
    return out
