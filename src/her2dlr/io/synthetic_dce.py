"""Synthetic DCE-MRI studies written as real DICOM files, for tests and benchmarks.

No DCE-MRI cohort with HER2 labels can be brought here, so the DICOM phase reader, the
de-identification and the MRI pipeline are exercised on studies simulated by this module.
It sits in ``io`` because it only writes files that the ``io`` readers read back; it imports
nothing above ``io``.

What is simulated
-----------------
* A breast-like background: an ellipsoid of fibroglandular tissue with smooth random texture,
  or (``background=``) a real volume such as ``../shared/data/mri-breast1``, resampled.
* One enhancing lesion (an irregular ellipsoid) whose kinetics and texture depend on the class:
  class 0 enhances slowly and persistently (curve type I), class 1 reaches a plateau (type II),
  class 2 enhances fast and washes out (type III); the internal heterogeneity grows with the
  class. Amplitudes and time constants are jittered per case, and Rician-like noise is added,
  so the classes overlap.
* Geometry: anisotropic voxels, a random origin and an oblique orientation, slices written in
  a shuffled file order with instance numbers running against the slice normal.
* Identifying attributes (PatientName, PatientID, PatientBirthDate, InstitutionName,
  AccessionNumber, ReferringPhysicianName, StudyDate ...) are filled, so tests can prove that
  none of them leaves the readers.

Vendor-like layouts (:data:`LAYOUTS`)
-------------------------------------
``series-per-phase``    one series per phase, ordered by AcquisitionNumber only
``temporal-position``   one series of all phases with TemporalPositionIdentifier and AcquisitionTime
``trigger-time``        one series of all phases with TriggerTime only (AcquisitionNumber constant)
``acquisition-time``    one series per phase with shuffled SeriesNumbers, ordered by AcquisitionTime only
``enhanced-temporal-index``  one Enhanced MR file of all phases: TemporalPositionIndex, DimensionIndexValues
                        and FrameAcquisitionDateTime per frame, shared geometry and rescale
``enhanced-datetime``   one Enhanced MR file of all phases told apart by FrameAcquisitionDateTime only,
                        geometry and rescale per frame (:mod:`her2dlr.io.synthetic_enhanced`)

What it cannot show: real scanners' bias fields, motion between phases, fat suppression,
partial-volume effects at real lesion margins, or how HER2 status actually shapes kinetics; nor
the private tags and compressed transfer syntaxes of real vendors' enhanced files, or 2D
multi-slice timing (every slice of a phase here has one acquisition time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from scipy import ndimage

from her2dlr.errors import InputError
from her2dlr.io.synthetic_enhanced import write_enhanced_file

__all__ = ["LAYOUTS", "CaseGeometry", "SyntheticCase", "simulate_case", "write_dce_dicom", "write_synthetic_cohort"]

LAYOUTS: tuple[str, ...] = ("series-per-phase", "temporal-position", "trigger-time", "acquisition-time",
                            "enhanced-temporal-index", "enhanced-datetime")

#: Per class: (relative peak enhancement, wash-in time constant s, wash-out rate 1/s, texture amplitude)
KINETICS = {0: (0.7, 110.0, 0.0, 0.03), 1: (1.3, 70.0, 0.0012, 0.15), 2: (1.8, 40.0, 0.0035, 0.3)}
IHC_OF_CLASS = {0: ("0", "negative"), 1: ("1+", "negative"), 2: ("3+", "")}


@dataclass(frozen=True)
class CaseGeometry:
    """Voxel spacing (x, y, z mm), origin (mm) and the direction cosines of rows, columns and the normal."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_dir, self.col_dir)

    def world(self, index_xyz: np.ndarray) -> np.ndarray:
        """World coordinates (mm) of voxel indices given as rows of (x, y, z)."""
        idx = np.atleast_2d(np.asarray(index_xyz, dtype=float)) * np.asarray(self.spacing)
        axes = np.stack([self.row_dir, self.col_dir, self.normal])
        return np.asarray(self.origin) + idx @ axes


@dataclass
class SyntheticCase:
    """One simulated study before it is written: phases (z, y, x), lesion mask, times and truth."""

    phases: list[np.ndarray]
    mask: np.ndarray
    times_s: list[float]
    label: int
    geometry: CaseGeometry


