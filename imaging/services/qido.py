"""QIDO-RS searches (SPEC 11.2) at the study, series and instance levels.

Studies come from StudyIndex (one row per study, built from its primary image sets) and series from the primary,
non-deleted ImageSet rows: both are answered from indexed columns, without reading a metadata document. Instances
are read from the metadata documents of the matching series (found as the series search finds them), one series
at a time in series order, until the page is full. A search returns DICOM JSON objects (PS3.18 Annex F) and
whether more matches exist beyond the page. Bad parameters are a ValidationFailed (400).

Matching: exact and case-sensitive; comma-separated UID lists; DA/TM ranges `A-B`, `A-`, `-B`; `*` and `?`
wildcards; `fuzzymatching=true` makes PatientName a case-insensitive prefix match on any name component (through
StudyNameToken), and ReferringPhysicianName the same, checked row by row among the rows the other criteria leave
(it has no token index). An empty value matches everything (universal matching); unknown keys are ignored.

Attributes beyond the DICOMTags summary (ReferringPhysicianName, TimezoneOffsetFromUTC, SeriesDescription,
PerformedProcedureStepStartDate/Time) come from `ImageSet.qido_attributes` and the study index, filled by every
write; `manage.py search_index_rebuild` fills them for image sets written before they existed.
"""
from __future__ import annotations

import functools
import re
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any, Iterator

from django.db.models import F, Q, QuerySet, TextField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from imaging.dicom.document import decode_document
from imaging.dicom.rebuild import dict_to_dataset
from imaging.errors import ValidationFailed
from imaging.models import ImageSet, ImageSetState, StudyIndex
from imaging.services.datastores import datastore_require_active
from imaging.storage import blob_store
from imaging.study_index import name_part_prefix, name_tokens

DEFAULT_LIMIT = 1000
MAX_OFFSET = 1_000_000
MAX_INCLUDEFIELDS = 50
ADDITIONAL_RESULTS_WARNING = '299 aperture "There are additional results"'
CONTROL_KEYS = {"limit", "offset", "includefield", "fuzzymatching", "imageSetId"}

STUDY_DEFAULTS = ["StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
                  "ReferringPhysicianName", "TimezoneOffsetFromUTC", "RetrieveURL", "PatientName", "PatientID",
                  "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
                  "NumberOfStudyRelatedInstances"]
# What the study level can answer beyond its defaults (includefield=all).
STUDY_AVAILABLE = STUDY_DEFAULTS + ["StudyDescription"]
SERIES_DEFAULTS = ["Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
                   "NumberOfSeriesRelatedInstances", "PerformedProcedureStepStartDate",
                   "PerformedProcedureStepStartTime", "RequestAttributesSequence", "RetrieveURL", "StudyInstanceUID"]
SERIES_AVAILABLE = SERIES_DEFAULTS + ["BodyPartExamined"]

# Study-level match keys and the StudyIndex column each is matched on.
_STUDY_COLUMNS = {"StudyInstanceUID": "study_instance_uid", "PatientID": "patient_id", "PatientName": "patient_name",
                  "PatientBirthDate": "patient_birth_date", "PatientSex": "patient_sex", "StudyDate": "study_date",
                  "StudyTime": "study_time", "AccessionNumber": "accession_number",
                  "StudyDescription": "study_description", "ReferringPhysicianName": "referring_physician_name",
                  "StudyID": "study_id"}
_STUDY_KEYS = set(_STUDY_COLUMNS) | {"ModalitiesInStudy"}
_SERIES_KEYS = {"SeriesInstanceUID", "Modality", "SeriesNumber", "BodyPartExamined", "SeriesDescription",
                "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"}
_RANGE_FORMATS = {"DA": re.compile(r"\d{8}"), "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"),
                  "DT": re.compile(r"\d{4,14}(\.\d{1,6})?([+-]\d{4})?")}


@dataclass
class Search:
    """The parsed query string of one search."""

    matches: dict[str, str] = field(default_factory=dict)  # keyword -> raw value, non-empty only
    includefields: set[str] = field(default_factory=set)
    include_all: bool = False
    fuzzy: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass
class SearchResult:
    objects: list[dict[str, Any]]
    more: bool


