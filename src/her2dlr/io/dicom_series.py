"""DICOM series: find them in a folder tree, group them by patient and study, and stack slices into volumes.

Geometry is taken from each slice's ImagePositionPatient, ImageOrientationPatient and
PixelSpacing: slices are ordered by their position along the slice normal (the cross product
of the row and column directions), never by file name or InstanceNumber, and the slice
spacing is the distance between neighbouring positions. The volume's SimpleITK direction has
the row direction, the column direction and the normal as its columns, its origin is the
position of the first slice along the normal.

An enhanced multi-frame file (Enhanced MR: one file per series, often every dynamic in it)
gives one :class:`SliceHeader` per frame, its geometry and timing taken from the functional
groups (:mod:`her2dlr.io.enhanced_mr`); from there on its frames are slices like any other.

Headers are read with pydicom, pixel data only when a volume is built. Nothing identifying
leaves this module: the patient id is turned into a pseudonym (:mod:`her2dlr.io.deid`) as
the header is read.
"""

from __future__ import annotations

import os
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from her2dlr.errors import InputError
from her2dlr.io.deid import pseudonym
from her2dlr.io.dicom_time import classic_temporal_values
from her2dlr.io.enhanced_mr import frame_geometries, is_enhanced, read_frames

__all__ = [
    "TEMPORAL_TAGS",
    "SliceHeader",
    "StudyFiles",
    "find_studies",
    "read_slice_headers",
    "slice_positions",
    "stack_slices",
]

TEMPORAL_TAGS: tuple[str, ...] = (
    "TemporalPositionIdentifier", "TemporalPositionIndex", "DimensionIndexValues", "FrameAcquisitionDateTime",
    "TriggerTime", "NominalCardiacTriggerDelayTime", "TemporalPositionTimeOffset", "AcquisitionTime",
    "AcquisitionNumber",
)
"""Tags that may tell the phases of a dynamic series apart, in the order they are tried.

Classic files fill TemporalPositionIdentifier, TriggerTime, AcquisitionTime or AcquisitionNumber;
the others come from the per-frame functional groups of enhanced files (see
:mod:`her2dlr.io.enhanced_mr`; ``DimensionIndexValues`` is the entry of a temporal dimension)."""

SPACING_TOLERANCE = 0.01
"""Largest relative deviation of a slice gap from the median gap before the series is refused."""

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_SESSION_KEY = secrets.token_bytes(32)  # pseudonyms of a call made without a study key: stable in-process only


@dataclass(frozen=True)
class SliceHeader:
    """What the readers keep of one DICOM image file (no identifying attribute).

    ``patient`` and ``study`` are pseudonyms; ``temporal`` holds the numeric value of each
    :data:`TEMPORAL_TAGS` tag the file fills (TriggerTime and AcquisitionTime in seconds;
    AcquisitionTime as seconds since midnight, FrameAcquisitionDateTime as seconds since 1970,
    both used only for differences). ``frame`` is the frame's index (from 0) in an enhanced
    multi-frame file, None for a classic one-slice file; ``rescale`` is that frame's
    (slope, intercept).
    """

    path: Path
    patient: str
    study: str
    series_uid: str
    series_number: int | None
    description: str = field(repr=False)  # SeriesDescription, for filtering in memory; never written
    modality: str
    manufacturer: str
    rows: int
    columns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    temporal: dict[str, float]
    instance_number: int | None
    frame: int | None = None
    rescale: tuple[float, float] = (1.0, 0.0)

    @property
    def name(self) -> str:
        """How messages name the slice: the file name, plus the frame number (from 1) for a multi-frame file."""
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"

    @property
    def normal(self) -> np.ndarray:
        """Unit vector normal to the slice (row direction x column direction)."""
        r, c = np.asarray(self.orientation[:3]), np.asarray(self.orientation[3:])
        n = np.cross(r, c)
        return n / np.linalg.norm(n)


@dataclass
class StudyFiles:
    """The image files of one study of one patient, as found by :func:`find_studies`."""

    patient: str
    study: str
    folder: Path
    slices: list[SliceHeader]

    @property
    def series(self) -> dict[str, list[SliceHeader]]:
        """Slices per SeriesInstanceUID, in order of SeriesNumber."""
        groups: dict[str, list[SliceHeader]] = defaultdict(list)
        for s in self.slices:
            groups[s.series_uid].append(s)
        return dict(sorted(groups.items(), key=lambda kv: (kv[1][0].series_number or 0, kv[0])))


def _floats(ds: pydicom.Dataset, keyword: str, n: int, path: Path) -> tuple[float, ...]:
    value = ds.get(keyword)
    try:
        numbers = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != n:
        raise InputError(f"DICOM file {path} has no usable {keyword} (expected {n} numbers, got {value!r}); "
                         "its slice geometry is unknown.")
    return numbers


