"""DCE-MRI phases: split a dynamic study into phases, name them, pick them by rule, derive kinetic maps.

Vendors store a dynamic acquisition in one of two ways, and fill different tags:

* one series per phase (the phases differ by SeriesInstanceUID; their order comes from
  TemporalPositionIdentifier, TriggerTime, AcquisitionTime, AcquisitionNumber or SeriesNumber,
  the first that every phase fills with distinct values);
* one series holding every phase (several slices share a position; the phases are told apart
  by the first of :data:`~her2dlr.io.dicom_series.TEMPORAL_TAGS` whose values split the slices
  into complete volumes; acquisition times that differ slice by slice are cut into consecutive
  blocks of complete volumes).

Both may mix (a pre-contrast series plus a multi-phase post-contrast series). An enhanced
multi-frame file (Enhanced MR, one file per series) is read frame by frame and then split the
same way, by the temporal attributes of its per-frame functional groups (TemporalPositionIndex,
a temporal DimensionIndexValues entry, FrameAcquisitionDateTime, TriggerTime ...); its layout
is recorded as ``enhanced-`` + the layout above. The first
``n_pre`` phases in time are pre-contrast (role ``pre``), the rest ``post1`` .. ``postN``.
A 4D NIfTI / NRRD is split along its fourth axis.

Phase rules (:func:`select_phase`): ``pre``, ``post<k>``, ``last``, ``peak`` (the post-contrast
phase of largest mean enhancement over the mask, or over the whole volume without one).
Kinetic maps (:func:`kinetic_maps`), voxel-wise:

* ``subtraction``: chosen phase - pre-contrast;
* ``wash_in``: (S_post1 - S_pre) / (t_post1 - t_pre), per second when acquisition times are
  known, else per phase;
* ``ser``: signal enhancement ratio (S_post1 - S_pre) / (S_last - S_pre) (Hylton's SER),
  0 where the late enhancement is below 1% of the pre-contrast range;
* ``ttp``: time to peak, the time (s, or phase number) of the largest signal after ``pre``.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from her2dlr.errors import InputError, nearest
from her2dlr.io.deid import pseudonym
from her2dlr.io.dicom_series import (
    TEMPORAL_TAGS,
    SliceHeader,
    StudyFiles,
    find_studies,
    ordered_slices,
    slice_positions,
    stack_slices,
)
from her2dlr.io.images import sitk_file_name

__all__ = [
    "KINETIC_MAPS",
    "DcePhases",
    "kinetic_maps",
    "phase_roles",
    "read_dce_folder",
    "read_dce_study",
    "read_dce_volume",
    "select_phase",
]

KINETIC_MAPS: tuple[str, ...] = ("subtraction", "wash_in", "ser", "ttp")
ORDER_TAGS: tuple[str, ...] = ("TemporalPositionIdentifier", "TemporalPositionIndex", "DimensionIndexValues",
                               "TriggerTime", "NominalCardiacTriggerDelayTime", "TemporalPositionTimeOffset",
                               "FrameAcquisitionDateTime", "AcquisitionTime", "AcquisitionNumber", "SeriesNumber")
TIME_TAGS: tuple[str, ...] = ("TriggerTime", "NominalCardiacTriggerDelayTime", "TemporalPositionTimeOffset",
                              "FrameAcquisitionDateTime", "AcquisitionTime")
"""Tags that give the phases' acquisition times (seconds), in the order they are tried."""
_RULE = re.compile(r"^(pre|post(\d+)|last|peak)$")