def _keyword(name: str) -> str | None:
    """The dictionary keyword for a keyword or 8-hex tag; None for what the dictionary does not know."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return keyword_for_tag(int(name, 16)) or None
    return name if tag_for_keyword(name) is not None else None


def _integer(params: dict[str, list[str]], name: str, default: int, maximum: int | None, clamp: bool) -> int:
    values = params.get(name)
    if not values:
        return default
    text = values[-1]
    if not re.fullmatch(r"\d{1,9}", text):
        raise ValidationFailed(f"{name} must be a non-negative integer")
    value = int(text)
    if maximum is not None and value > maximum:
        if not clamp:
            raise ValidationFailed(f"{name} must be at most {maximum}")
        value = maximum
    return value


def search_parse(params: dict[str, list[str]]) -> Search:
    """The search a query string asks for (`params` as QueryDict.lists() gives it)."""
    search = Search()
    search.limit = _integer(params, "limit", DEFAULT_LIMIT, DEFAULT_LIMIT, clamp=True)
    search.offset = _integer(params, "offset", 0, MAX_OFFSET, clamp=False)
    fuzzy = [v.lower() for v in params.get("fuzzymatching", [])]
    if any(v not in ("true", "false") for v in fuzzy):
        raise ValidationFailed("fuzzymatching must be true or false")
    search.fuzzy = bool(fuzzy) and fuzzy[-1] == "true"
    fields = [name.strip() for value in params.get("includefield", []) for name in value.split(",") if name.strip()]
    if len(fields) > MAX_INCLUDEFIELDS:
        raise ValidationFailed(f"At most {MAX_INCLUDEFIELDS} includefield values are allowed")
    for name in fields:
        if name == "all":
            search.include_all = True
        elif (keyword := _keyword(name.split(".")[0])) is not None:
            search.includefields.add(keyword)
    for name, values in params.items():
        if name in CONTROL_KEYS:
            continue
        keyword = _keyword(name)
        if keyword is None or not values or values[-1] == "":
            continue  # unknown keys are ignored; an empty value matches everything
        value = values[-1]
        match_value_validate(keyword, value)
        search.matches[keyword] = value
    return search


def match_value_validate(keyword: str, value: str) -> None:
    vr = dictionary_VR(keyword)
    if vr in _RANGE_FORMATS:
        low, dash, high = value.partition("-")
        bounds = [low, high] if dash else [low]
        if not any(bounds) or any(b and not _RANGE_FORMATS[vr].fullmatch(b) for b in bounds):
            raise ValidationFailed(f"{keyword} must be a {vr} value or range A-B, A- or -B")
    if vr == "UI" and any(not re.fullmatch(r"[0-9.]{1,64}", uid) for uid in value.split(",")):
        raise ValidationFailed(f"{keyword} must be a UID or a comma-separated list of UIDs")


def _wildcard(column: str, value: str) -> Q:
    """Exact, case-sensitive match, with `*` and `?` as wildcards."""
    if "*" not in value and "?" not in value:
        return Q(**{column: value})
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return Q(**{f"{column}__regex": f"^{pattern}$"})


def _range(column: str, value: str) -> Q:
    low, dash, high = value.partition("-")
    if not dash:
        return Q(**{column: value})
    q = Q()
    if low:
        q &= Q(**{f"{column}__gte": low})
    if high:
        # A TM bound matches every time that starts with it: 10 ends at 10:59:59.999999.
        q &= Q(**{f"{column}__lte": high + "~"}) & ~Q(**{column: ""})
    else:
        q &= ~Q(**{column: ""})
    return q


def study_filter(datastore_id: str, search: Search) -> Q:
    q = Q()
    for keyword, value in search.matches.items():
        if keyword not in _STUDY_KEYS:
            continue
        vr = dictionary_VR(keyword)
        column = _STUDY_COLUMNS.get(keyword)
        if keyword == "ModalitiesInStudy":
            any_of = Q()
            for modality in value.split(","):
                any_of |= Q(modalities__contains=f" {modality.strip()} ")
            q &= any_of
        elif keyword == "PatientName" and search.fuzzy:
            for part in name_tokens(value.replace("*", "").replace("?", "")):
                q &= name_part_prefix(part)
        elif keyword == "ReferringPhysicianName" and search.fuzzy:
            for part in name_tokens(value.replace("*", "").replace("?", "")):
                q &= _name_component_prefix(column, part)
        elif vr == "UI":
            q &= Q(**{f"{column}__in": value.split(",")})
        elif vr in ("DA", "TM"):
            q &= _range(column, value)
        else:
            q &= _wildcard(column, value)
    return q


def _name_component_prefix(column: str, token: str) -> Q:
    """A case-insensitive prefix match on any component of a person name held in `column` (fuzzy matching of a
    name that has no token index: checked row by row among the rows the other criteria leave)."""
    return Q(**{f"{column}__iregex": r"(^|[\^= ,])" + re.escape(token)})


def _json_text(keyword: str) -> Coalesce:
    """An image set's qido_attributes value as text ('' when absent), so wildcards and ranges compare strings on
    SQLite and PostgreSQL alike, as they do for the study columns."""
    return Coalesce(KT(f"qido_attributes__{keyword}"), Value(""), output_field=TextField())


def _primary_sets(datastore_id: str) -> QuerySet[ImageSet]:
    return ImageSet.objects.filter(datastore_id=datastore_id, is_primary=True).exclude(state=ImageSetState.DELETED)


def _page(queryset: QuerySet, search: Search) -> tuple[list[Any], bool]:
    rows = list(queryset[search.offset:search.offset + search.limit + 1])
    return rows[:search.limit], len(rows) > search.limit


@functools.lru_cache(maxsize=None)
def _vr_and_tag(keyword: str) -> tuple[str, str]:
    """The dictionary VR and the 8-hex tag of a keyword, looked up once: pydicom's lookups, a few microseconds each,
    were two thirds of a 200-study answer."""
    return dictionary_VR(keyword), f"{tag_for_keyword(keyword):08X}"


_PLAIN, _PERSON, _INTEGER, _URL = range(4)


def _kind(keyword: str, vr: str) -> int:
    if keyword == "RetrieveURL":
        return _URL
    if vr == "PN":
        return _PERSON
    return _INTEGER if vr in ("IS", "US", "UL", "SL", "SS") else _PLAIN


@functools.lru_cache(maxsize=256)
def _layout(wanted: tuple[str, ...]) -> tuple[tuple[str, str, str, int], ...]:
    """(keyword, tag, VR, kind) of the attributes asked for, in tag order: every object of an answer has the same,
    so it is worked out once per answer, not per object."""
    entries = []
    for keyword in wanted:
        vr, tag = ("UR", "00081190") if keyword == "RetrieveURL" else _vr_and_tag(keyword)
        entries.append((keyword, tag, vr, _kind(keyword, vr)))
    return tuple(sorted(set(entries), key=lambda entry: entry[1]))


def _dicom_json(values: dict[str, Any], layout: tuple[tuple[str, str, str, int], ...]) -> dict[str, Any]:
    """One DICOM JSON object (PS3.18 F.2) of `values` (keyword -> value or list of values) laid out by `layout`.
    Written out rather than a call per attribute: a study answer is 1000 objects of 17 attributes."""
    out: dict[str, Any] = {}
    for keyword, tag, vr, kind in layout:
        if keyword not in values:
            continue
        value = values[keyword]
        if value is None or value == "" or value == []:
            out[tag] = {"vr": vr}
            continue
        listed = value if isinstance(value, list) else [value]
        if kind == _PERSON:
            listed = [{"Alphabetic": v} for v in listed]
        elif kind == _INTEGER:
            try:
                listed = [int(v) for v in listed]
            except (TypeError, ValueError):
                pass
        out[tag] = {"vr": vr, "Value": listed}
    return out


def _wanted(search: Search, defaults: list[str], available: list[str]) -> list[str]:
    if search.include_all:
        return available
    return defaults + [k for k in available if k in search.includefields or k in search.matches]


# The study index columns a study answer reads, fetched as tuples (no model instances: a page is 1000 studies).
_STUDY_ROW = ("study_instance_uid", "patient_name", "patient_id", "patient_birth_date", "patient_sex", "study_date",
              "study_time", "accession_number", "study_description", "study_id", "modalities",
              "referring_physician_name", "timezone_offset", "number_of_series", "number_of_instances")


def studies_search(*, datastore_id: str, search: Search, base_url: str) -> SearchResult:
    """GET /studies: newest update first. `base_url` is the data store's DICOMweb base, for RetrieveURL."""
    datastore_require_active(datastore_id=datastore_id)
    rows, more = _page(StudyIndex.objects.filter(Q(datastore_id=datastore_id) & study_filter(datastore_id, search))
                       .order_by("-updated_at", "-id").values_list(*_STUDY_ROW), search)
    layout = _layout(tuple(_wanted(search, STUDY_DEFAULTS, STUDY_AVAILABLE)))
    return SearchResult([_dicom_json(_study_values(row, base_url), layout) for row in rows], more)


