"""A simulated DCE study written as one Enhanced MR Image file (every slice of every phase in one file).

Used by :func:`her2dlr.io.synthetic_dce.write_dce_dicom` for its ``enhanced-*`` layouts. The file
follows the Enhanced MR Image IOD (DICOM PS3.3 A.36.2) as far as a reader of geometry and timing
can tell: the Multi-frame Functional Groups and Multi-frame Dimension modules, with the Pixel
Measures, Plane Orientation, Plane Position, Frame Content, Pixel Value Transformation and MR
Timing and Related Parameters functional groups. Two vendor-like variants:

``temporal-index``
    Geometry and rescale in the shared functional groups; each frame's FrameContentSequence has
    TemporalPositionIndex, StackID / InStackPositionNumber, DimensionIndexValues (dimensions:
    in-stack position, temporal position index) and FrameAcquisitionDateTime. Stored values are
    offset by 1024 and a shared RescaleIntercept of -1024 gives them back.
``datetime``
    Geometry and rescale per frame, no temporal index: the phases are told apart by
    FrameAcquisitionDateTime only; the dimension index is spatial (ImagePositionPatient). Each
    phase is stored with its own offset and per-frame RescaleIntercept.

Frames are written in a shuffled order. Identifying attributes sit at the top level and inside
sequences (OtherPatientIDsSequence, RequestAttributesSequence, each frame's FrameComments), so
tests can show that none of them leaves the readers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

from her2dlr.errors import InputError

if TYPE_CHECKING:
    from her2dlr.io.synthetic_dce import SyntheticCase

__all__ = ["ENHANCED_VARIANTS", "write_enhanced_file"]

ENHANCED_VARIANTS: tuple[str, ...] = ("temporal-index", "datetime")

_IN_STACK_POSITION = 0x00209057
_TEMPORAL_POSITION_INDEX = 0x00209128
_IMAGE_POSITION = 0x00200032
_FRAME_CONTENT = 0x00209111
_PLANE_POSITION = 0x00209113


def _item(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _dimensions(variant: str, organisation: str) -> Sequence:
    if variant == "temporal-index":
        pointers = [(_IN_STACK_POSITION, _FRAME_CONTENT, "In-Stack Position"),
                    (_TEMPORAL_POSITION_INDEX, _FRAME_CONTENT, "Temporal Position Index")]
    else:
        pointers = [(_IMAGE_POSITION, _PLANE_POSITION, "Image Position (Patient)")]
    return Sequence([_item(DimensionOrganizationUID=organisation, DimensionIndexPointer=pointer,
                           FunctionalGroupPointer=group, DimensionDescriptionLabel=label)
                     for pointer, group, label in pointers])


def _geometry_groups(case: SyntheticCase, z: int | None) -> dict[str, Sequence]:
    """Pixel measures and plane orientation (and, for a frame ``z``, its plane position)."""
    geo = case.geometry
    groups = {
        "PixelMeasuresSequence": Sequence([_item(
            PixelSpacing=[f"{geo.spacing[1]:g}", f"{geo.spacing[0]:g}"], SliceThickness=f"{geo.spacing[2]:g}",
            SpacingBetweenSlices=f"{geo.spacing[2]:g}")]),
        "PlaneOrientationSequence": Sequence([_item(
            ImageOrientationPatient=[f"{v:.6f}" for v in (*geo.row_dir, *geo.col_dir)])]),
    }
    if z is not None:
        position = geo.world(np.array([[0, 0, z]]))[0]
        groups["PlanePositionSequence"] = Sequence([_item(ImagePositionPatient=[f"{v:.4f}" for v in position])])
    return groups


def _rescale(intercept: int) -> Sequence:
    return Sequence([_item(RescaleSlope="1", RescaleIntercept=str(intercept), RescaleType="US")])


def write_enhanced_file(
    case: SyntheticCase, path: str | Path, *, variant: str, identity: dict[str, str], uids: dict[str, str],
    frame_order: np.ndarray, acquired: list[str],
) -> Path:
    """Write every phase of ``case`` as one Enhanced MR Image file at ``path``.

    Parameters
    ----------
    case : SyntheticCase
    variant : {"temporal-index", "datetime"}
        Which tags tell the phases apart (see the module notes).
    identity : dict
        DICOM keyword -> value of the identifying attributes, written at the top level and inside sequences.
    uids : dict
        ``study``, ``frame`` (of reference) and ``series0`` UIDs.
    frame_order : ndarray of int
        A permutation of ``range(n_phases * n_slices)``: the file's frame ``i`` holds phase
        ``frame_order[i] // n_slices``, slice ``frame_order[i] % n_slices``.
    acquired : list of str
        FrameAcquisitionDateTime (DICOM DT) of each phase.
    """
    if variant not in ENHANCED_VARIANTS:
        raise InputError(f"Unknown enhanced MR variant {variant!r}; known: {list(ENHANCED_VARIANTS)}.")
    n_phases, (n_slices, rows, cols) = len(case.phases), case.phases[0].shape
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "MR", "SYNTHETIC"
    for keyword, value in identity.items():
        setattr(ds, keyword, value)
    if "PatientID" in identity:
        ds.OtherPatientIDsSequence = Sequence([_item(PatientID=identity["PatientID"], TypeOfPatientID="TEXT")])
    if "AccessionNumber" in identity:
        ds.RequestAttributesSequence = Sequence([_item(AccessionNumber=identity["AccessionNumber"],
                                                       RequestedProcedureID=identity.get("StudyID", "RP1"))])
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids["study"], uids["series0"], uids["frame"]
    ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = 5, 1, "DYNAMIC"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.AcquisitionDateTime = acquired[0]
    ds.ContentQualification, ds.ResonantNucleus, ds.MagneticFieldStrength = "PRODUCT", "1H", "1.5"
    ds.NumberOfTemporalPositions = n_phases
    organisation = generate_uid()
    ds.DimensionOrganizationSequence = Sequence([_item(DimensionOrganizationUID=organisation)])
    ds.DimensionOrganizationType = "3D_TEMPORAL" if variant == "temporal-index" else "3D"
    ds.DimensionIndexSequence = _dimensions(variant, organisation)
    shared = _item(MRTimingAndRelatedParametersSequence=Sequence([_item(
        RepetitionTime="4.5", FlipAngle="12", EchoTrainLength=1)]))
    if variant == "temporal-index":
        for keyword, value in _geometry_groups(case, None).items():
            setattr(shared, keyword, value)
        shared.PixelValueTransformationSequence = _rescale(-1024)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    comment = " ".join(identity[k] for k in ("PatientName", "PatientID") if k in identity)
    per_frame, planes = [], []
    for logical in np.asarray(frame_order, dtype=int):
        k, z = divmod(int(logical), n_slices)
        content = _item(FrameAcquisitionNumber=k + 1, FrameAcquisitionDateTime=acquired[k],
                        FrameReferenceDateTime=acquired[k], FrameAcquisitionDuration=55000.0,
                        FrameComments=f"dynamic {k + 1} {comment}".strip())
        item = _item(FrameContentSequence=Sequence([content]))
        if variant == "temporal-index":
            content.TemporalPositionIndex, content.StackID, content.InStackPositionNumber = k + 1, "1", z + 1
            content.DimensionIndexValues = [z + 1, k + 1]
            item.PlanePositionSequence = _geometry_groups(case, z)["PlanePositionSequence"]
            offset = 1024
        else:
            content.DimensionIndexValues = z + 1
            for keyword, value in _geometry_groups(case, z).items():
                setattr(item, keyword, value)
            offset = 100 * k
            item.PixelValueTransformationSequence = _rescale(-offset)
        per_frame.append(item)
        planes.append(case.phases[k][z].astype(np.uint32) + offset)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    stored = np.stack(planes)
    if stored.max() > np.iinfo(np.uint16).max:
        raise InputError("Synthetic phases exceed the 16-bit range of the enhanced MR file.")
    ds.NumberOfFrames = len(per_frame)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(stored.astype(np.uint16)).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)
