"""Building and merging metadata documents (SPEC 5.1) from normalized instances; no Django.

An instance arrives as `InstancePart`: its Patient/Study/Series level values and its instance node (DICOM,
DICOMVRs, StoredTransferSyntaxUID, ImageFrames). Level values are written once: the instance with the lowest
InstanceNumber wins, so the document does not depend on processing order.
"""
from __future__ import annotations

import copy
import gzip
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

SCHEMA_VERSION = "1.1"


@dataclass
class InstancePart:
    series_uid: str
    sop_uid: str
    instance_number: int | None
    levels: dict[str, dict[str, Any]]
    level_vrs: dict[str, dict[str, str]]
    instance: dict[str, Any]


def _order(part: InstancePart) -> tuple[int, int, str]:
    return (0 if part.instance_number is not None else 1, part.instance_number or 0, part.sop_uid)


def new_document(*, datastore_id: str, image_set_id: str) -> dict[str, Any]:
    return {
        "SchemaVersion": SCHEMA_VERSION,
        "DatastoreID": datastore_id,
        "ImageSetID": image_set_id,
        "Patient": {"DICOM": {}},
        "Study": {"DICOM": {}, "Series": {}},
    }


def _fill(node: dict[str, Any], values: dict[str, Any], vrs: dict[str, str] | None) -> None:
    dicom = node.setdefault("DICOM", {})
    for key, value in values.items():
        dicom.setdefault(key, value)
    if vrs:
        existing = node.setdefault("DICOMVRs", {})
        for key, vr in vrs.items():
            existing.setdefault(key, vr)


def add_instances(document: dict[str, Any], parts: Iterable[InstancePart]) -> dict[str, Any]:
    """A new document with `parts` added; an instance with a SOP Instance UID already present replaces it."""
    result = copy.deepcopy(document)
    for part in sorted(parts, key=_order):
        _fill(result["Patient"], part.levels.get("Patient", {}), part.level_vrs.get("Patient"))
        _fill(result["Study"], part.levels.get("Study", {}), part.level_vrs.get("Study"))
        series = result["Study"].setdefault("Series", {}).setdefault(part.series_uid, {"DICOM": {}, "Instances": {}})
        _fill(series, part.levels.get("Series", {}), part.level_vrs.get("Series"))
        series.setdefault("Instances", {})[part.sop_uid] = part.instance
    return result


def encode_document(document: dict[str, Any]) -> bytes:
    """Gzip-compressed UTF-8 JSON, as stored and served (never compressed twice)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def decode_document(blob: bytes) -> dict[str, Any]:
    return json.loads(gzip.decompress(blob).decode("utf-8"))


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(_text(item) for item in value)
    return str(value).strip()


def study_datetime(study_date: str, study_time: str) -> datetime | None:
    """DICOMStudyDateAndTime as one sortable moment; a missing time is 00:00:00.000000."""
    date = study_date.strip()[:8]
    if len(date) != 8 or not date.isdigit():
        return None
    whole, _, fraction = study_time.strip().partition(".")
    digits = "".join(ch for ch in whole if ch.isdigit())[:6].ljust(6, "0")
    micro = "".join(ch for ch in fraction if ch.isdigit())[:6].ljust(6, "0")
    try:
        return datetime.strptime(date + digits + micro, "%Y%m%d%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            return datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc)
        except ValueError:
            return None


def summary(document: dict[str, Any]) -> dict[str, Any]:
    """The search columns and the DICOMTags summary of a document."""
    patient = document.get("Patient", {}).get("DICOM", {})
    study = document.get("Study", {}).get("DICOM", {})
    series_map = document.get("Study", {}).get("Series", {})
    first_series = next(iter(series_map.values()), {"DICOM": {}})
    series = first_series.get("DICOM", {})
    instance_count = sum(len(s.get("Instances", {})) for s in series_map.values())
    series_number = _text(series.get("SeriesNumber"))
    tags: dict[str, Any] = {
        "DICOMPatientId": _text(patient.get("PatientID")),
        "DICOMPatientName": _text(patient.get("PatientName")),
        "DICOMPatientBirthDate": _text(patient.get("PatientBirthDate")),
        "DICOMPatientSex": _text(patient.get("PatientSex")),
        "DICOMStudyInstanceUID": _text(study.get("StudyInstanceUID")),
        "DICOMStudyId": _text(study.get("StudyID")),
        "DICOMStudyDescription": _text(study.get("StudyDescription")),
        "DICOMAccessionNumber": _text(study.get("AccessionNumber")),
        "DICOMSeriesInstanceUID": _text(series.get("SeriesInstanceUID")),
        "DICOMSeriesModality": _text(series.get("Modality")),
        "DICOMSeriesBodyPart": _text(series.get("BodyPartExamined")),
        "DICOMStudyDate": _text(study.get("StudyDate")),
        "DICOMStudyTime": _text(study.get("StudyTime")),
        "DICOMNumberOfStudyRelatedSeries": len(series_map),
        "DICOMNumberOfStudyRelatedInstances": instance_count,
    }
    try:
        tags["DICOMSeriesNumber"] = int(series_number)
    except ValueError:
        pass
    # Attributes kept at the instance level (SPEC 5.3) are read from the series' first instance.
    first_instance = next(iter(first_series.get("Instances", {}).values()), {}).get("DICOM", {})
    nodes = (study, series, first_instance)

    def found(keyword: str, size: int) -> str:
        return next((_text(node[keyword]) for node in nodes if node.get(keyword) not in (None, "")), "")[:size]

    qido = {"ReferringPhysicianName": found("ReferringPhysicianName", 256),
            "TimezoneOffsetFromUTC": found("TimezoneOffsetFromUTC", 16),
            "SeriesDescription": found("SeriesDescription", 64),
            "PerformedProcedureStepStartDate": found("PerformedProcedureStepStartDate", 18),
            "PerformedProcedureStepStartTime": found("PerformedProcedureStepStartTime", 28)}
    return {
        "dicom_tags": {key: value for key, value in tags.items() if value != ""},
        "qido_attributes": qido,  # every key, empty ones too: {} marks an image set written before them
        "study_instance_uid": tags["DICOMStudyInstanceUID"],
        "series_instance_uid": tags["DICOMSeriesInstanceUID"],
        "patient_id": tags["DICOMPatientId"][:64],
        "patient_name": tags["DICOMPatientName"][:256],
        "accession_number": tags["DICOMAccessionNumber"][:16],
        "study_id": tags["DICOMStudyId"][:16],
        "modality": tags["DICOMSeriesModality"][:16],
        "study_date_time": study_datetime(tags["DICOMStudyDate"], tags["DICOMStudyTime"]),
        "number_of_instances": instance_count,
    }


def frame_ids(document: dict[str, Any]) -> list[str]:
    ids = []
    for series in document.get("Study", {}).get("Series", {}).values():
        for instance in series.get("Instances", {}).values():
            ids += [frame["ID"] for frame in instance.get("ImageFrames", []) if "ID" in frame]
    return ids
