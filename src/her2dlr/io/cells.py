"""Reading single table cells: missing values and bounding boxes."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from her2dlr.errors import InputError

__all__ = ["BBox", "is_missing", "parse_bbox"]

BBox = tuple[float, float, float, float]


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


def parse_bbox(value: Any, where: str = "bbox") -> BBox | None:
    """Parse a box given as JSON text ``"[x, y, w, h]"`` or a sequence; missing -> None.

    Raises
    ------
    InputError
        When the value is not four finite numbers; the message names ``where``.
    """
    if is_missing(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError(f"{where} {value!r} is not JSON; expected \"[x, y, w, h]\".") from None
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, str):
        raise InputError(f"{where} {value!r} must be four numbers [x, y, w, h].")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(f"{where} {value!r} must be four numbers [x, y, w, h].") from None
    if len(numbers) != 4 or not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{where} {value!r} must be four finite numbers [x, y, w, h].")
    return numbers  # type: ignore[return-value]
