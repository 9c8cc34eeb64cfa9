"""C-FIND SCP (PS3.4 C.4.1): the Patient Root and Study Root Query/Retrieve information models at the PATIENT,
STUDY, SERIES and IMAGE levels, over the primary image sets of the association's data store.

`find_matches` is the service (no pynetdicom in it): it turns the identifier into the search QIDO-RS runs
(services/qido) and answers from the same index: studies from StudyIndex (one indexed query, read as tuples),
patients by grouping StudyIndex rows by PatientID, series from the primary ImageSet rows, instances from the
metadata documents of the matching series. So the matching rules are QIDO's: single value (exact,
case-sensitive), `*` and `?` wildcards, DA/TM ranges `A-B`, `A-`, `-B`, lists of UIDs (backslash-separated on the
wire) and universal matching (an empty value). Fuzzy person name matching is not negotiated, so PatientName is
matched exactly (with wildcards), as QIDO does without `fuzzymatching=true`; a PatientName wildcard with literal
text before it (`SMITH*`, what workstations send most) is narrowed through the name tokens of the study index
first. A wildcard with nothing before it (`*SMITH`) and wildcards on other keys are checked row by row.

Hierarchical search (C.4.1.2.1): each unique key of the levels above the query level (PatientID in the Patient
Root model, StudyInstanceUID, SeriesInstanceUID) must be in the identifier with one value, no wildcard; otherwise
the query is refused with 0xA900. Other keys of the levels above are matched too (as QIDO's /series matches study
keys); keys no level here knows, and sequences, are returned empty. At the IMAGE level, as in QIDO, the instance keys
matched are SOPInstanceUID, SOPClassUID and InstanceNumber; other instance attributes are returned as stored.

Every response carries every key asked for (filled where known, empty otherwise), QueryRetrieveLevel,
RetrieveAETitle (the called AE title, where the matches can be retrieved) and, when a value needs more than ASCII
or the identifier asked for it, SpecificCharacterSet ISO_IR 192 (values are sent as UTF-8). The PATIENT level is
the study index grouped by PatientID; studies without a PatientID make no patient (Study Root finds them).

Bounded answers: at most APERTURE_DICOM_FIND_LIMIT matches. A query that matches more is refused with 0xA700
(Out of resources) before any match is sent, with an ErrorComment asking for a narrower query, instead of a
silent subset: a subset with a final Success reads to a workstation as the whole answer. Knowing that costs
nothing: the limit plus one rows are read, as QIDO reads a page.

`handle_find` is the EVT_C_FIND handler: it checks the peer may query (0x0124 otherwise; the listener offers such a
peer no query context in the first place), runs the service, yields one pending response per match (checking for
C-CANCEL between them) and audits the query (model, level, keys, number of matches; never a value). Bad input is a
failure status with an ErrorComment, never an exception into pynetdicom.
"""
from __future__ import annotations

import logging
import re
import struct
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Q, Sum
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from imaging.dicom.rebuild import dict_to_dataset
from imaging.dimse.peer import Peer, peer_of
from imaging.errors import ApertureError, ValidationFailed
from imaging.models import StudyIndex
from imaging.services.audit import audit_record
from imaging.services.datastores import datastore_require_active
from imaging.services.qido import (PIXEL_DATA_KEYS, Search, instance_number_valid, match_value_validate,
                                   matching_instances, series_queryset, study_filter)
from imaging.study_index import name_part_prefix

logger = logging.getLogger(__name__)

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
# The levels of each model, top down (PS3.4 C.6.1 and C.6.2).
MODEL_LEVELS = {PATIENT_ROOT_FIND: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
                STUDY_ROOT_FIND: ("STUDY", "SERIES", "IMAGE")}
MODEL_NAMES = {PATIENT_ROOT_FIND: "PATIENT", STUDY_ROOT_FIND: "STUDY"}
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}

# DIMSE statuses (PS3.4 C.4.1.1.4).
SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
# PS3.7 C.5: the general "Refused: Not authorized" (the peer is known but may not query this data store).
NOT_AUTHORIZED = 0x0124

# What each level answers beyond the keys of the levels above. Keys of a lower level are returned empty.
PATIENT_KEYS = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies",
                "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"}