def _study_values(row: tuple, base_url: str) -> dict[str, Any]:
    (study_uid, patient_name, patient_id, birth_date, sex, study_date, study_time, accession, description, study_id,
     modalities, referring, timezone_offset, number_of_series, number_of_instances) = row
    return {
        "StudyInstanceUID": study_uid, "PatientName": patient_name, "PatientID": patient_id,
        "PatientBirthDate": birth_date, "PatientSex": sex, "StudyDate": study_date, "StudyTime": study_time,
        "AccessionNumber": accession, "StudyDescription": description, "StudyID": study_id,
        "ModalitiesInStudy": modalities.split(), "InstanceAvailability": "ONLINE",
        "ReferringPhysicianName": referring, "TimezoneOffsetFromUTC": timezone_offset,
        "NumberOfStudyRelatedSeries": number_of_series, "NumberOfStudyRelatedInstances": number_of_instances,
        "RetrieveURL": f"{base_url}/studies/{study_uid}",
    }


def series_queryset(datastore_id: str, search: Search, study_uid: str | None) -> QuerySet[ImageSet]:
    queryset = _primary_sets(datastore_id)
    if study_uid is not None:
        queryset = queryset.filter(study_instance_uid=study_uid)
    study_q = study_filter(datastore_id, search)
    if study_q:
        queryset = queryset.filter(study_instance_uid__in=StudyIndex.objects.filter(
            Q(datastore_id=datastore_id) & study_q).values("study_instance_uid"))
    for keyword, value in search.matches.items():
        if keyword == "SeriesInstanceUID":
            queryset = queryset.filter(series_instance_uid__in=value.split(","))
        elif keyword == "Modality":
            queryset = queryset.filter(_wildcard("modality", value))
        elif keyword == "SeriesNumber":
            if not re.fullmatch(r"[+-]?\d{1,9}", value.strip()):
                raise ValidationFailed("SeriesNumber must be an integer")
            queryset = queryset.filter(dicom_tags__DICOMSeriesNumber=int(value))
        elif keyword == "BodyPartExamined":
            queryset = queryset.filter(_wildcard("dicom_tags__DICOMSeriesBodyPart", value))
        elif keyword == "SeriesDescription":
            queryset = queryset.alias(qido_SeriesDescription=_json_text("SeriesDescription"))
            queryset = queryset.filter(_wildcard("qido_SeriesDescription", value))
        elif keyword in ("PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime"):
            queryset = queryset.alias(**{f"qido_{keyword}": _json_text(keyword)})
            queryset = queryset.filter(_range(f"qido_{keyword}", value))
    return queryset.order_by(F("dicom_tags__DICOMSeriesNumber").asc(nulls_last=True), "series_instance_uid", "id")