def _random_geometry(rng: np.random.Generator) -> CaseGeometry:
    a, b = np.deg2rad(rng.uniform(-15, 15)), np.deg2rad(rng.uniform(-10, 10))
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rx @ rz
    spacing = (round(float(rng.uniform(0.6, 0.9)), 4),) * 2 + (round(float(rng.choice([1.5, 2.0, 2.5])), 2),)
    origin = tuple(round(float(v), 3) for v in rng.uniform(-150, 50, size=3))
    return CaseGeometry(spacing=spacing, origin=origin,  # type: ignore[arg-type]
                        row_dir=tuple(rot[:, 0].round(6)), col_dir=tuple(rot[:, 1].round(6)))  # type: ignore[arg-type]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field / (field.std() + 1e-9)


def _background(rng: np.random.Generator, shape: tuple[int, int, int], background: np.ndarray | None) -> np.ndarray:
    if background is not None:
        bg = np.asarray(background, dtype=float)
        if any(b < s for b, s in zip(bg.shape, shape)):
            bg = ndimage.zoom(bg, [max(1.0, s / b) for s, b in zip(shape, bg.shape)], order=1)
        # a random block, randomly mirrored, so that cases do not share one anatomy
        start = [int(rng.integers(0, b - s + 1)) for b, s in zip(bg.shape, shape)]
        bg = bg[tuple(slice(a, a + s) for a, s in zip(start, shape))]
        if rng.random() < 0.5:
            bg = bg[:, :, ::-1]
        lo, hi = np.percentile(bg, [1, 99])
        return 300.0 + 500.0 * np.clip((bg - lo) / max(hi - lo, 1e-6), 0, 1.5)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    breast = (x**2 / 0.9 + y**2 / 0.8 + z**2 / 1.2) < 1.0
    tissue = 500.0 + 120.0 * _smooth_noise(rng, shape, 2.0)
    return np.where(breast, tissue, 60.0)


def simulate_case(
    label: int, rng: np.random.Generator, *, shape: tuple[int, int, int] = (12, 40, 40), n_phases: int = 4,
    background: np.ndarray | None = None, separation: float = 1.0,
) -> SyntheticCase:
    """Simulate one DCE study of class ``label`` (0, 1 or 2).

    Parameters
    ----------
    label : {0, 1, 2}
        HER2-zero, HER2-low, HER2-positive (see :data:`KINETICS`).
    rng : numpy.random.Generator
    shape : tuple of int, default (12, 40, 40)
        Volume size (z, y, x).
    n_phases : int, default 4
        One pre-contrast and ``n_phases - 1`` post-contrast phases, about 60 s apart.
    background : ndarray, optional
        A real 3D volume (z, y, x) to use as anatomy; resampled to ``shape``.
    separation : float, default 1.0
        How far each class's kinetics and texture lie from those of class 1: 1 as in
        :data:`KINETICS`, 0 makes the classes identical (no signal), values between give a
        harder task.
    """
    if label not in KINETICS:
        raise InputError(f"Synthetic class {label!r} is not one of {sorted(KINETICS)}.")
    if n_phases < 2:
        raise InputError(f"A DCE study needs at least 2 phases; got n_phases={n_phases}.")
    middle = np.asarray(KINETICS[1])
    amplitude, tau, washout, texture = (middle + separation * (np.asarray(KINETICS[label]) - middle)).tolist()
    amplitude *= rng.uniform(0.85, 1.15)
    tau *= rng.uniform(0.8, 1.25)
    base = _background(rng, shape, background)
    centre = np.array(shape) / 2 + rng.uniform(-0.12, 0.12, 3) * np.array(shape)
    radii = np.array([max(2.5, shape[0] * 0.22), shape[1] * 0.16, shape[2] * 0.16]) * rng.uniform(0.8, 1.2, 3)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1)
    distance = np.sqrt((((grid - centre) / radii) ** 2).sum(-1)) + 0.15 * _smooth_noise(rng, shape, 1.5)
    mask = distance < 1.0
    heterogeneity = np.clip(1.0 + texture * _smooth_noise(rng, shape, 0.8), 0.2, None)
    times = [0.0] + [round(60.0 * k + float(rng.uniform(-3, 3)), 1) for k in range(1, n_phases)]
    phases = []
    for t in times:
        curve = amplitude * (1 - np.exp(-t / tau)) * np.exp(-washout * t)
        tissue_curve = 0.25 * (1 - np.exp(-t / 200.0))
        signal = base * (1 + tissue_curve) + np.where(mask, base * curve * heterogeneity, 0.0)
        noisy = np.hypot(signal + rng.normal(0, 12.0, shape), rng.normal(0, 12.0, shape))
        phases.append(np.clip(noisy, 0, 4000).astype(np.uint16))
    return SyntheticCase(phases=phases, mask=mask.astype(np.uint8), times_s=times, label=label,
                         geometry=_random_geometry(rng))


