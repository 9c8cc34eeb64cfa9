"""STOW-RS (SPEC 11.5): store the instances of one request body, synchronously, through the import pipeline.

The design: the body (already spooled to a temporary file and hashed by imaging.aws.signed) is split into its
parts by imaging.dicom.multipart, each part written to its own file in a fresh folder under the data directory's
uploads folder, in body order (`part-000001.dcm`, …). Each part's header names its instance
(imaging.dicom.identity); StoreDICOMStudy refuses the parts of another study there (0xA900), before they reach the
pipeline. The folder then becomes an ordinary local import job run to its end in this thread
(services.imports.import_job_run_inline): read, normalize, transcode to HTJ2K, verify with OpenJPEG, checksums, and
the same primary/non-primary grouping as any import (SPEC 4.3-4.4), persisted in one transaction. The job is listed
in the admin with the others, and deletes its folder when it ends. The job's manifest lines (one per file, in
`outcome`) say which part was stored, with which warnings, and which failed and why; they become the response's
ReferencedSOPSequence and FailedSOPSequence.

Memory stays bounded by the multipart reader's chunk: no part and no body is held whole here (the pipeline itself
reads one file at a time, within its per-file limit). The response is plain DICOM JSON data (`StowResult.dataset`);
the view turns it into HTTP.
"""
from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterable

from django.conf import settings

from imaging.dicom.identity import InstanceIdentity, p10_identity
from imaging.dicom.multipart import MultipartError, media_type_parse, parts_read
from imaging.errors import UnsupportedMediaType, ValidationFailed
from imaging.models import JobStatus
from imaging.services.datastores import datastore_require_active
from imaging.services.imports import import_job_run_inline

logger = logging.getLogger(__name__)

DICOM = "application/dicom"
MULTIPART = "multipart/related"
COPY_BYTES = 256 * 1024

# FailureReason (0008,1197) values, PS3.4 C.4.2.1.4 / PS3.18 10.5.3.
FAILURE_PROCESSING = 0x0110
FAILURE_STUDY_MISMATCH = 0xA900
FAILURE_CANNOT_UNDERSTAND = 0xC000

RETRIEVE_URL = "00081190"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_CLASS_UID = "00081150"
REFERENCED_SOP_INSTANCE_UID = "00081155"
WARNING_REASON = "00081196"
FAILURE_REASON = "00081197"


@dataclass
class StoredPart:
    """One part of the body as written to disk: its file, the instance its header names (None if unreadable),
    and a failure decided before the pipeline (wrong study, wrong media type)."""

    path: Path
    identity: InstanceIdentity | None
    failure_reason: int | None = None


