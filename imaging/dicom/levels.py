"""Which metadata level each attribute belongs to (SPEC 5.3), and the grouping keys of SPEC 4.4."""
from __future__ import annotations

PATIENT = frozenset("""
PatientName PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence TypeOfPatientID PatientBirthDate
PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar PatientAlternativeCalendar PatientSex
ReferencedPatientPhotoSequence QualityControlSubject ReferencedPatientSequence PatientBirthTime
OtherPatientIDsSequence OtherPatientNames EthnicGroup PatientComments PatientSpeciesDescription
PatientSpeciesCodeSequence PatientBreedDescription PatientBreedCodeSequence BreedRegistrationSequence
StrainDescription StrainNomenclature StrainCodeSequence StrainAdditionalInformation StrainStockSequence
GeneticModificationsSequence ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization PatientIdentityRemoved
DeidentificationMethod DeidentificationMethodCodeSequence SourcePatientGroupIdentificationSequence
GroupOfPatientsIdentificationSequence ClinicalTrialSponsorName ClinicalTrialProtocolID ClinicalTrialProtocolName
ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolEthicsCommitteeApprovalNumber
""".split())

STUDY = frozenset("""
StudyInstanceUID StudyDate StudyTime ReferringPhysicianName ReferringPhysicianIdentificationSequence
ConsultingPhysicianName ConsultingPhysicianIdentificationSequence StudyID AccessionNumber
IssuerOfAccessionNumberSequence StudyDescription PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
NameOfPhysiciansReadingStudy PhysiciansReadingStudyIdentificationSequence RequestingService
RequestingServiceCodeSequence ReferencedStudySequence ProcedureCodeSequence
ReasonForPerformedProcedureCodeSequence AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientAge
PatientSize PatientWeight PatientBodyMassIndex MeasuredAPDimension MeasuredLateralDimension PatientSizeCodeSequence
MedicalAlerts Allergies SmokingStatus PregnancyStatus LastMenstrualDate PatientState Occupation
AdditionalPatientHistory AdmissionID IssuerOfAdmissionIDSequence ReasonForVisit ReasonForVisitCodeSequence
ServiceEpisodeID IssuerOfServiceEpisodeIDSequence ServiceEpisodeDescription PatientSexNeutered
ClinicalTrialTimePointID ClinicalTrialTimePointDescription LongitudinalTemporalOffsetFromEvent
LongitudinalTemporalEventType ConsentForClinicalTrialUseSequence
""".split())

SERIES = frozenset("""
Modality SeriesInstanceUID SeriesNumber Laterality SeriesDate SeriesTime PerformingPhysicianName
PerformingPhysicianIdentificationSequence ProtocolName SeriesDescription SeriesDescriptionCodeSequence OperatorsName
OperatorIdentificationSequence ReferencedPerformedProcedureStepSequence RelatedSeriesSequence BodyPartExamined
PatientPosition SmallestPixelValueInSeries LargestPixelValueInSeries RequestAttributesSequence
AnatomicalOrientationType TreatmentSessionUID ClinicalTrialCoordinatingCenterName ClinicalTrialSeriesID
ClinicalTrialSeriesDescription Manufacturer InstitutionName InstitutionAddress StationName
InstitutionalDepartmentName InstitutionalDepartmentTypeCodeSequence ManufacturerModelName
ManufacturerDeviceClassUID DeviceSerialNumber SoftwareVersions GantryID UDISequence DeviceUID SpatialResolution
DateOfLastCalibration TimeOfLastCalibration PixelPaddingValue FrameOfReferenceUID PositionReferenceIndicator
""".split())

PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "AccessionNumber", "StudyID")
SERIES_KEYS = ("SeriesInstanceUID", "SeriesNumber")
GROUPING_KEYS = PATIENT_KEYS + STUDY_KEYS + SERIES_KEYS


def level_of(keyword: str) -> str:
    if keyword in PATIENT:
        return "Patient"
    if keyword in STUDY:
        return "Study"
    if keyword in SERIES:
        return "Series"
    return "Instance"


def grouping_value(value: object) -> str:
    """Values compare after normalization: padding and trailing spaces removed, absent equals empty."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(grouping_value(item) for item in value)
    return str(value).strip().rstrip("\x00").strip()


def grouping_of(values: dict[str, object]) -> tuple[str, ...]:
    """The grouping-key values of attributes merged from the Patient, Study and Series levels (SPEC 4.4)."""
    return tuple(grouping_value(values.get(key)) for key in GROUPING_KEYS)