def _time_text(seconds: float) -> str:
    base = 9 * 3600 + 30 * 60 + seconds
    h, rem = divmod(base, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def _slice_dataset(case: SyntheticCase, identity: dict[str, str], uids: dict[str, str], k: int, z: int) -> Dataset:
    geo = case.geometry
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.Manufacturer = "SYNTHETIC"
    for keyword, value in identity.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID = uids["study"]
    ds.FrameOfReferenceUID = uids["frame"]
    ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*geo.row_dir, *geo.col_dir)]
    position = geo.world(np.array([[0, 0, z]]))[0]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
    ds.PixelSpacing = [f"{geo.spacing[1]:g}", f"{geo.spacing[0]:g}"]
    ds.SliceThickness = f"{geo.spacing[2]:g}"
    ds.SpacingBetweenSlices = f"{geo.spacing[2]:g}"
    rows, cols = case.phases[k].shape[1:]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = "1", "0"
    ds.PixelData = np.ascontiguousarray(case.phases[k][z]).tobytes()
    return ds


def _fill_layout(ds: Dataset, layout: str, case: SyntheticCase, uids: dict[str, str], k: int, z: int,
                 series_numbers: list[int]) -> None:
    n_slices = case.phases[0].shape[0]
    n_phases = len(case.phases)
    per_phase = layout in ("series-per-phase", "acquisition-time")
    ds.SeriesInstanceUID = uids[f"series{k}"] if per_phase else uids["series0"]
    ds.SeriesNumber = series_numbers[k] if per_phase else 5
    ds.SeriesDescription = f"DYN {k}" if per_phase else "DYNAMIC"
    # instance numbers run against the slice normal, phase after phase
    ds.InstanceNumber = (n_slices - z) if per_phase else k * n_slices + (n_slices - z)
    if layout == "series-per-phase":
        ds.AcquisitionNumber = k + 1
    elif layout == "temporal-position":
        ds.TemporalPositionIdentifier = k + 1
        ds.NumberOfTemporalPositions = n_phases
        ds.AcquisitionNumber = 1
        ds.AcquisitionTime = _time_text(case.times_s[k])
    elif layout == "trigger-time":
        ds.TriggerTime = f"{case.times_s[k] * 1000:.1f}"
        ds.AcquisitionNumber = 1
    elif layout == "acquisition-time":
        ds.AcquisitionNumber = 1
        ds.AcquisitionTime = _time_text(case.times_s[k])
    else:
        raise InputError(f"Unknown DICOM layout {layout!r}; known: {list(LAYOUTS)}.")