@dataclass
class DcePhases:
    """The phases of one DCE study, in time order, with how they were found (nothing identifying).

    Attributes
    ----------
    case_id, patient_id : str
        Pseudonyms of the study and the patient.
    phases : list of SimpleITK.Image
        One float32 3D volume per phase, all of one geometry.
    roles : list of str
        ``pre`` (or ``pre1``, ``pre2`` when ``n_pre > 1``), ``post1`` .. ``postN``.
    times_s : list of float or None
        Acquisition time of each phase relative to the first (seconds), None when no tag gives it.
    layout : str
        ``series-per-phase``, ``multi-phase-series``, ``mixed`` or ``4d-volume``; prefixed with
        ``enhanced-`` when the slices are frames of enhanced multi-frame files.
    split_tag : str
        What told the phases apart (``SeriesInstanceUID`` or a temporal tag, ``axis 4`` for 4D files).
    order_tag : str
        What ordered the phases in time.
    time_tag : str or None
        Which tag gave ``times_s``.
    manufacturer : str
    """

    case_id: str
    patient_id: str
    phases: list[sitk.Image]
    roles: list[str]
    times_s: list[float | None]
    layout: str
    split_tag: str
    order_tag: str
    time_tag: str | None = None
    manufacturer: str = ""
    n_series: int = 1
    folder: Path | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """One QC-table row: how this case's phases were found (identifying nothing)."""
        size = "x".join(str(s) for s in self.phases[0].GetSize())
        return {
            "dce_layout": self.layout, "dce_split_tag": self.split_tag, "dce_order_tag": self.order_tag,
            "dce_time_tag": self.time_tag or "", "dce_n_phases": len(self.phases),
            "dce_roles": " ".join(self.roles), "dce_n_series": self.n_series,
            "dce_times_s": " ".join(f"{t:g}" for t in self.times_s if t is not None),
            "dce_size": size, "manufacturer": self.manufacturer,
        }

    def index(self, role: str) -> int:
        """Position of the phase of ``role``."""
        if role not in self.roles:
            raise InputError(f"Phase '{role}' not found in case {self.case_id}; its phases are "
                             f"{self.roles}.{nearest(role, self.roles)}")
        return self.roles.index(role)


def phase_roles(n_phases: int, n_pre: int = 1) -> list[str]:
    """Role of each phase in time order: ``pre`` (``pre1`` .. when ``n_pre > 1``), then ``post1`` .. ``postN``."""
    if n_pre < 1 or n_pre >= n_phases:
        raise InputError(f"A DCE study needs at least one pre- and one post-contrast phase: {n_phases} phase(s) "
                         f"found, n_pre={n_pre}.")
    pre = ["pre"] if n_pre == 1 else [f"pre{k}" for k in range(1, n_pre + 1)]
    return pre + [f"post{k}" for k in range(1, n_phases - n_pre + 1)]


# --------------------------------------------------------------------------- splitting
def _has_repeated_positions(slices: list[SliceHeader]) -> bool:
    positions = np.round(slice_positions(slices), 3)
    return len(np.unique(positions)) < len(positions)


def _time_blocks(slices: list[SliceHeader], tag: str, n_positions: int) -> list[list[SliceHeader]] | None:
    """Phases as consecutive blocks in time, for acquisition times that differ slice by slice (2D multi-slice).

    Sorted by time, every block of ``n_positions`` slices must hold each position once and end
    before the next block starts; otherwise None.
    """
    if len(slices) % n_positions:
        return None
    ordered = sorted(slices, key=lambda s: s.temporal[tag])
    blocks = [ordered[i:i + n_positions] for i in range(0, len(ordered), n_positions)]
    if any(_has_repeated_positions(block) for block in blocks):
        return None
    if any(a[-1].temporal[tag] >= b[0].temporal[tag] for a, b in pairwise(blocks)):
        return None
    return blocks


