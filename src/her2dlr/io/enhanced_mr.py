"""Enhanced (multi-frame) MR DICOM: the geometry, timing and pixels of each frame of one file.

An Enhanced MR Image (SOP class 1.2.840.10008.5.1.4.1.1.4.1, also the Legacy Converted and
Enhanced CT classes, which share the layout) holds every slice, and often every dynamic, of a
series in one file. What a classic file says once per file, it says per frame in two
*functional group* sequences (DICOM PS3.3 C.7.6.16): ``SharedFunctionalGroupsSequence`` (one
item valid for all frames) and ``PerFrameFunctionalGroupsSequence`` (one item per frame,
overriding the shared item). Read here, per frame:

* ``PlanePositionSequence`` > ImagePositionPatient, ``PlaneOrientationSequence`` >
  ImageOrientationPatient, ``PixelMeasuresSequence`` > PixelSpacing (geometry);
* ``PixelValueTransformationSequence`` > RescaleSlope / RescaleIntercept (else the top level's);
* timing, under the keyword it came from: ``FrameContentSequence`` > TemporalPositionIndex and
  FrameAcquisitionDateTime (as seconds since 1970, used only for differences), the entry of
  DimensionIndexValues whose DimensionIndexSequence item points at a temporal attribute
  (``DimensionIndexValues``), ``TemporalPositionSequence`` > TemporalPositionTimeOffset
  (seconds), and TriggerTime, NominalCardiacTriggerDelayTime (e.g. in
  CardiacSynchronizationSequence; ms, kept in seconds) or the classic tags that a legacy
  conversion keeps per frame (UnassignedPerFrameConvertedAttributesSequence >
  TemporalPositionIdentifier, AcquisitionTime ...) in any functional group macro.

Nothing else is read: identifying attributes, at the top level or inside any item, stay in the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import iter_pixels

from her2dlr.errors import InputError
from her2dlr.io.dicom_time import classic_temporal_values, datetime_seconds

__all__ = ["TEMPORAL_POINTERS", "FrameGeometry", "frame_geometries", "is_enhanced", "read_frames"]

TEMPORAL_POINTERS: dict[int, str] = {
    0x00209128: "TemporalPositionIndex",
    0x00189074: "FrameAcquisitionDateTime",
    0x00181060: "TriggerTime",
    0x00209153: "NominalCardiacTriggerDelayTime",
    0x0020930D: "TemporalPositionTimeOffset",
}
"""Attributes (tag -> keyword) whose DimensionIndexSequence entry counts as a temporal dimension."""

_NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


@dataclass(frozen=True)
class FrameGeometry:
    """What the readers keep of one frame: its index in the file, geometry, rescale and timing."""

    index: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    rescale: tuple[float, float]
    temporal: dict[str, float]


def is_enhanced(ds: Dataset) -> bool:
    """Whether a dataset keeps its frames' geometry in functional groups (an enhanced multi-frame image)."""
    return "PerFrameFunctionalGroupsSequence" in ds


def _first_item(item: Dataset | None, keyword: str) -> Dataset | None:
    if item is None:
        return None
    seq = item.get(keyword)
    return seq[0] if seq else None


def _macro(per_frame: Dataset, shared: Dataset | None, keyword: str) -> Dataset | None:
    """The functional group macro ``keyword`` of one frame: the per-frame item first, then the shared one."""
    return _first_item(per_frame, keyword) or _first_item(shared, keyword)


def _numbers(item: Dataset | None, keyword: str, n: int) -> tuple[float, ...] | None:
    value = None if item is None else item.get(keyword)
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == n else None


def _number(item: Dataset | None, keyword: str) -> float | None:
    value = None if item is None else item.get(keyword)
    if value is None or str(value).strip() == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _temporal_dimension(ds: Dataset) -> int | None:
    """Position in DimensionIndexValues of the first dimension that points at a temporal attribute."""
    for j, item in enumerate(ds.get("DimensionIndexSequence") or []):
        if int(item.get("DimensionIndexPointer", 0) or 0) in TEMPORAL_POINTERS:
            return j
    return None


def _nested_temporal(per_frame: Dataset, shared: Dataset | None) -> dict[str, float]:
    """Temporal attributes inside the frame's functional group macros, the per-frame ones first.

    Covers TriggerTime / NominalCardiacTriggerDelayTime (e.g. CardiacSynchronizationSequence;
    ms, returned in seconds) and the classic tags a legacy conversion keeps per frame in
    UnassignedPerFrameConvertedAttributesSequence (TemporalPositionIdentifier, AcquisitionTime ...).
    """
    out: dict[str, float] = {}
    for group in (per_frame, shared):
        for element in group or []:
            if element.VR != "SQ" or not element.value:
                continue
            item = element.value[0]
            for keyword, value in classic_temporal_values(item).items():
                out.setdefault(keyword, value)
            delay = _number(item, "NominalCardiacTriggerDelayTime")
            if delay is not None:
                out.setdefault("NominalCardiacTriggerDelayTime", delay / 1000.0)
    return out