def write_dce_dicom(
    case: SyntheticCase, folder: str | os.PathLike[str], *, layout: str, identity: dict[str, str],
    rng: np.random.Generator, mask_name: str | None = "mask.nrrd",
) -> Path:
    """Write a simulated study as DICOM files (MR Image Storage, explicit VR little endian) in ``folder``.

    Files are named in a shuffled order; per-phase layouts put each phase in a subfolder. The
    ``enhanced-*`` layouts write one Enhanced MR Image Storage file (``IM00000``) holding every
    frame, in a shuffled frame order.
    When ``mask_name`` is given the lesion mask is written beside them as NRRD with the
    volume's geometry.

    Parameters
    ----------
    identity : dict
        DICOM keyword -> value of the identifying attributes (PatientName, PatientID ...).
    """
    if layout not in LAYOUTS:
        raise InputError(f"Unknown DICOM layout {layout!r}; known: {list(LAYOUTS)}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_phases, n_slices = len(case.phases), case.phases[0].shape[0]
    uids = {"study": generate_uid(), "frame": generate_uid(), **{f"series{k}": generate_uid() for k in range(n_phases)}}
    series_numbers = [int(v) for v in rng.permutation(np.arange(3, 3 + n_phases))]
    if layout == "series-per-phase":
        series_numbers = list(range(3, 3 + n_phases))
    names = rng.permutation(n_phases * n_slices)
    if layout.startswith("enhanced-"):
        write_enhanced_file(case, folder / "IM00000", variant=layout.removeprefix("enhanced-"), identity=identity,
                            uids=uids, frame_order=np.argsort(names),
                            acquired=[f"{identity.get('StudyDate', '20240117')}{_time_text(t)}" for t in case.times_s])
    for k in range(0 if layout.startswith("enhanced-") else n_phases):
        sub = folder / f"s{series_numbers[k]:03d}" if layout in ("series-per-phase", "acquisition-time") else folder
        sub.mkdir(exist_ok=True)
        for z in range(n_slices):
            ds = _slice_dataset(case, identity, uids, k, z)
            _fill_layout(ds, layout, case, uids, k, z, series_numbers)
            ds.save_as(sub / f"IM{names[k * n_slices + z]:05d}", enforce_file_format=True)
    if mask_name:
        write_volume(case.mask, case.geometry, folder / mask_name)
    return folder


def write_volume(array: np.ndarray, geometry: CaseGeometry, path: str | os.PathLike[str]) -> Path:
    """Write a (z, y, x) array as a volume file with the case geometry (NRRD, NIfTI ... by extension)."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(tuple(np.column_stack([geometry.row_dir, geometry.col_dir, geometry.normal]).ravel().tolist()))
    sitk.WriteImage(image, str(path), True)
    return Path(path)


def identity_of(k: int, rng: np.random.Generator) -> dict[str, str]:
    """Identifying attributes of synthetic patient ``k`` (distinctive strings a leak search can find)."""
    return {
        "PatientName": f"Testpatient^Alba{k:03d}", "PatientID": f"MRN{rng.integers(10**7, 10**8)}",
        "PatientBirthDate": f"19{rng.integers(40, 90)}0{rng.integers(1, 9)}1{rng.integers(0, 9)}",
        "InstitutionName": "Synthetic Breast Centre Zeta", "AccessionNumber": f"ACC{rng.integers(10**6, 10**7)}",
        "ReferringPhysicianName": "Referrer^Quintus", "StudyDate": "20240117", "StudyID": f"S{k:04d}",
    }


def write_synthetic_cohort(
    root: str | os.PathLike[str], *, n_cases: int, seed: int = 0, layouts: tuple[str, ...] = LAYOUTS,
    classes: tuple[int, ...] = (0, 1, 2), shape: tuple[int, int, int] = (12, 40, 40), n_phases: int = 4,
    background: np.ndarray | None = None, keep_cases: bool = False, separation: float = 1.0,
) -> pd.DataFrame:
    """Write ``n_cases`` simulated studies under ``root/caseNNN/`` plus ``root/clinical.csv``.

    Classes and layouts cycle over the cases, the layouts shifted by one after each full
    cycle, so that every class meets every layout (with 3 classes and 6 layouts each pairing
    appears once in 18 cases) and no layout goes with one class. ``clinical.csv`` has ``folder``, ``ihc``, ``ish``
    (HER2 label rules), ``her2_class`` and an ``age`` column unrelated to the class.

    Returns
    -------
    DataFrame
        The truth per case: ``folder, label, layout, n_phases, times_s, geometry`` and the
        identity strings written (``PatientName``, ``PatientID`` ...), for leak checks; with
        ``keep_cases`` also ``case``, the :class:`SyntheticCase` (phases and mask arrays).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    rows = []
    for k in range(n_cases):
        label = classes[k % len(classes)]
        layout = layouts[(k + k // len(layouts)) % len(layouts)]
        case = simulate_case(label, rng, shape=shape, n_phases=n_phases, background=background, separation=separation)
        identity = identity_of(k, rng)
        folder = root / f"case{k:03d}"
        write_dce_dicom(case, folder, layout=layout, identity=identity, rng=rng)
        ihc, ish = IHC_OF_CLASS[label]
        rows.append({"folder": folder.name, "label": label, "layout": layout, "n_phases": n_phases,
                     "times_s": case.times_s, "ihc": ihc, "ish": ish,
                     "age": int(rng.integers(30, 80)), "geometry": case.geometry, **identity,
                     **({"case": case} if keep_cases else {})})
    truth = pd.DataFrame(rows)
    truth[["folder", "ihc", "ish", "age"]].assign(her2_class=truth["label"]).to_csv(root / "clinical.csv", index=False)
    return truth


def read_dicom_identity(path: str | os.PathLike[str]) -> dict[str, str]:
    """PatientName and PatientID of one DICOM file (for tests that search outputs for them)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {"PatientName": str(ds.PatientName), "PatientID": str(ds.PatientID)}