def _split_multiphase(slices: list[SliceHeader], what: str) -> tuple[list[list[SliceHeader]], str]:
    """Split one series holding several phases by the first temporal tag that yields whole volumes.

    A time tag with more values than there can be phases (a time per slice) splits the series
    into consecutive blocks of whole volumes instead (recorded as ``<tag> (blocks)``).
    """
    n_positions = len(np.unique(np.round(slice_positions(slices), 3)))
    n_phases = -(-len(slices) // n_positions)
    tried = []
    for tag in TEMPORAL_TAGS:
        if not all(tag in s.temporal for s in slices):
            continue
        groups: dict[float, list[SliceHeader]] = defaultdict(list)
        for s in slices:
            groups[round(s.temporal[tag], 3)].append(s)
        if len(groups) < 2:
            tried.append(f"{tag} (one value)")
            continue
        sizes = {value: len(members) for value, members in groups.items()}
        if all(not _has_repeated_positions(members) for members in groups.values()):
            if len(groups) > n_phases and tag in TIME_TAGS:
                blocks = _time_blocks(slices, tag, n_positions)
                if blocks is not None:
                    return blocks, f"{tag} (blocks)"
                tried.append(f"{tag} ({len(groups)} values, not in blocks of whole volumes)")
                continue
            if len(set(sizes.values())) > 1:
                shown = ", ".join(f"{tag}={v:g}: {n} slices" for v, n in sorted(sizes.items()))
                raise InputError(f"{what}: phases of different sizes ({shown}); every phase needs all "
                                 f"{n_positions} slice positions.")
            return [groups[v] for v in sorted(groups)], tag
        tried.append(f"{tag} ({len(groups)} values, not whole volumes)")
    raise InputError(f"{what}: several slices share a position but no tag splits them into phases; tried "
                     f"{', '.join(tried) or 'none of ' + ', '.join(TEMPORAL_TAGS) + ' (absent)'}.")


def _phase_value(members: list[SliceHeader], tag: str) -> float | None:
    if tag == "SeriesNumber":
        numbers = {s.series_number for s in members}
        return float(min(numbers)) if None not in numbers else None  # type: ignore[type-var]
    values = [s.temporal.get(tag) for s in members]
    return None if any(v is None for v in values) else float(min(values))  # type: ignore[type-var]


def _order(phases: list[list[SliceHeader]], what: str) -> tuple[list[list[SliceHeader]], str]:
    if len(phases) == 1:
        return phases, "none"
    for tag in ORDER_TAGS:
        values = [_phase_value(p, tag) for p in phases]
        if None not in values and len(set(values)) == len(values):
            order = np.argsort(np.asarray(values, dtype=float), kind="stable")
            return [phases[i] for i in order], tag
    raise InputError(f"{what}: {len(phases)} phases found but no tag orders them in time (tried "
                     f"{', '.join(ORDER_TAGS)}: each must be filled and differ between phases).")


def _times(phases: list[list[SliceHeader]]) -> tuple[list[float | None], str | None]:
    for tag in TIME_TAGS:
        values = [_phase_value(p, tag) for p in phases]
        if None not in values and len(set(values)) == len(values):
            t0 = values[0]
            return [round(float(v) - float(t0), 3) for v in values], tag  # type: ignore[arg-type]
    return [None] * len(phases), None


def _check_same_grid(phases: list[list[SliceHeader]], what: str) -> None:
    reference = None
    for k, members in enumerate(phases, start=1):
        ordered, _ = ordered_slices(members, f"{what} phase {k}")
        grid = (len(ordered), ordered[0].rows, ordered[0].columns)
        if reference is None:
            reference = (grid, slice_positions(ordered), k)
            continue
        if grid != reference[0] or not np.allclose(slice_positions(ordered), reference[1], atol=1e-2):
            shape = f"{grid[2]}x{grid[1]}x{grid[0]}"
            first = f"{reference[0][2]}x{reference[0][1]}x{reference[0][0]}"
            raise InputError(f"{what}: phases of different sizes or positions (phase {reference[2]} is {first}, "
                             f"phase {k} is {shape} voxels, from {members[0].name}); all phases must share one grid.")


def read_dce_study(
    study: StudyFiles, *, n_pre: int = 1, series_description: str | None = None, progress: bool = False
) -> DcePhases:
    """Split one study's image files into DCE phases and read them.

    Parameters
    ----------
    study : StudyFiles
        From :func:`her2dlr.io.dicom_series.find_studies`.
    n_pre : int, default 1
        Number of pre-contrast phases.
    series_description : str, optional
        Regular expression on SeriesDescription choosing the dynamic series; by default every
        image series of the study is taken.
    progress : bool
        Unused; kept for symmetry with the other readers.

    Raises
    ------
    InputError
        No series left by the filter, phases of different sizes, no tag to split or order the
        phases, missing slices or uneven spacing.
    """
    what = f"DICOM study in {study.folder}"
    series = study.series
    if series_description is not None:
        pattern = re.compile(series_description, re.IGNORECASE)
        series = {uid: s for uid, s in series.items() if pattern.search(s[0].description)}
        if not series:
            raise InputError(f"{what}: no series description matches {series_description!r} "
                             f"({len(study.series)} series in the study).")
    phases: list[list[SliceHeader]] = []
    split_tags = []
    for members in series.values():
        if _has_repeated_positions(members):
            files = {s.path for s in members}
            in_file = f", file {members[0].path.name}" if len(files) == 1 else ""
            parts, tag = _split_multiphase(members, f"{what}, series {members[0].series_number}{in_file}")
            phases += parts
            split_tags.append(tag)
        else:
            phases.append(members)
    multi = len(split_tags) > 0
    layout = ("multi-phase-series" if len(series) == 1 else "mixed") if multi else "series-per-phase"
    if any(s.frame is not None for members in series.values() for s in members):
        layout = f"enhanced-{layout}"
    split_tag = ("+".join(dict.fromkeys(split_tags)) if len(series) == 1 else
                 "SeriesInstanceUID" + "".join(f"+{t}" for t in dict.fromkeys(split_tags)))
    if len(phases) < 2:
        raise InputError(f"{what}: one volume found ({len(phases[0])} slices), not a dynamic series; a DCE study "
                         "needs a pre-contrast and at least one post-contrast phase.")
    _check_same_grid(phases, what)
    phases, order_tag = _order(phases, what)
    times, time_tag = _times(phases)
    volumes = [stack_slices(members, what=f"{what} phase {k}") for k, members in enumerate(phases, start=1)]
    return DcePhases(
        case_id=study.study, patient_id=study.patient, phases=volumes, roles=phase_roles(len(volumes), n_pre),
        times_s=times, layout=layout, split_tag=split_tag, order_tag=order_tag, time_tag=time_tag,
        manufacturer=phases[0][0].manufacturer, n_series=len(series), folder=study.folder,
    )


def read_dce_folder(
    folder: str | os.PathLike[str], *, key: bytes | None = None, n_pre: int = 1,
    series_description: str | None = None,
) -> DcePhases:
    """Read the one DCE study in ``folder`` (any layout; files may sit in subfolders).

    Raises
    ------
    InputError
        The folder holds no DICOM image, several patients or several studies, or a bad series
        (see :func:`read_dce_study`).
    """
    studies = find_studies(folder, key=key)
    if len({s.patient for s in studies}) > 1:
        raise InputError(f"Folder {folder} holds the DICOM files of {len({s.patient for s in studies})} patients; "
                         "give one patient's folder, or use a cohort source of kind 'dicom' for many.")
    if len(studies) > 1:
        raise InputError(f"Folder {folder} holds {len(studies)} studies of one patient "
                         f"(in {', '.join(str(s.folder) for s in studies[:3])}); give one study's folder.")
    return read_dce_study(studies[0], n_pre=n_pre, series_description=series_description)


def read_dce_volume(path: str | os.PathLike[str], *, key: bytes | None = None, n_pre: int = 1) -> DcePhases:
    """Read a 4D NIfTI / NRRD / MHA (x, y, z, phase) as DCE phases.

    The case id is a pseudonym of the file name (file names often carry patient ids).

    Raises
    ------
    InputError
        The file is missing, unreadable or not 4D.
    """
    from her2dlr.io.dicom_series import _SESSION_KEY

    path = Path(path)
    if not path.is_file():
        raise InputError(f"4D volume {path} does not exist.")
    try:
        image = sitk.ReadImage(sitk_file_name(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read 4D volume {path}: {str(exc).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 4:
        raise InputError(f"{path} is {image.GetDimension()}D; a DCE volume file must be 4D (x, y, z, phase).")
    size = list(image.GetSize())
    phases = []
    for k in range(size[3]):
        vol = sitk.Extract(image, [*size[:3], 0], [0, 0, 0, k])
        phases.append(sitk.Cast(vol, sitk.sitkFloat32))
    stem = path.name.split(".")[0]
    key = _SESSION_KEY if key is None else key
    return DcePhases(
        case_id=pseudonym(stem, key, prefix="case"), patient_id=pseudonym(stem, key, prefix="patient"),
        phases=phases, roles=phase_roles(len(phases), n_pre), times_s=[None] * len(phases),
        layout="4d-volume", split_tag="axis 4", order_tag="axis 4",
    )


# --------------------------------------------------------------------------- rules and maps
def _mean_enhancement(dce: DcePhases, k: int, mask: sitk.Image | None) -> float:
    pre = sitk.GetArrayViewFromImage(dce.phases[0])
    arr = sitk.GetArrayViewFromImage(dce.phases[k])
    if mask is None:
        return float(np.mean(arr - pre))
    m = sitk.GetArrayViewFromImage(mask) > 0
    if m.shape != arr.shape:
        raise InputError(f"Mask of size {m.shape[::-1]} does not fit the phases of case {dce.case_id} "
                         f"({arr.shape[::-1]}).")
    return float(np.mean((arr - pre)[m])) if m.any() else float("nan")


def select_phase(dce: DcePhases, rule: str, *, mask: sitk.Image | None = None) -> int:
    """Index of the phase a rule picks.

    Parameters
    ----------
    rule : {"pre", "post<k>", "last", "peak"}
        ``peak``: the post-contrast phase of largest mean enhancement (phase - pre) over the
        mask, or over the whole volume when no mask is given.

    Raises
    ------
    InputError
        Unknown rule, or a rule that names a phase the case does not have (the message lists
        the phases found).
    """
    match = _RULE.match(str(rule).strip().lower())
    if not match:
        raise InputError(f"Unknown phase rule {rule!r}; use 'pre', 'post<k>' (e.g. 'post3'), 'last' or 'peak'.")
    text = match.group(1)
    if text == "last":
        return len(dce.phases) - 1
    if text == "peak":
        post = [k for k, r in enumerate(dce.roles) if r.startswith("post")]
        scores = [_mean_enhancement(dce, k, mask) for k in post]
        return post[int(np.nanargmax(scores))]
    if text == "pre":
        return 0
    if text not in dce.roles:
        times = ", ".join(f"{r} ({t:g} s)" if t is not None else r for r, t in zip(dce.roles, dce.times_s))
        raise InputError(f"Phase rule {rule!r} matches no phase of case {dce.case_id} (layout {dce.layout}, split by "
                         f"{dce.split_tag}); phases found: {times}.")
    return dce.roles.index(text)


def _like(arr: np.ndarray, reference: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(reference)
    return out


def kinetic_maps(dce: DcePhases, names: list[str] | tuple[str, ...] = KINETIC_MAPS, *, phase: int | None = None
                 ) -> dict[str, sitk.Image]:
    """Voxel-wise kinetic maps of a DCE study (see the module notes for their definitions).

    Parameters
    ----------
    names : sequence of {"subtraction", "wash_in", "ser", "ttp"}
    phase : int, optional
        Phase subtracted for ``subtraction`` (default: the first post-contrast phase).

    Returns
    -------
    dict of str to SimpleITK.Image
        Float32 images with the phases' geometry.
    """
    unknown = [n for n in names if n not in KINETIC_MAPS]
    if unknown:
        raise InputError(f"Unknown kinetic map {unknown[0]!r}; known: {list(KINETIC_MAPS)}.{nearest(unknown[0], KINETIC_MAPS)}")
    n_pre = sum(r.startswith("pre") for r in dce.roles)
    stack = np.stack([sitk.GetArrayFromImage(p) for p in dce.phases]).astype(np.float64)
    pre = stack[:n_pre].mean(axis=0)
    first, last = stack[n_pre], stack[-1]
    known = all(t is not None for t in dce.times_s)
    times = np.array([t if known else k for k, t in enumerate(dce.times_s)], dtype=float)
    t_pre = times[:n_pre].mean()
    out: dict[str, sitk.Image] = {}
    ref = dce.phases[0]
    for name in names:
        if name == "subtraction":
            k = n_pre if phase is None else int(phase)
            out[name] = _like(stack[k] - pre, ref)
        elif name == "wash_in":
            dt = max(times[n_pre] - t_pre, 1e-6)
            out[name] = _like((first - pre) / dt, ref)
        elif name == "ser":
            late = last - pre
            floor = 0.01 * max(float(np.ptp(pre)), 1e-6)
            with np.errstate(divide="ignore", invalid="ignore"):
                ser = np.where(np.abs(late) > floor, (first - pre) / np.where(late == 0, 1, late), 0.0)
            out[name] = _like(ser, ref)
        elif name == "ttp":
            peak = np.argmax(stack[n_pre:], axis=0) + n_pre
            out[name] = _like(times[peak] - t_pre, ref)
    return out