def _headers(path: Path, ds: pydicom.Dataset, key: bytes) -> list[SliceHeader]:
    """One header per image of the file: the file itself, or each frame of an enhanced multi-frame file."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        frames = f", {n_frames} frames" if n_frames > 1 else ""
        raise InputError(f"DICOM file {path} is an image ({ds.get('Rows')}x{ds.get('Columns')}{frames}) without pixel "
                         "data; the export is incomplete. Export the series again or remove the file.")
    if n_frames > 1 and not is_enhanced(ds):
        raise InputError(f"DICOM file {path} holds {ds.NumberOfFrames} frames but no per-frame functional groups "
                         "(PerFrameFunctionalGroupsSequence), so its frames' geometry is unknown; only classic "
                         "one-slice files and enhanced multi-frame files are read. Convert it (e.g. `dcm2niix`) "
                         "to a 4D NIfTI.")
    patient_id = str(ds.get("PatientID", "") or ds.get("PatientName", "") or ds.get("StudyInstanceUID", ""))
    study_uid = str(ds.get("StudyInstanceUID", ""))
    series_number = ds.get("SeriesNumber")
    instance = ds.get("InstanceNumber")
    common = {
        "path": path,
        "patient": pseudonym(patient_id, key, prefix="patient"),
        "study": pseudonym(f"{patient_id}|{study_uid}", key, prefix="case"),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
        "series_number": int(series_number) if series_number not in (None, "") else None,
        "description": str(ds.get("SeriesDescription", "")),
        "modality": str(ds.get("Modality", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "instance_number": int(instance) if instance not in (None, "") else None,
    }
    if is_enhanced(ds):
        return [SliceHeader(**common, position=f.position, orientation=f.orientation,  # type: ignore[arg-type]
                            pixel_spacing=f.pixel_spacing, temporal=f.temporal, frame=f.index, rescale=f.rescale)
                for f in frame_geometries(ds, path)]
    return [SliceHeader(
        **common,  # type: ignore[arg-type]
        position=_floats(ds, "ImagePositionPatient", 3, path),  # type: ignore[arg-type]
        orientation=_floats(ds, "ImageOrientationPatient", 6, path),  # type: ignore[arg-type]
        pixel_spacing=_floats(ds, "PixelSpacing", 2, path),  # type: ignore[arg-type]
        temporal=classic_temporal_values(ds),
    )]


def read_slice_headers(
    root: str | os.PathLike[str], *, key: bytes | None = None
) -> tuple[list[SliceHeader], list[Path]]:
    """Read the header of every DICOM image file under ``root`` (recursively).

    Parameters
    ----------
    root : path-like
        A folder (searched recursively) or one DICOM file.
    key : bytes, optional
        The study's pseudonym key (:func:`her2dlr.io.deid.load_or_create_key`); without it the
        pseudonyms are stable within this process only.

    Returns
    -------
    slices : list of SliceHeader
        One per image file (one per frame of an enhanced multi-frame file), in path order.
    skipped : list of Path
        Files that are not DICOM, or DICOM without an image (DICOMDIR, reports, RT plans).

    Raises
    ------
    InputError
        ``root`` does not exist, or an image file lacks pixel data or geometry.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"DICOM folder {root} does not exist.")
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    key = _SESSION_KEY if key is None else key
    slices, skipped = [], []
    for path in files:
        try:
            ds = pydicom.dcmread(path, defer_size=1024)
        except (InvalidDicomError, EOFError, OSError, ValueError):
            skipped.append(path)
            continue
        media_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
        if media_class == _MEDIA_STORAGE_DIRECTORY or "Rows" not in ds:
            skipped.append(path)
            continue
        slices += _headers(path, ds, key)
    return slices, skipped


def find_studies(root: str | os.PathLike[str], *, key: bytes | None = None) -> list[StudyFiles]:
    """Find the studies (one patient, one StudyInstanceUID each) under ``root``.

    Files may be spread over any folder tree; an enhanced multi-frame file is a series of its
    own (possibly every phase of a dynamic study). A single folder holding the files of two
    patients is refused: that is a misfiled export, and splitting it silently would hide it.

    Returns
    -------
    list of StudyFiles
        Ordered by the folder that holds each study's files.

    Raises
    ------
    InputError
        No DICOM image under ``root``; a folder with two patients' files.
    """
    slices, skipped = read_slice_headers(root, key=key)
    if not slices:
        extra = f" ({len(skipped)} other files skipped, e.g. {skipped[0].name})" if skipped else ""
        raise InputError(f"No DICOM image file under {root}{extra}.")
    patients_by_folder: dict[Path, dict[str, Path]] = defaultdict(dict)
    for s in slices:
        patients_by_folder[s.path.parent].setdefault(s.patient, s.path)
    for folder, patients in patients_by_folder.items():
        if len(patients) > 1:
            examples = ", ".join(p.name for p in list(patients.values())[:3])
            raise InputError(f"Folder {folder} mixes the DICOM files of {len(patients)} patients (e.g. files "
                             f"{examples} belong to different patients). Put each patient's files in their own folder.")
    groups: dict[tuple[str, str], list[SliceHeader]] = defaultdict(list)
    for s in slices:
        groups[(s.patient, s.study)].append(s)
    studies = []
    for (patient, study), members in groups.items():
        folder = Path(os.path.commonpath([str(s.path.parent) for s in members]))
        studies.append(StudyFiles(patient=patient, study=study, folder=folder, slices=members))
    return sorted(studies, key=lambda s: str(s.folder))