def series_search(*, datastore_id: str, search: Search, base_url: str, study_uid: str | None = None) -> SearchResult:
    """GET /studies/{study}/series (`study_uid`) and GET /series (study-level keys search the parent studies):
    SeriesNumber ascending."""
    datastore_require_active(datastore_id=datastore_id)
    queryset = series_queryset(datastore_id, search, study_uid)
    rows, more = _page(queryset, search)
    layout = _layout(tuple(_wanted(search, SERIES_DEFAULTS, SERIES_AVAILABLE)))
    return SearchResult([_dicom_json(_series_values(row, base_url), layout) for row in rows], more)


def _series_values(row: ImageSet, base_url: str) -> dict[str, Any]:
    tags = row.dicom_tags or {}
    qido = row.qido_attributes or {}
    return {
        "StudyInstanceUID": row.study_instance_uid, "SeriesInstanceUID": row.series_instance_uid,
        "Modality": row.modality, "SeriesNumber": tags.get("DICOMSeriesNumber"),
        "BodyPartExamined": tags.get("DICOMSeriesBodyPart"), "SeriesDescription": qido.get("SeriesDescription"),
        "NumberOfSeriesRelatedInstances": row.number_of_instances,
        "PerformedProcedureStepStartDate": qido.get("PerformedProcedureStepStartDate"),
        "PerformedProcedureStepStartTime": qido.get("PerformedProcedureStepStartTime"),
        "RequestAttributesSequence": None,
        "RetrieveURL": f"{base_url}/studies/{row.study_instance_uid}/series/{row.series_instance_uid}",
    }



INSTANCE_DEFAULTS = ["SOPClassUID", "SOPInstanceUID", "InstanceNumber", "Rows", "Columns", "BitsAllocated",
                     "NumberOfFrames", "StudyInstanceUID", "SeriesInstanceUID"]
_INSTANCE_KEYS = {"SOPInstanceUID", "SOPClassUID", "InstanceNumber"}