STUDY_KEYS = {"StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyDescription",
              "ReferringPhysicianName", "TimezoneOffsetFromUTC", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances", "InstanceAvailability"}
SERIES_KEYS = {"SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
               "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
               "NumberOfSeriesRelatedInstances"}
# Attributes of the response that are not matching keys.
_NO_MATCHING = {"QueryRetrieveLevel", "RetrieveAETitle", "SpecificCharacterSet", "InstanceAvailability",
                "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances"}


class FindFailed(ApertureError):
    """A query the SCP answers with a failure status (and an ErrorComment) instead of matches."""

    status = UNABLE_TO_PROCESS


class IdentifierMismatch(FindFailed):
    """0xA900: the identifier does not match the SOP class (level, missing unique key, malformed value)."""

    status = IDENTIFIER_MISMATCH


class TooManyMatches(FindFailed):
    """0xA700: more matches than APERTURE_DICOM_FIND_LIMIT."""

    status = OUT_OF_RESOURCES


@dataclass(frozen=True)
class Query:
    """An identifier read: the level, the keys asked for (keyword or tag, in order) and the matching values."""

    model: str
    level: str
    asked: tuple[DataElement, ...]
    search: Search


# --- Reading the identifier -------------------------------------------------------------------------------------

def query_parse(*, model: str, identifier: Dataset) -> Query:
    """The query an identifier asks for; IdentifierMismatch names the broken rule."""
    levels = MODEL_LEVELS.get(model)
    if levels is None:
        raise IdentifierMismatch("Not a C-FIND model this SCP supports")
    try:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        asked = tuple(element for element in identifier if element.tag.group not in (0x0000, 0x0002))
    except Exception as e:  # a value pydicom cannot decode (bad length, bad character set)
        raise IdentifierMismatch(f"The identifier cannot be read: {type(e).__name__}") from e
    if level not in levels:
        raise IdentifierMismatch(f"QueryRetrieveLevel must be {'/'.join(levels)}")
    search = Search()
    for element in asked:
        keyword = element.keyword
        if not keyword or keyword in _NO_MATCHING or element.VR == "SQ":
            continue
        value = _match_value(element)
        if value == "":
            continue  # universal matching
        try:
            match_value_validate(keyword, value)
        except ValidationFailed as e:
            raise IdentifierMismatch(str(e)) from e
        search.matches[keyword] = value
    for above in levels[:levels.index(level)]:
        _require_unique_key(identifier, UNIQUE_KEYS[above], search)
    return Query(model=model, level=level, asked=asked, search=search)


def _match_value(element: DataElement) -> str:
    """The element's value as QIDO's search holds it: text, a UID list comma-separated (QIDO's separator; UIDs
    never contain a comma), other multiple values backslash-separated as on the wire."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        texts = [str(v).strip() for v in value]
        separator = "," if element.VR == "UI" or element.keyword == "ModalitiesInStudy" else "\\"
        return separator.join(texts).strip(separator)
    if isinstance(value, bytes):
        raise IdentifierMismatch(f"{element.keyword} has a binary value")
    text = str(value)
    return text.strip() if element.VR != "PN" else text.rstrip()


def _require_unique_key(identifier: Dataset, keyword: str, search: Search) -> None:
    value = search.matches.get(keyword, "")
    if keyword not in identifier or not value:
        raise IdentifierMismatch(f"{keyword} is needed at this level (a unique key above)")
    if re.search(r"[*?,\\]", value):
        raise IdentifierMismatch(f"{keyword} must be one value here, no wildcard or list")


# --- Finding ----------------------------------------------------------------------------------------------------

def find_matches(*, datastore_id: str, model: str, identifier: Dataset, retrieve_ae_title: str,
                 limit: int | None = None) -> Iterator[Dataset]:
    """The responses to a C-FIND identifier: one dataset per match, in the order QIDO lists them (studies last
    update first, series by SeriesNumber, instances by InstanceNumber; patients by PatientID). The matches are
    found when it is called, so IdentifierMismatch (0xA900), TooManyMatches (0xA700) or FindFailed (0xC000) come
    before any response; each response is built as it is taken."""
    query = query_parse(model=model, identifier=identifier)
    limit = settings.APERTURE_DICOM_FIND_LIMIT if limit is None else limit
    try:
        datastore_require_active(datastore_id=datastore_id)
    except ApertureError as e:
        raise FindFailed(f"The data store is not available: {type(e).__name__}") from e
    finders = {"PATIENT": _patients, "STUDY": _studies, "SERIES": _series, "IMAGE": _instances}
    try:
        rows = finders[query.level](datastore_id, query, limit)
    except ValidationFailed as e:
        raise IdentifierMismatch(str(e)) from e
    return _responses(query, rows, retrieve_ae_title)


def _bounded(rows: list[Any], limit: int) -> list[Any]:
    if len(rows) > limit:
        raise TooManyMatches(f"More than {limit} matches: narrow the query")
    return rows


def _level_filter(query: Query) -> Search:
    """The search without the keys of the query level's children (a patient query matches no study keys)."""
    if query.level != "PATIENT":
        return query.search
    return Search(matches={k: v for k, v in query.search.matches.items() if k in PATIENT_KEYS})


def _study_rows(datastore_id: str, search: Search) -> Q:
    """QIDO's study filter, with the name index in front of a PatientName wildcard: the studies with a name part
    starting with the literal text before the first wildcard, a few index lookups, then the exact (regular
    expression) match on those rows only, instead of on every study of the data store. `SMITH*` is what
    workstations send most."""
    q = Q(datastore_id=datastore_id) & study_filter(datastore_id, search)
    name = search.matches.get("PatientName", "")
    literal = re.split(r"[*?]", name, maxsplit=1)[0]
    # A name that starts with `literal` has a first part that starts with the literal's first part (the name
    # tokens are the uppercase parts of the name, split as here).
    first = re.split(r"[\^= ,]+", literal.strip("^= ,"), maxsplit=1)[0].upper()[:64]
    if literal != name and first:
        q &= name_part_prefix(first)
    return q


def _patients(datastore_id: str, query: Query, limit: int) -> list[dict[str, Any]]:
    """Patients are the study index grouped by PatientID: first the IDs with a matching study, then their counts
    over all their studies (two queries). Studies without a PatientID make no patient (the Patient Root model could
    not go down to them: its STUDY level needs the PatientID); Study Root finds them."""
    matching = StudyIndex.objects.filter(_study_rows(datastore_id, _level_filter(query))).exclude(patient_id="")
    patient_ids = _bounded(list(matching.order_by("patient_id").values_list("patient_id", flat=True)
                                .distinct()[:limit + 1]), limit)
    grouped = (StudyIndex.objects.filter(datastore_id=datastore_id, patient_id__in=patient_ids)
               .values("patient_id").order_by("patient_id")
               .annotate(studies=Count("id"), series=Sum("number_of_series"), instances=Sum("number_of_instances"),
                         name=Max("patient_name"), birth_date=Max("patient_birth_date"), sex=Max("patient_sex")))
    return [{"PatientID": row["patient_id"], "PatientName": row["name"], "PatientBirthDate": row["birth_date"],
             "PatientSex": row["sex"], "NumberOfPatientRelatedStudies": row["studies"],
             "NumberOfPatientRelatedSeries": row["series"], "NumberOfPatientRelatedInstances": row["instances"]}
            for row in grouped]


# The study index columns a study answer reads, as tuples (no model instances).
_STUDY_ROW = ("study_instance_uid", "patient_name", "patient_id", "patient_birth_date", "patient_sex", "study_date",
              "study_time", "accession_number", "study_description", "study_id", "modalities",
              "referring_physician_name", "timezone_offset", "number_of_series", "number_of_instances")


def _studies(datastore_id: str, query: Query, limit: int) -> list[dict[str, Any]]:
    """One indexed query on StudyIndex, as QIDO's studies_search runs it."""
    rows = _bounded(list(StudyIndex.objects.filter(_study_rows(datastore_id, query.search))
                         .order_by("-updated_at", "-id").values_list(*_STUDY_ROW)[:limit + 1]), limit)
    return [_study_values(row) for row in rows]


def _study_values(row: tuple) -> dict[str, Any]:
    (study_uid, patient_name, patient_id, birth_date, sex, study_date, study_time, accession, description, study_id,
     modalities, referring, timezone_offset, number_of_series, number_of_instances) = row
    return {"StudyInstanceUID": study_uid, "PatientName": patient_name, "PatientID": patient_id,
            "PatientBirthDate": birth_date, "PatientSex": sex, "StudyDate": study_date, "StudyTime": study_time,
            "AccessionNumber": accession, "StudyDescription": description, "StudyID": study_id,
            "ModalitiesInStudy": modalities.split(), "ReferringPhysicianName": referring,
            "TimezoneOffsetFromUTC": timezone_offset, "NumberOfStudyRelatedSeries": number_of_series,
            "NumberOfStudyRelatedInstances": number_of_instances, "InstanceAvailability": "ONLINE"}


def _series(datastore_id: str, query: Query, limit: int) -> list[dict[str, Any]]:
    rows = _bounded(list(series_queryset(datastore_id, query.search, None)[:limit + 1]), limit)
    return [_series_values(image_set) for image_set in rows]


def _series_values(image_set: Any) -> dict[str, Any]:
    tags = image_set.dicom_tags or {}
    qido = image_set.qido_attributes or {}
    return {
        "PatientID": image_set.patient_id, "PatientName": image_set.patient_name,
        "PatientBirthDate": tags.get("DICOMPatientBirthDate"), "PatientSex": tags.get("DICOMPatientSex"),
        "StudyInstanceUID": image_set.study_instance_uid, "StudyDate": tags.get("DICOMStudyDate"),
        "StudyTime": tags.get("DICOMStudyTime"), "AccessionNumber": image_set.accession_number,
        "StudyID": image_set.study_id, "StudyDescription": tags.get("DICOMStudyDescription"),
        "SeriesInstanceUID": image_set.series_instance_uid, "Modality": image_set.modality,
        "SeriesNumber": tags.get("DICOMSeriesNumber"), "BodyPartExamined": tags.get("DICOMSeriesBodyPart"),
        "SeriesDescription": qido.get("SeriesDescription"),
        "PerformedProcedureStepStartDate": qido.get("PerformedProcedureStepStartDate"),
        "PerformedProcedureStepStartTime": qido.get("PerformedProcedureStepStartTime"),
        "NumberOfSeriesRelatedInstances": image_set.number_of_instances, "InstanceAvailability": "ONLINE",
    }


def _instances(datastore_id: str, query: Query, limit: int) -> list[Dataset]:
    """Instances from the metadata documents of the matching series, read one series at a time until more than
    `limit` instances matched. Each match is the instance's own attributes over those of its series, study and
    patient, as a dataset (values typed by their stored VRs)."""
    search = query.search
    if not instance_number_valid(search):
        raise IdentifierMismatch("InstanceNumber must be an integer")
    wanted = {element.keyword for element in query.asked if element.keyword} - PIXEL_DATA_KEYS
    matches: list[Dataset] = []
    with closing(matching_instances(series_queryset(datastore_id, search, None), search)) as found:
        for document, series, instance in found:
            matches.append(_instance_dataset(document, series, instance, wanted))
            _bounded(matches, limit)
    return matches


def _instance_dataset(document: dict[str, Any], series: dict[str, Any], instance: dict[str, Any],
                      wanted: set[str]) -> Dataset:
    merged: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for node in (document.get("Patient", {}), document.get("Study", {}), series, instance):
        merged.update(node.get("DICOM", {}))
        vrs.update(node.get("DICOMVRs", {}))
    chosen = {k: v for k, v in merged.items() if k in wanted}
    chosen["DICOMVRs"] = vrs
    dataset = dict_to_dataset(chosen, signed=merged.get("PixelRepresentation") == 1)
    dataset.InstanceAvailability = "ONLINE"
    return dataset


# --- Answering --------------------------------------------------------------------------------------------------

def _responses(query: Query, rows: list[dict[str, Any]] | list[Dataset], retrieve_ae_title: str) -> Iterator[Dataset]:
    """The response datasets, built as they are taken (the handler sends each before the next is built)."""
    slots = _layout(query)
    charset_asked = any(element.tag == _CHARSET for element in query.asked)
    level = _raw(_LEVEL, "CS", query.level)[0]
    retrieve = _raw(_RETRIEVE_AET, "AE", retrieve_ae_title)[0]
    build = _instance_response if query.level == "IMAGE" else _response
    return (build(slots, values, level, retrieve, charset_asked) for values in rows)


_CHARSET, _LEVEL, _RETRIEVE_AET = BaseTag(0x00080005), BaseTag(0x00080052), BaseTag(0x00080054)
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
_BINARY_INTEGERS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i"}
_UTF8 = "ISO_IR 192"
_UTF8_ENCODINGS = convert_encodings(_UTF8)
# pydicom writes raw elements as they are only when the dataset's "original" character set equals the one it
# reads from SpecificCharacterSet, compared as is: a dataset without one has the bare default, not a list.
_DEFAULT_ENCODINGS = default_encoding


@dataclass(frozen=True)
class _Slot:
    """A key asked for: its tag and VR, the keyword its value is read from (None: the level does not know it,
    the response carries it empty), and that empty element, made once."""

    tag: BaseTag
    vr: str
    source: str | None
    empty: RawDataElement
    text: bool  # a text VR: a str value is encoded inline (_response), without a call per element
    pad: bytes


def _layout(query: Query) -> tuple[_Slot, ...]:
    """The slots of the keys asked for: every response of a query has the same, so they are worked out once."""
    known = _known_keys(query.level)
    slots = []
    for element in query.asked:
        if element.tag in (_CHARSET, _LEVEL, _RETRIEVE_AET):
            continue
        vr = str(element.VR or "UN").split(" or ")[0]
        if vr == "UN" and element.keyword:
            vr = dictionary_VR(element.tag).split(" or ")[0]
        source = element.keyword if element.keyword in known and vr != "SQ" else None
        slots.append(_Slot(element.tag, vr, source, _raw(element.tag, vr, None)[0], vr in _TEXT_VRS,
                           b"\0" if vr == "UI" else b" "))
    return tuple(slots)


def _known_keys(level: str) -> set[str]:
    keys = set(PATIENT_KEYS)
    if level != "PATIENT":
        keys |= STUDY_KEYS
    if level in ("SERIES", "IMAGE"):
        keys |= SERIES_KEYS
    return keys


def _response(slots: tuple[_Slot, ...], values: dict[str, Any], level: RawDataElement, retrieve: RawDataElement,
              charset_asked: bool) -> Dataset:
    """The keys asked for, filled from `values` and empty where the level does not know them, with the level, the
    retrieve AE title and the character set when a value needs it (or it was asked for).

    Built from raw elements, already encoded, which pydicom writes as they are: a study answer of a few hundred
    matches spent most of its time in pydicom's per-element conversions."""
    elements = {_LEVEL: level, _RETRIEVE_AET: retrieve}
    wide = charset_asked
    for slot in slots:
        value = values.get(slot.source) if slot.source else None
        if value is None or value == "" or value == []:
            elements[slot.tag] = slot.empty
            continue
        if slot.text and type(value) is str:
            encoded = value.encode("utf-8")
            wide = wide or len(encoded) != len(value)  # only non-ASCII characters take more than a byte
            if len(encoded) % 2:
                encoded += slot.pad
            elements[slot.tag] = RawDataElement(slot.tag, slot.vr, len(encoded), encoded, 0, True, True)
            continue
        element, needs_utf8 = _raw(slot.tag, slot.vr, value)
        elements[slot.tag] = element
        wide = wide or needs_utf8
    if wide:
        elements[_CHARSET] = _raw(_CHARSET, "CS", _UTF8)[0]
    response = Dataset(elements)
    response.set_original_encoding(True, True, _UTF8_ENCODINGS if wide else _DEFAULT_ENCODINGS)
    return response


def _raw(tag: BaseTag, vr: str, value: Any) -> tuple[RawDataElement, bool]:
    """An element with its value encoded (Little Endian; text as UTF-8), and whether the text needs UTF-8.
    Values of VRs no level here fills (binary, sequences) are empty."""
    encoded, wide = b"", False
    if value is not None and value != "" and value != []:
        if vr in _TEXT_VRS:
            text = value if type(value) is str else "\\".join(
                str(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
            wide = not text.isascii()
            encoded = text.encode("utf-8")
            if len(encoded) % 2:
                encoded += b"\0" if vr == "UI" else b" "
        elif vr in _BINARY_INTEGERS:
            listed = value if isinstance(value, (list, tuple)) else [value]
            encoded = b"".join(struct.pack(_BINARY_INTEGERS[vr], int(v)) for v in listed)
    return RawDataElement(tag, vr, len(encoded), encoded, 0, True, True), wide


def _instance_response(slots: tuple[_Slot, ...], values: Dataset,
                       level: RawDataElement, retrieve: RawDataElement, charset_asked: bool) -> Dataset:
    """An IMAGE-level response: the asked keys the instance has, as stored (typed by their stored VRs), the
    others empty."""
    response = Dataset()
    for slot in slots:
        if slot.tag in values and values[slot.tag].VR != "SQ" and slot.vr != "SQ":
            response.add(values[slot.tag])
        else:
            response[slot.tag] = slot.empty
    response[_LEVEL], response[_RETRIEVE_AET] = level, retrieve
    if charset_asked or _needs_unicode(response):
        response.SpecificCharacterSet = _UTF8
    return response


def _needs_unicode(response: Dataset) -> bool:
    for element in response:
        if element.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and element.value is not None:
            texts = element.value if isinstance(element.value, (MultiValue, list)) else [element.value]
            if any(not str(text).isascii() for text in texts):
                return True
    return False


# --- The pynetdicom handler -------------------------------------------------------------------------------------

def handle_find(event: Any) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND: refuse a peer that may not query, answer the query, one pending response per match (stopping
    at a C-CANCEL), and audit it. Bad input becomes a failure status; nothing here raises into pynetdicom."""
    try:
        yield from _find_answer(event)
    finally:
        _database_release()


def _find_answer(event: Any) -> Iterator[tuple[Any, Dataset | None]]:
    model = str(event.request.AffectedSOPClassUID)
    model_name = MODEL_NAMES.get(model, model)
    try:
        peer = peer_of(event)
    except Exception:
        logger.exception("C-FIND: could not tell who the peer is")
        yield _failure(UNABLE_TO_PROCESS, "Unable to process"), None
        return
    if not peer.may_query:
        _audit(peer, model_name, "", [], 0, NOT_AUTHORIZED)
        yield _failure(NOT_AUTHORIZED, f"{peer.calling_ae_title} may not query"), None
        return
    level, keys = "", []
    try:
        identifier = event.identifier
        level = str(identifier.get("QueryRetrieveLevel", "") or "")[:16]
        keys = sorted({element.keyword or str(element.tag) for element in identifier})
        matches = find_matches(datastore_id=peer.datastore_id, model=model, identifier=identifier,
                               retrieve_ae_title=peer.called_ae_title)
    except FindFailed as e:
        _audit(peer, model_name, level, keys, 0, e.status)
        yield _failure(e.status, str(e)), None
        return
    except Exception:
        logger.exception("C-FIND failed (model %s, level %s)", model_name, level)
        _audit(peer, model_name, level, keys, 0, UNABLE_TO_PROCESS)
        yield _failure(UNABLE_TO_PROCESS, "Unable to process"), None
        return
    # The responses are built little endian (find.py _raw): tell pydicom they are already in the negotiated
    # encoding so it writes them as they are; in big endian it converts them first.
    syntax = event.context.transfer_syntax
    sent = 0
    try:
        for match in matches:
            if event.is_cancelled:
                _audit(peer, model_name, level, keys, sent, CANCEL)
                yield CANCEL, None
                return
            if syntax.is_little_endian:
                match.set_original_encoding(syntax.is_implicit_VR, True)
            yield PENDING, match
            sent += 1
    except Exception:
        logger.exception("C-FIND failed after %d matches (model %s, level %s)", sent, model_name, level)
        _audit(peer, model_name, level, keys, sent, UNABLE_TO_PROCESS)
        yield _failure(UNABLE_TO_PROCESS, "Unable to process"), None
        return
    _audit(peer, model_name, level, keys, sent, SUCCESS)
    yield SUCCESS, None


def _database_release() -> None:
    """Give this thread's PostgreSQL connection back to the pool once the query is answered and audited. The
    listener closes an association's connections when its threads end; an association a workstation keeps open
    between queries should hold none meanwhile, or a few idle ones starve the pool. SQLite's connection (a file
    handle, no pool, and a millisecond to open with its PRAGMAs) stays with the association's thread."""
    if connection.vendor != "sqlite":
        connection.close()


def _failure(status: int, comment: str) -> Dataset:
    dataset = Dataset()
    dataset.Status = status
    # ErrorComment is LO: 64 characters, ASCII here (it never carries a value of the identifier).
    dataset.ErrorComment = comment.encode("ascii", "replace").decode()[:64]
    return dataset


def _audit(peer: Peer, model: str, level: str, keys: Iterable[str], matches: int, status: int) -> None:
    """One audit event per query, as the listener audits associations: who asked, the model, level and keys asked
    for (keywords, never values), how many matches were sent and the final status."""
    failed = status not in (SUCCESS, CANCEL)
    audit_record(event_name="DICOMFind", event_type="DicomNetwork", category="Data", read_only=True,
                 source_ip=peer.address or None, datastore_id=peer.datastore_id,
                 parameters={"callingAETitle": peer.calling_ae_title, "calledAETitle": peer.called_ae_title,
                             "address": peer.address, "dicomNodeId": peer.node_id, "model": model, "level": level,
                             "keys": list(keys), "matches": matches, "status": f"0x{status:04X}"},
                 status_code=403 if status == NOT_AUTHORIZED else 400 if failed else 200,
                 error_code=f"0x{status:04X}" if failed else "")
    _database_release()