def slice_positions(slices: list[SliceHeader]) -> np.ndarray:
    """Position of each slice along the common slice normal (mm)."""
    normal = slices[0].normal
    return np.array([float(np.dot(normal, s.position)) for s in slices])


def _check_same_plane(slices: list[SliceHeader], what: str) -> None:
    first = slices[0]
    for s in slices[1:]:
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise InputError(f"{what}: slice {s.name} is {s.columns}x{s.rows} pixels but {first.name} is "
                             f"{first.columns}x{first.rows}; one volume needs one matrix size.")
        if not np.allclose(s.orientation, first.orientation, atol=1e-3):
            raise InputError(f"{what}: slice {s.name} has orientation {s.orientation}, unlike {first.name} "
                             f"{first.orientation}; the series mixes planes.")
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise InputError(f"{what}: slice {s.name} has pixel spacing {s.pixel_spacing}, unlike "
                             f"{first.name} {first.pixel_spacing}.")


def ordered_slices(slices: list[SliceHeader], what: str) -> tuple[list[SliceHeader], float]:
    """Slices ordered along the normal and their spacing; refuses duplicates, gaps and uneven spacing.

    Raises
    ------
    InputError
        Two slices at one position, or a gap that differs from the median gap by more than
        :data:`SPACING_TOLERANCE` (a missing slice shows as a double gap).
    """
    _check_same_plane(slices, what)
    positions = slice_positions(slices)
    order = np.argsort(positions, kind="stable")
    ordered = [slices[i] for i in order]
    if len(ordered) == 1:
        return ordered, 1.0
    gaps = np.diff(positions[order])
    if (gaps < 1e-4).any():
        k = int(np.argmax(gaps < 1e-4))
        raise InputError(f"{what}: slices {ordered[k].name} and {ordered[k + 1].name} lie at the same "
                         f"position ({positions[order][k]:.3f} mm along the normal); the series holds several phases "
                         "or duplicated files.")
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > SPACING_TOLERANCE * median + 1e-3)
    if len(bad):
        k = int(bad[0])
        raise InputError(
            f"{what}: uneven slice spacing ({gaps[k]:.3f} mm between {ordered[k].name} and "
            f"{ordered[k + 1].name}, median {median:.3f} mm; {len(bad)} uneven gap(s) of {len(gaps)}). "
            "A slice is probably missing; export the complete series.")
    return ordered, median


def _pixels(path: Path) -> np.ndarray:
    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array.astype(np.float32)
    except Exception as exc:  # decoder errors of any kind are a property of the file
        raise InputError(f"Cannot decode the pixel data of DICOM file {path}: {exc}") from None
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr * slope + intercept


def _slice_pixels(ordered: list[SliceHeader]) -> np.ndarray:
    """The rescaled float32 pixels of the slices, stacked in their order (each multi-frame file decoded once)."""
    planes: list[np.ndarray | None] = [None] * len(ordered)
    frames_by_file: dict[Path, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(ordered):
        if s.frame is None:
            planes[i] = _pixels(s.path)
        else:
            frames_by_file[s.path][s.frame].append(i)
    for path, wanted in frames_by_file.items():
        for frame, stored in read_frames(path, list(wanted)):
            for i in wanted[frame]:
                slope, intercept = ordered[i].rescale
                planes[i] = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return np.stack(planes)  # type: ignore[arg-type]


def stack_slices(slices: list[SliceHeader], *, what: str = "series") -> sitk.Image:
    """Build a float32 3D ``SimpleITK.Image`` from the slices of one volume, with its DICOM geometry.

    Parameters
    ----------
    slices : list of SliceHeader
        The slices of one volume (one phase), in any order.
    what : str
        How to name the volume in messages.

    Raises
    ------
    InputError
        Mixed matrix sizes or planes, duplicate positions, missing slices, undecodable pixels.
    """
    ordered, gap = ordered_slices(slices, what)
    first = ordered[0]
    volume = _slice_pixels(ordered)
    image = sitk.GetImageFromArray(volume)
    row_dir, col_dir = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
    normal = first.normal
    image.SetDirection(tuple(np.column_stack([row_dir, col_dir, normal]).ravel().tolist()))
    image.SetOrigin(tuple(float(v) for v in first.position))
    # PixelSpacing is (between rows, between columns) = (y, x)
    image.SetSpacing((float(first.pixel_spacing[1]), float(first.pixel_spacing[0]), float(gap)))
    return image
