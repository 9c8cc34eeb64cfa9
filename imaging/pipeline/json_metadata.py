"""JSON metadata import (SPEC 4.10): study- or series-level DICOM JSON files that add to, or override, the
attributes of the P10 instances an import job reads; no Django.

`importConfiguration.dicomJsonMetadataImportConfiguration.dicomMetadataMappings` names, for a StudyInstanceUID
(and optionally a SeriesInstanceUID), a file under the job's input. The files are read before any instance is
processed, and are not imported as instances themselves. A series mapping is more specific than a study mapping
and is applied after it. Grouping (SPEC 4.4) sees the result, so a corrected PatientName decides the image set.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from imaging.dicom.dicomjson import DicomJsonError, levels_from_dicom_json
from imaging.dicom.levels import grouping_of
from imaging.dicom.reader import search_key_violation
from imaging.pipeline.sources import S3Settings, SourceError, SourceObject, read_object
from imaging.pipeline.results import EncodedFrame, FileResult

MAX_METADATA_FILE_BYTES = 10 * 1024 * 1024


class MetadataImportError(Exception):
    """The configuration cannot be applied (a file missing, unreadable or malformed): the job fails."""


@dataclass
class MetadataOverride:
    study_uid: str
    series_uid: str  # "" for a whole study
    levels: dict[str, dict[str, Any]]
    vrs: dict[str, dict[str, str]]


def metadata_mappings(import_configuration: dict[str, Any] | None) -> list[dict[str, str]]:
    configuration = (import_configuration or {}).get("dicomJsonMetadataImportConfiguration") or {}
    return list(configuration.get("dicomMetadataMappings") or [])


def load_overrides(
    mappings: list[dict[str, str]], objects: list[SourceObject], input_base: str, s3: S3Settings
) -> tuple[dict[str, list[MetadataOverride]], set[str]]:
    """The overrides by StudyInstanceUID, each study's most general first, and the URIs of the metadata files (to
    leave out of the instances).

    `input_base` is the input location as the discovered objects' display names start (an S3 key prefix ending
    in '/', or a folder path ending in '/'); a metadata file must be one of the discovered objects.
    """
    by_name = {item.display_name: item for item in objects}
    overrides: dict[str, list[MetadataOverride]] = {}
    files: set[str] = set()
    for mapping in mappings:
        path = mapping["metadataFilePath"]
        if path.startswith("/") or ".." in path.split("/"):
            raise MetadataImportError(f"metadataFilePath {path} must be a path inside the input location")
        item = by_name.get(input_base + path)
        if item is None:
            raise MetadataImportError(f"The metadata file {path} is not under the input location")
        if item.size > MAX_METADATA_FILE_BYTES:
            raise MetadataImportError(f"The metadata file {path} is larger than {MAX_METADATA_FILE_BYTES} bytes")
        try:
            document = json.loads(read_object(item.uri, s3))
        except SourceError as e:
            raise MetadataImportError(f"The metadata file {path} cannot be read: {e}") from e
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise MetadataImportError(f"The metadata file {path} is not JSON") from None
        try:
            levels, vrs = levels_from_dicom_json(document)
        except DicomJsonError as e:
            raise MetadataImportError(f"The metadata file {path}: {e}") from e
        study_uid, series_uid = mapping["studyInstanceUID"], mapping.get("seriesInstanceUID") or ""
        for keyword, expected, level in (("StudyInstanceUID", study_uid, "Study"),
                                         ("SeriesInstanceUID", series_uid, "Series")):
            if keyword in levels[level] and levels[level][keyword] != expected:
                raise MetadataImportError(f"The metadata file {path} cannot change {keyword}")
        overrides.setdefault(study_uid, []).append(
            MetadataOverride(study_uid=study_uid, series_uid=series_uid, levels=levels, vrs=vrs))
        files.add(item.uri)
    for study in overrides.values():
        study.sort(key=lambda override: bool(override.series_uid))
    return overrides, files


def apply_overrides(result: FileResult, overrides: dict[str, list[MetadataOverride]]) -> None:
    """Apply every matching override to a processed instance's metadata, then recompute its grouping keys."""
    matching = [o for o in overrides.get(result.study_uid, ()) if o.series_uid in ("", result.series_uid)]
    if not matching:
        return
    for override in matching:
        for level in ("Patient", "Study", "Series"):
            result.levels.setdefault(level, {}).update(override.levels[level])
            if override.vrs[level]:
                result.level_vrs.setdefault(level, {}).update(override.vrs[level])
        result.instance["DICOM"].update(override.levels["Instance"])
        if override.vrs["Instance"]:
            result.instance.setdefault("DICOMVRs", {}).update(override.vrs["Instance"])
    result.grouping = grouping_of({**result.levels["Patient"], **result.levels["Study"], **result.levels["Series"]})


def finish_instance(result: FileResult, overrides: dict[str, list[MetadataOverride]], *,
                    discard: Callable[[EncodedFrame], None]) -> None:
    """The last step of a processed file: apply its JSON metadata, then check the search-key limits (SPEC 4.6) on
    the values as they will be stored. Over a limit, the file fails and `discard` removes each frame its worker
    already wrote. Checking after the mapping is what lets a mapping correct a StudyID that is too long, and keeps
    a mapping from storing one."""
    if overrides:
        apply_overrides(result, overrides)
    stored = {**result.levels.get("Patient", {}), **result.levels.get("Study", {}),
              **result.levels.get("Series", {}), **result.instance.get("DICOM", {})}
    violation = search_key_violation(stored)
    if violation:
        for frame in result.frames:
            discard(frame)
        result.fail("ValidationException", violation)
