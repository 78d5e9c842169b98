"""DICOM de-identification in memory, before anything else reads the file.

pydicom reads and writes DICOM but ships no de-identification profile, so the attribute list
below is our own reading of the Basic Application Level Confidentiality Profile (DICOM PS3.15
Annex E, table E.1-1): the attributes that identify the patient, the people and places of the
examination, the dates and free-text descriptions. On top of the list, every person name
(VR ``PN``), every private element and every overlay are removed, at any depth of nested
sequences, and the study / series / instance UIDs are replaced by new ones. What stays is what
reading the image needs: pixel data and its description, pixel spacing, modality, ultrasound
regions.

Pixels are not inspected: text burned into the image (``BurnedInAnnotation``) cannot be
removed here, so the caller is told when the file declares it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["REMOVED_KEYWORDS", "DeidentifiedDicom", "deidentify_dataset"]

#: Attributes removed outright (by keyword), from PS3.15 table E.1-1.
REMOVED_KEYWORDS: tuple[str, ...] = (
    # the patient
    "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientSex", "PatientAge", "PatientSize",
    "PatientWeight", "PatientAddress", "PatientMotherBirthName", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames",
    "PatientInsurancePlanCodeSequence", "PatientPrimaryLanguageCodeSequence", "PatientReligiousPreference",
    "PatientComments", "PatientState", "PatientSexNeutered", "PatientSpeciesDescription", "PatientBreedDescription",
    "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization", "MilitaryRank", "BranchOfService",
    "MedicalRecordLocator", "EthnicGroup", "Occupation", "AdditionalPatientHistory", "CountryOfResidence",
    "RegionOfResidence", "MedicalAlerts", "Allergies", "LastMenstrualDate", "PregnancyStatus", "SmokingStatus",
    "SpecialNeeds", "CurrentPatientLocation", "PatientInstitutionResidence", "ReferencedPatientSequence",
    "ReferencedPatientPhotoSequence", "PatientIdentityRemoved", "DeidentificationMethod",
    # people and places of the examination
    "ReferringPhysicianName", "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "ConsultingPhysicianName", "ConsultingPhysicianIdentificationSequence",
    "PerformingPhysicianName", "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence",
    "OperatorsName", "OperatorIdentificationSequence", "RequestingPhysician", "RequestingPhysicianIdentificationSequence",
    "ScheduledPerformingPhysicianName", "ContentCreatorName", "VerifyingObserverName", "PersonName",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "StationName", "DeviceSerialNumber", "DetectorID", "PlateID", "GantryID", "CassetteID",
    # the visit, the order, the procedure
    "AccessionNumber", "StudyID", "AdmissionID", "IssuerOfAdmissionID", "IssuerOfAdmissionIDSequence",
    "RequestedProcedureID", "RequestedProcedureDescription", "RequestAttributesSequence", "PerformedProcedureStepID",
    "PerformedProcedureStepDescription", "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "ScheduledProcedureStepDescription", "ScheduledProcedureStepID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest", "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
    "VisitComments", "ServiceEpisodeID", "ServiceEpisodeDescription", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ReasonForStudy", "ReasonForTheRequestedProcedure",
    # dates and times
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "OverlayDate", "CurveDate", "StudyTime",
    "SeriesTime", "AcquisitionTime", "ContentTime", "OverlayTime", "CurveTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime", "TimezoneOffsetFromUTC",
    # free text
    "StudyDescription", "SeriesDescription", "ImageComments", "DerivationDescription", "ProtocolName",
    "AcquisitionComments", "InterpretationText", "TextComments", "TextString", "FrameComments",
    "ReferencedImageSequence", "SourceImageSequence", "ContributingEquipmentSequence",
)

#: UIDs replaced by new ones (they can be traced back to the hospital's archive).
_REPLACED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
                  "SynchronizationFrameOfReferenceUID", "IrradiationEventUID")


@dataclass
class DeidentifiedDicom:
    """What :func:`deidentify_dataset` did (counts only; never a removed value)."""

    removed: int
    replaced_uids: int
    burned_in_annotation: bool


def _strip(ds: Any, keywords: frozenset[str]) -> int:
    """Remove listed, person-name, private and overlay elements of ``ds`` and of its nested sequences."""
    removed = 0
    for elem in list(ds):
        tag = elem.tag
        if (elem.keyword in keywords or elem.VR == "PN" or tag.is_private or 0x6000 <= tag.group <= 0x60FF):
            del ds[tag]
            removed += 1
        elif elem.VR == "SQ":
            for item in elem.value or []:
                removed += _strip(item, keywords)
    return removed


def deidentify_dataset(ds: Any) -> DeidentifiedDicom:
    """Remove patient-identifying attributes from a pydicom ``Dataset``, in place.

    Parameters
    ----------
    ds : pydicom.Dataset
        A dataset read from a Part-10 file (``file_meta`` is updated with the new instance UID).

    Returns
    -------
    DeidentifiedDicom
        How many elements were removed, how many UIDs replaced, and whether the file declares
        text burned into its pixels.
    """
    from pydicom.uid import generate_uid

    burned = str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES"
    removed = _strip(ds, frozenset(REMOVED_KEYWORDS))
    replaced = 0
    for keyword in _REPLACED_UIDS:
        if keyword in ds:
            setattr(ds, keyword, generate_uid())
            replaced += 1
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "her2dlr serve: PS3.15 basic profile, names, private tags"
    return DeidentifiedDicom(removed, replaced, burned)
