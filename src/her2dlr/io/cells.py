"""Reading single table cells: missing values and bounding boxes."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError

__all__ = ["BBOX_FORMS", "BBox", "bbox_form", "is_missing", "parse_bbox"]

BBox = tuple[float, ...]
"""A user's box: ``(x, y, w, h)`` on an image or ``(x, y, z, w, h, d)`` on a volume (voxel indices, x fastest)."""

#: The written form of a box, by number of spatial dimensions.
BBOX_FORMS = {2: "[x, y, w, h]", 3: "[x, y, z, w, h, d]"}


def bbox_form(ndim: int | None = None) -> str:
    """How a box is written for a ``ndim``-D image (both forms when ``ndim`` is None), for messages."""
    if ndim == 2:
        return f"four numbers {BBOX_FORMS[2]}"
    if ndim == 3:
        return f"six numbers {BBOX_FORMS[3]}"
    return f"four numbers {BBOX_FORMS[2]} (an image) or six numbers {BBOX_FORMS[3]} (a volume)"


def is_missing(cell: Any) -> bool:
    """True for None, NaN / NA and blank text; lists and arrays are never missing."""
    if cell is None:
        return True
    if isinstance(cell, str):
        return not cell.strip()
    if isinstance(cell, (list, tuple, np.ndarray)):
        return False
    try:
        return bool(pd.isna(cell))
    except (TypeError, ValueError):
        return False


def parse_bbox(value: Any, where: str = "bbox", ndim: int | None = None) -> BBox | None:
    """Parse a box given as JSON text (``"[x, y, w, h]"``, ``"[x, y, z, w, h, d]"``) or a sequence; missing -> None.

    Parameters
    ----------
    value : str, sequence of numbers or missing
    where : str, default "bbox"
        What the value is (a cell, an option), named in messages.
    ndim : {2, 3}, optional
        Spatial dimensions of the image the box belongs to: 2 takes four numbers, 3 takes six.
        Default: either.

    Returns
    -------
    tuple of float or None
        ``(x, y, w, h)`` or ``(x, y, z, w, h, d)``: lower corner in voxel indices (x fastest), then extent.

    Raises
    ------
    InputError
        When the value is not four (or six) finite numbers; the message names ``where`` and the
        form expected.
    """
    if is_missing(value):
        return None
    form = bbox_form(ndim)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{where} {value!r} is not JSON; expected {form}, e.g. \"[x, y, w, h]\".") from None
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, str):
        raise InputError(f"{where} {value!r} must be {form}.")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{where} {value!r} must be {form}.") from None
    wanted = (4, 6) if ndim is None else (2 * ndim,)
    if len(numbers) not in wanted or not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{where} {value!r} must be {form}, all finite; got {len(numbers)} number(s).")
    return numbers