def _frame_temporal(per_frame: Dataset, shared: Dataset | None, dimension: int | None) -> dict[str, float]:
    out: dict[str, float] = {}
    content = _macro(per_frame, shared, "FrameContentSequence")
    index = _number(content, "TemporalPositionIndex")
    if index is not None:
        out["TemporalPositionIndex"] = index
    values = None if content is None else content.get("DimensionIndexValues")
    if dimension is not None and values is not None:
        values = list(values) if isinstance(values, (list, tuple, MultiValue)) else [values]
        if dimension < len(values):
            out["DimensionIndexValues"] = float(values[dimension])
    acquired = datetime_seconds(None if content is None else content.get("FrameAcquisitionDateTime"))
    if acquired is not None:
        out["FrameAcquisitionDateTime"] = acquired
    for keyword, value in _nested_temporal(per_frame, shared).items():
        out.setdefault(keyword, value)
    offset = _number(_macro(per_frame, shared, "TemporalPositionSequence"), "TemporalPositionTimeOffset")
    if offset is not None:
        out["TemporalPositionTimeOffset"] = offset
    return out


def _check_pixel_length(ds: Dataset, path: Path, n_frames: int) -> None:
    """Refuse native pixel data too short for NumberOfFrames, naming the first frame that is missing."""
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", ""))
    if syntax not in _NATIVE_SYNTAXES or "PixelData" not in ds:
        return  # encapsulated data is checked when it is decoded
    frame_bytes = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) \
        * int(ds.get("BitsAllocated", 16) or 16) // 8
    element = ds.get_item("PixelData", keep_deferred=True)  # a deferred value stays on disk
    length = getattr(element, "length", None)
    if length is None or length == 0xFFFFFFFF:
        length = len(getattr(element, "value", b"") or b"")
    if frame_bytes and length < n_frames * frame_bytes:
        first_missing = length // frame_bytes + 1
        raise InputError(f"DICOM file {path}: NumberOfFrames is {n_frames} but its pixel data holds "
                         f"{length // frame_bytes} whole frame(s); frame {first_missing} onwards has no pixel data. "
                         "The file is truncated; export the series again.")


def frame_geometries(ds: Dataset, path: Path) -> list[FrameGeometry]:
    """Geometry, rescale and timing of every frame of an enhanced multi-frame file.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file's dataset (pixel data may be deferred).
    path : Path
        The file, for messages.

    Returns
    -------
    list of FrameGeometry
        One per frame, in file order (``index`` counts from 0; messages count from 1).

    Raises
    ------
    InputError
        NumberOfFrames disagrees with the per-frame items or with the pixel data's length, or a
        frame has no usable position, orientation or pixel spacing.
    """
    per_frame = ds.PerFrameFunctionalGroupsSequence
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per_frame) != n_frames:
        raise InputError(f"DICOM file {path}: NumberOfFrames is {n_frames} but PerFrameFunctionalGroupsSequence "
                         f"has {len(per_frame)} item(s); frames are missing or the header is damaged.")
    _check_pixel_length(ds, path, n_frames)
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    dimension = _temporal_dimension(ds)
    top_rescale = (_number(ds, "RescaleSlope"), _number(ds, "RescaleIntercept"))
    frames = []
    for k, item in enumerate(per_frame):
        geometry = {}
        for macro, keyword, n in (("PlanePositionSequence", "ImagePositionPatient", 3),
                                  ("PlaneOrientationSequence", "ImageOrientationPatient", 6),
                                  ("PixelMeasuresSequence", "PixelSpacing", 2)):
            numbers = _numbers(_macro(item, shared, macro), keyword, n)
            if numbers is None:
                raise InputError(f"DICOM file {path}, frame {k + 1} of {n_frames}: no usable {macro} > {keyword} "
                                 f"(expected {n} numbers, per frame or shared); its geometry is unknown.")
            geometry[keyword] = numbers
        transform = _macro(item, shared, "PixelValueTransformationSequence")
        slope = _number(transform, "RescaleSlope") if transform is not None else top_rescale[0]
        intercept = _number(transform, "RescaleIntercept") if transform is not None else top_rescale[1]
        frames.append(FrameGeometry(
            index=k, position=geometry["ImagePositionPatient"],  # type: ignore[arg-type]
            orientation=geometry["ImageOrientationPatient"],  # type: ignore[arg-type]
            pixel_spacing=geometry["PixelSpacing"],  # type: ignore[arg-type]
            rescale=(1.0 if slope is None else slope, 0.0 if intercept is None else intercept),
            temporal=_frame_temporal(item, shared, dimension),
        ))
    return frames


def read_frames(path: Path, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the frames ``indices`` (0-based) of one multi-frame file, one at a time, in ascending order.

    Yields
    ------
    (index, ndarray of shape (rows, columns))
        Stored values, before rescaling.

    Raises
    ------
    InputError
        The pixel data cannot be decoded (the message names the file and the frame).
    """
    wanted = sorted(set(indices))
    done = 0
    try:
        for array in iter_pixels(path, indices=wanted):
            if done >= len(wanted):
                break
            yield wanted[done], array
            done += 1
    except Exception as exc:  # decoder errors of any kind are a property of the file
        frame = f"frame {wanted[done] + 1}" if done < len(wanted) else "its frames"
        raise InputError(f"Cannot decode the pixel data of DICOM file {path} ({frame}): {exc}") from None