def instances_search(*, datastore_id: str, search: Search, base_url: str, study_uid: str | None = None,
                     series_uid: str | None = None) -> SearchResult:
    """GET /studies/{s}/series/{se}/instances, /studies/{s}/instances and /instances. Series are taken in the
    series search's order (/studies/{s}/instances: last update first) and the instances of each by InstanceNumber;
    each series' metadata document is read only while the page is not full."""
    datastore_require_active(datastore_id=datastore_id)
    queryset = series_queryset(datastore_id, search, study_uid)
    if series_uid is not None:
        queryset = queryset.filter(series_instance_uid=series_uid)
    elif study_uid is not None:
        queryset = queryset.order_by("-updated_at", "-id")
    if not instance_number_valid(search):
        raise ValidationFailed("InstanceNumber must be an integer")
    needed, skip = search.limit + 1, search.offset
    objects: list[dict[str, Any]] = []
    with closing(matching_instances(queryset, search)) as found:
        for document, series, instance in found:
            if skip:
                skip -= 1
                continue
            objects.append(_instance_json(document, series, instance, search, base_url))
            if len(objects) == needed:
                return SearchResult(objects[:search.limit], True)
    return SearchResult(objects, False)


def instance_number_valid(search: Search) -> bool:
    """Whether the InstanceNumber match key, if any, is an integer (the instance searches compare it as one)."""
    value = search.matches.get("InstanceNumber")
    return value is None or re.fullmatch(r"[+-]?\d{1,9}", value) is not None


def matching_instances(queryset: QuerySet[ImageSet], search: Search
                       ) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(document, series, instance) of each instance that matches `search`, series by series in the order of
    `queryset` and by InstanceNumber within a series; a series' metadata document is read only when the caller asks
    for its first instance (QIDO-RS and C-FIND stop reading once their answer is full)."""
    store = blob_store()
    # The server-side cursor (PostgreSQL) is closed when this generator is, which its callers do at once
    # (contextlib.closing): one left to the garbage collector is closed at a random moment, possibly inside another
    # query on the same connection, which then waits on itself forever.
    with closing(queryset.iterator(chunk_size=100)) as image_sets:
        for image_set in image_sets:
            version = image_set.versions.filter(version=image_set.content_version).first()
            blob = store.get(version.metadata_key) if version else None
            if not blob:
                continue
            document = decode_document(blob)
            series = document.get("Study", {}).get("Series", {}).get(image_set.series_instance_uid)
            if series is None:
                continue
            for sop_uid, instance in sorted(series.get("Instances", {}).items(), key=_instance_order):
                if _instance_matches(sop_uid, instance.get("DICOM", {}), search):
                    yield document, series, instance


def _instance_order(item: tuple[str, dict[str, Any]]) -> tuple[int, int, str]:
    number = _as_int(item[1].get("DICOM", {}).get("InstanceNumber"))
    return (0 if number is not None else 1, number or 0, item[0])


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _instance_matches(sop_uid: str, values: dict[str, Any], search: Search) -> bool:
    for keyword, value in search.matches.items():
        if keyword == "SOPInstanceUID" and sop_uid not in value.split(","):
            return False
        if keyword == "SOPClassUID" and str(values.get("SOPClassUID", "")) not in value.split(","):
            return False
        if keyword == "InstanceNumber" and _as_int(values.get("InstanceNumber")) != int(value):
            return False
    return True


def _instance_json(document: dict[str, Any], series: dict[str, Any], instance: dict[str, Any], search: Search,
                   base_url: str) -> dict[str, Any]:
    """The instance's attributes as DICOM JSON: the defaults, the included and matched fields (of any level), or
    with `all` every attribute of the instance level; binary values inline (PixelData is never included)."""
    merged: dict[str, Any] = {}
    vrs: dict[str, str] = {}
    for node in (document.get("Patient", {}), document.get("Study", {}), series, instance):
        merged.update(node.get("DICOM", {}))
        vrs.update(node.get("DICOMVRs", {}))
    instance_keys = set(instance.get("DICOM", {}))
    wanted = set(INSTANCE_DEFAULTS) | search.includefields | set(search.matches)
    if search.include_all:
        wanted |= instance_keys
    chosen = {k: v for k, v in merged.items() if k in wanted and k not in PIXEL_DATA_KEYS}
    chosen["DICOMVRs"] = vrs
    dataset = dict_to_dataset(chosen, signed=merged.get("PixelRepresentation") == 1)
    out = dataset.to_json_dict(bulk_data_threshold=1 << 20)
    study_uid, series_uid = merged.get("StudyInstanceUID", ""), merged.get("SeriesInstanceUID", "")
    sop_uid = merged.get("SOPInstanceUID", "")
    out["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"]}
    return dict(sorted(out.items()))


PIXEL_DATA_KEYS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