@dataclass
class StowResult:
    """What the store did with each part, as the response's DICOM JSON dataset (SPEC 11.5)."""

    retrieve_url: str | None
    referenced: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    job_id: str = ""

    @property
    def all_stored(self) -> bool:
        return not self.failed

    def dataset(self) -> dict[str, Any]:
        dataset: dict[str, Any] = {}
        if self.retrieve_url:
            dataset[RETRIEVE_URL] = {"vr": "UR", "Value": [self.retrieve_url]}
        if self.failed:
            dataset[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": self.failed}
        dataset[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": self.referenced} if self.referenced else {"vr": "SQ"}
        return dataset

    def summary(self) -> dict[str, Any]:
        """Counts only, for the audit trail (which must not carry DICOM values)."""
        return {"storedInstances": len(self.referenced), "failedInstances": len(self.failed), "jobId": self.job_id}


def _body_kind(content_type: str | None) -> tuple[str, str | None]:
    """(kind, boundary) of a STOW body's Content-Type: ("single", None) for application/dicom, ("multipart",
    boundary) for multipart/related of application/dicom parts. Any other media type is a 415; a multipart
    type without a usable boundary a 400."""
    if not content_type:
        raise UnsupportedMediaType("STOW-RS needs a Content-Type: multipart/related; type=\"application/dicom\"")
    try:
        media = media_type_parse(content_type)
    except MultipartError as e:
        raise ValidationFailed(str(e)) from e
    if media.essence == DICOM:
        return "single", None
    if media.essence != MULTIPART:
        raise UnsupportedMediaType(f"STOW-RS accepts {MULTIPART} or {DICOM}, not {media.essence}")
    part_type = media.params.get("type")
    if part_type is not None and _essence(part_type) != DICOM:
        raise UnsupportedMediaType(f"STOW-RS accepts multipart/related parts of type {DICOM} only")
    boundary = media.params.get("boundary")
    if not boundary:
        raise ValidationFailed("A multipart/related Content-Type needs a boundary parameter")
    return "multipart", boundary


def _essence(text: str) -> str:
    """The essence of a media type, or "" when it cannot be parsed."""
    try:
        return media_type_parse(text).essence
    except MultipartError:
        return ""


def instances_store(*, datastore_id: str, body: BinaryIO, content_type: str | None, study_uid: str | None,
                    base_url: str) -> StowResult:
    """Store every instance of `body` (see the module docstring). `study_uid` is StoreDICOMStudy's study, None for
    StoreDICOM; `base_url` the DICOMweb root of the data store, for RetrieveURLs."""
    kind, boundary = _body_kind(content_type)
    datastore_require_active(datastore_id=datastore_id)
    folder = Path(settings.DATA_DIR) / "uploads" / f"stow-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        parts = _parts_write(body, folder, kind=kind, boundary=boundary)
        if not parts:
            raise ValidationFailed("The request body holds no DICOM instance")
        for part in parts:
            if part.failure_reason is None and study_uid is not None and (
                    part.identity is None or part.identity.study_uid != study_uid):
                part.failure_reason = FAILURE_STUDY_MISMATCH if part.identity else FAILURE_CANNOT_UNDERSTAND
            if part.failure_reason is not None:
                part.path.unlink(missing_ok=True)
        outcome_lines: dict[str, dict[str, Any]] = {}
        job_id = ""
        if any(part.failure_reason is None for part in parts):
            job = import_job_run_inline(datastore_id=datastore_id, folder=folder, job_name="STOW-RS")
            job_id = job.id
            if job.status == JobStatus.COMPLETED and job.outcome:
                outcome_lines = {Path(line["inputFile"]).name: line for line in job.outcome.get("lines", [])}
            else:  # failed as a whole: none of its parts was stored, through no fault of theirs
                logger.warning("STOW-RS import job %s ended %s", job.id, job.status)
                outcome_lines = {part.path.name: {"exception": {"exceptionType": "InternalServerException"}}
                                 for part in parts}
        return _result(parts, outcome_lines, study_uid=study_uid, base_url=base_url, job_id=job_id)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _parts_write(body: BinaryIO, folder: Path, *, kind: str, boundary: str | None) -> list[StoredPart]:
    """Each part of the body in its own file under `folder`, in body order, with the identity its header gives."""
    max_parts = settings.APERTURE_IMPORT_MAX_FILES
    parts: list[StoredPart] = []

    def write(chunks: Iterable[bytes], part_type: str | None) -> None:
        if len(parts) >= max_parts:
            raise ValidationFailed(f"A STOW-RS request may hold at most {max_parts} instances")
        path = folder / f"part-{len(parts) + 1:06d}.dcm"
        size = 0
        with open(path, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
                size += len(chunk)
        if part_type is not None and _essence(part_type) != DICOM:
            parts.append(StoredPart(path=path, identity=None, failure_reason=FAILURE_CANNOT_UNDERSTAND))
        else:
            parts.append(StoredPart(path=path, identity=p10_identity(path) if size else None))

    if kind == "single":
        write(iter(lambda: body.read(COPY_BYTES), b""), None)
        return parts if parts[0].path.stat().st_size else []
    try:
        for part in parts_read(body, boundary=boundary or ""):
            write(part.chunks(), part.content_type)
    except MultipartError as e:
        raise ValidationFailed(f"The body is not a valid multipart/related message: {e}") from e
    return parts


def _result(parts: list[StoredPart], lines: dict[str, dict[str, Any]], *, study_uid: str | None, base_url: str,
            job_id: str) -> StowResult:
    stored_studies: set[str] = set()
    result = StowResult(retrieve_url=None, job_id=job_id)
    for part in parts:
        line = lines.get(part.path.name) if part.failure_reason is None else None
        identity = part.identity
        if line is not None and "importResponse" in line:
            item = _reference(identity)
            if identity is not None:
                item[RETRIEVE_URL] = {"vr": "UR", "Value": [
                    f"{base_url}/studies/{identity.study_uid}/series/{identity.series_uid}"
                    f"/instances/{identity.sop_instance_uid}"]}
                stored_studies.add(identity.study_uid)
            warnings = line["importResponse"].get("warnings") or []
            if warnings:
                item[WARNING_REASON] = {"vr": "US", "Value": [int(warnings[0]["warning_reason_code"])]}
            result.referenced.append(item)
            continue
        reason = part.failure_reason
        if reason is None:
            reason = _failure_reason(line)
        item = _reference(identity)
        item[FAILURE_REASON] = {"vr": "US", "Value": [reason]}
        result.failed.append(item)
    study = study_uid or (next(iter(stored_studies)) if len(stored_studies) == 1 else None)
    result.retrieve_url = f"{base_url}/studies/{study}" if study else None
    return result


def _reference(identity: InstanceIdentity | None) -> dict[str, Any]:
    """ReferencedSOPClassUID and ReferencedSOPInstanceUID (type 1: empty when the part names no instance)."""
    if identity is None:
        return {REFERENCED_SOP_CLASS_UID: {"vr": "UI"}, REFERENCED_SOP_INSTANCE_UID: {"vr": "UI"}}
    return {REFERENCED_SOP_CLASS_UID: {"vr": "UI", "Value": [identity.sop_class_uid]},
            REFERENCED_SOP_INSTANCE_UID: {"vr": "UI", "Value": [identity.sop_instance_uid]}}


def _failure_reason(line: dict[str, Any] | None) -> int:
    """A part the pipeline refused as the sender's fault cannot be understood (0xC000); our own failures, merge
    conflicts, a job that failed as a whole, are processing failures (0x0110). A part with no manifest line (the
    pipeline skips empty files) was never understood either."""
    if line is None:
        return FAILURE_CANNOT_UNDERSTAND
    exception = line.get("exception") or {}
    if exception.get("exceptionType") == "ValidationException":
        return FAILURE_CANNOT_UNDERSTAND
    return FAILURE_PROCESSING
