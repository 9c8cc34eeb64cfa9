"""The discover step of an import: list the job's input, read each file once, enforce the job's file quotas;
no Django.

Entries that cannot be read come back with their `failure` set (see imaging/pipeline/sources.py) and become
their own manifest lines; a quota exceeded fails the whole job with its reason code.
"""
from __future__ import annotations

from pathlib import Path

from imaging.pipeline.sources import S3Settings, SourceError, SourceObject, list_objects


def discover(uris: list[str], s3: S3Settings, *, max_files: int, max_bytes: int) -> list[SourceObject]:
    """Every object under the URIs, each file once; raises SourceError when the job's quotas are exceeded."""
    objects: list[SourceObject] = []
    for uri in uris:
        objects += list_objects(uri, s3)
    objects = _read_once(objects)
    if len(objects) > max_files:
        raise SourceError("DICOM import job has failed. FILE_COUNTS_LIMIT_EXCEEDED")
    if sum(item.size for item in objects) > max_bytes:
        raise SourceError("DICOM import job has failed. FILE_SIZE_LIMIT_EXCEEDED")
    return objects


def _read_once(objects: list[SourceObject]) -> list[SourceObject]:
    """A file reached twice (overlapping folders, a link to a file beside it) is one instance: it is read once,
    under its own name rather than a link's when both were found."""
    chosen: dict[str, SourceObject] = {}
    for item in objects:
        if item.failure:
            continue
        current = chosen.get(item.uri)
        if current is None or (not _read_under_own_name(current) and _read_under_own_name(item)):
            chosen[item.uri] = item
    return [item for item in objects if item.failure or chosen[item.uri] is item]


def _read_under_own_name(item: SourceObject) -> bool:
    return item.uri.startswith("file://") and item.uri == Path(item.display_name).as_uri()
