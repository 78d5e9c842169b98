"""De-identification on read: which DICOM attributes identify a patient, and pseudonymous case ids.

The DICOM readers of this package (:mod:`her2dlr.io.dicom_series`, :mod:`her2dlr.io.dce`) copy
nothing out of a file but geometry, timing, the modality and the manufacturer. The patient's
identity is used in memory only, to group files by patient, and leaves the reader as a
pseudonym: an HMAC-SHA256 of the patient id keyed by a secret of the study (the "salt").
Without the key the pseudonym cannot be linked back to a patient by trying candidate ids;
with the key and the original files the site can re-link its own cases.

:data:`PHI_KEYWORDS` lists the attributes of the DICOM PS3.15 Annex E basic application
level confidentiality profile (Table E.1-1) that identify a patient, a visit, a place or a
person and that readers of this package must never copy out (a subset of the profile: UIDs
are used internally for grouping only and are not written either).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from her2dlr.errors import InputError

__all__ = ["PHI_KEYWORDS", "load_or_create_key", "phi_values", "pseudonym", "strip_identifiers"]

PHI_KEYWORDS: tuple[str, ...] = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientBirthTime", "PatientSex", "PatientAge",
    "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "OtherPatientIDs",
    "OtherPatientNames", "OtherPatientIDsSequence", "PatientBirthName", "MilitaryRank", "EthnicGroup",
    "Occupation", "AdditionalPatientHistory", "PatientComments", "MedicalRecordLocator",
    "IssuerOfPatientID", "AccessionNumber", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "ReferringPhysicianName", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "OperatorsName", "PhysiciansOfRecord", "RequestingPhysician", "StationName", "DeviceSerialNumber",
    "StudyID", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "ContentTime", "AcquisitionDateTime", "StudyDescription", "SeriesDescription",
    "RequestAttributesSequence", "ProtocolName", "ImageComments", "FrameComments",
)
"""DICOM keywords (PS3.15 Table E.1-1, basic profile) that never leave a reader of this package."""

KEY_BYTES = 32


def pseudonym(identifier: str, key: bytes, *, prefix: str = "case") -> str:
    """A pseudonymous id: ``<prefix>-`` + the first 12 hex digits of HMAC-SHA256(key, identifier).

    Parameters
    ----------
    identifier : str
        The identifying value (e.g. the DICOM PatientID), used in memory only.
    key : bytes
        The study's secret (see :func:`load_or_create_key`). The same key gives the same
        pseudonym in every run; another key gives unrelated pseudonyms.
    prefix : str, default "case"

    Examples
    --------
    >>> pseudonym("12345", b"k" * 32)
    'case-7c31bca0bf11'
    """
    digest = hmac.new(key, identifier.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}-{digest[:12]}"


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """Read the study's pseudonym key from ``path``, creating a random one (readable by the owner only) if absent.

    Keep this file private and out of anything shared: with it, anyone holding a list of
    patient ids could test which pseudonym belongs to whom.

    Raises
    ------
    InputError
        The file exists but is not a key written by this function.
    """
    path = Path(path)
    if path.exists():
        text = path.read_text(encoding="ascii", errors="replace").strip()
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != KEY_BYTES:
            raise InputError(f"Pseudonym key file {path} does not hold {KEY_BYTES} bytes in hex; "
                             "restore it or remove it (case ids will change).")
        return key
    key = secrets.token_bytes(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
    return key


def phi_values(dataset: object) -> list[str]:
    """The non-empty string values of the :data:`PHI_KEYWORDS` attributes a pydicom dataset holds.

    Items of every sequence are searched too (an enhanced multi-frame file may repeat identifiers
    in its functional groups; a sequence such as OtherPatientIDsSequence holds them in items).
    Used by tests and benchmarks to search outputs for anything identifying.
    """
    values = []
    for keyword in PHI_KEYWORDS:
        value = getattr(dataset, keyword, None)
        if value is None or keyword.endswith("Sequence"):
            continue
        text = str(value).strip()
        if text:
            values.append(text)
    for element in dataset:  # type: ignore[attr-defined]
        if element.VR == "SQ":
            for item in element.value or []:
                values += [v for v in phi_values(item) if v not in values]
    return values


def strip_identifiers(dataset: object) -> object:
    """Remove every :data:`PHI_KEYWORDS` attribute from a pydicom dataset and its sequences' items, in place; return it."""
    for keyword in PHI_KEYWORDS:
        if keyword in dataset:  # type: ignore[operator]
            delattr(dataset, keyword)
    for element in dataset:  # type: ignore[attr-defined]
        if element.VR == "SQ":
            for item in element.value or []:
                strip_identifiers(item)
    return dataset
