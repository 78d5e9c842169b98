"""DICOM times as numbers: TM as seconds of the day, DT as seconds since 1970, the classic temporal tags of a file."""

from __future__ import annotations

import datetime as _dt

from pydicom.dataset import Dataset
from pydicom.valuerep import DT

__all__ = ["CLASSIC_TEMPORAL_TAGS", "classic_temporal_values", "datetime_seconds", "seconds_of_day"]

CLASSIC_TEMPORAL_TAGS: tuple[str, ...] = ("TemporalPositionIdentifier", "TriggerTime", "AcquisitionTime",
                                          "AcquisitionNumber")
"""Tags of a classic (one image per file) DICOM header that may tell the phases of a dynamic series apart."""

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def seconds_of_day(value: object) -> float | None:
    """Seconds since midnight of a DICOM TM value (``HHMMSS.FFFFFF``, any prefix of it), or None."""
    text = str(value).strip()
    if len(text) < 2 or not text[:2].isdigit():
        return None
    try:
        hours = int(text[0:2])
        minutes = int(text[2:4]) if len(text) >= 4 else 0
        seconds = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hours * 3600.0 + minutes * 60.0 + seconds


def datetime_seconds(value: object) -> float | None:
    """Seconds since 1970 of a DICOM DT value (UTC when it has no offset), or None if it is unusable.

    Examples
    --------
    >>> datetime_seconds("19700101000130.5")
    90.5
    >>> datetime_seconds("19700101010000+0100")
    0.0
    """
    text = str(value or "").strip()
    if len(text) < 8:
        return None
    try:
        parsed = DT(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    return (parsed - _EPOCH).total_seconds()


def classic_temporal_values(ds: Dataset) -> dict[str, float]:
    """The numeric value of each :data:`CLASSIC_TEMPORAL_TAGS` tag ``ds`` fills.

    TriggerTime (ms in the file) is returned in seconds, AcquisitionTime as seconds of the day
    (used only for differences); unparsable values are left out.
    """
    out: dict[str, float] = {}
    for tag in CLASSIC_TEMPORAL_TAGS:
        value = ds.get(tag)
        if value is None or str(value).strip() == "":
            continue
        if tag == "AcquisitionTime":
            seconds = seconds_of_day(value)
            if seconds is not None:
                out[tag] = seconds
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[tag] = number / 1000.0 if tag == "TriggerTime" else number
    return out
