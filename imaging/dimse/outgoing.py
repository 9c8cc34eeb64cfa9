"""Instances leaving the store over DIMSE: which ones a C-GET/C-MOVE identifier names, the presentation contexts to
offer a destination, the transfer syntax each instance is sent in, and the instance as a pydicom Dataset.

Shared by the C-GET/C-MOVE SCP (retrieve.py) and the C-STORE SCU behind "Send to" (send.py).

What is read. Only primary, non-deleted image sets of the association's data store, as WADO-RS reads them. An
identifier is resolved to `InstanceRef`s (UIDs, SOP class, stored syntax) from each image set's metadata document
before anything is sent, so the number of sub-operations is known first; the datasets are then built one at a time
as they are sent, holding one document and one instance in memory.

Transfer syntax. Each instance goes in its stored syntax when the peer accepted it for the instance's SOP class
(HTJ2K as the importer stored it); else, where the stored frames are lossless, decoded to Explicit VR Little
Endian (pynetdicom re-encodes that as Implicit VR Little Endian when only that was accepted), so the received
samples are the original's, bit for bit. Instances kept in a lossy syntax go as stored or not at all (a failed
sub-operation): they are never decoded and re-encoded. Instances without pixel data go in Explicit or Implicit VR
Little Endian.

This module answers the DIMSE questions with plain values and `RetrieveRefused(status)`; it never sends a message.
"""
from __future__ import annotations

import io
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Collection, Iterable, Iterator

from django.db.models import Q
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from imaging.codecs.openjpeg_check import OpenJpegError
from imaging.dicom import uids
from imaging.dicom.rebuild import instance_dataset
from imaging.errors import Conflict, NotFound
from imaging.models import ImageSet, ImageSetState
from imaging.services.datastores import datastore_require_active
from imaging.services.instances import (
    FrameBlob,
    frame_blobs_in_order,
    image_set_frame_blobs,
    instance_p10_stream,
    lossless_syntax,
)
from imaging.services.wado import image_set_document
from imaging.storage import BlobStoreError, blob_store

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
# The levels of each retrieve model (PS3.4 C.6.1, C.6.2): Study Root has no PATIENT level.
MODEL_LEVELS = {
    str(PatientRootQueryRetrieveInformationModelGet): LEVELS,
    str(PatientRootQueryRetrieveInformationModelMove): LEVELS,
    str(StudyRootQueryRetrieveInformationModelGet): LEVELS[1:],
    str(StudyRootQueryRetrieveInformationModelMove): LEVELS[1:],
}
# Failure statuses of C-GET/C-MOVE (PS3.4 C.4.2.1.5, C.4.3.1.4).
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000
STATUS_OUT_OF_RESOURCES = 0xA701
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801
UNCOMPRESSED = (uids.EXPLICIT_LE, uids.IMPLICIT_LE)
MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are the odd numbers 1..255


class RetrieveRefused(Exception):
    """The retrieve cannot be done; `status` is the DIMSE failure status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class InstanceUnavailable(Exception):
    """One instance could not be built (a blob missing, the document changed since the identifier was resolved, a
    frame that does not decode): one failed sub-operation. The message is only the cause's type name: the cause's
    own message may hold UIDs (KeyError('<SOPInstanceUID>')), and this one is logged."""


# What building one instance may raise, beyond our bugs: the store, the document (KeyError: a series or instance
# gone since resolving), the values and codecs (CodecError and FrameSizeError are ValueErrors), pydicom's reader.
_BUILD_ERRORS = (BlobStoreError, KeyError, ValueError, TypeError, OpenJpegError, InvalidDicomError)


@dataclass(frozen=True)
class RetrieveRequest:
    """What a C-GET/C-MOVE identifier asks for: the level and its unique keys (lists: UID lists are allowed)."""

    level: str
    patient_id: str
    study_uids: tuple[str, ...]
    series_uids: tuple[str, ...]
    sop_uids: tuple[str, ...]


@dataclass(frozen=True)
class InstanceRef:
    """One instance to send, and what choosing its transfer syntax needs."""

    image_set_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    stored_syntax: str | None  # None: no pixel data


# --- The identifier ---


def _values(identifier: Dataset, keyword: str) -> tuple[str, ...]:
    if keyword not in identifier:
        return ()
    value = identifier[keyword].value
    if value is None or value == "":
        return ()
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    return tuple(str(item).strip() for item in items if str(item).strip())


def retrieve_request_parse(identifier: Dataset, *, model: str) -> RetrieveRequest:
    """The request an identifier makes under `model` (the C-GET/C-MOVE SOP class); RetrieveRefused(0xA900) naming
    the broken rule where it is not one.

    The level must be one of the model's (no PATIENT level in Study Root). The unique key of the level is required; the keys of the levels above it narrow the match when present
    (relational retrieval is allowed), and a wildcard or an empty key matches nothing, never everything."""
    try:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        request = RetrieveRequest(level, (_values(identifier, "PatientID") or ("",))[0],
                                  _values(identifier, "StudyInstanceUID"), _values(identifier, "SeriesInstanceUID"),
                                  _values(identifier, "SOPInstanceUID"))
    except Exception as e:  # an identifier pydicom cannot read
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, "the identifier cannot be read") from e
    levels = MODEL_LEVELS.get(str(model))
    if levels is None:
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, "not a C-GET/C-MOVE model this SCP supports")
    if level not in levels:
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, f"QueryRetrieveLevel must be one of {', '.join(levels)}")
    required = {"PATIENT": (request.patient_id,), "STUDY": request.study_uids, "SERIES": request.series_uids,
                "IMAGE": request.sop_uids}[level]
    if not any(required):
        key = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}[level]
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, f"a {level} retrieve needs {key}")
    if any("*" in uid or "?" in uid for uid in request.study_uids + request.series_uids + request.sop_uids):
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, "unique keys of a retrieve match exactly (no wildcards)")
    if level == "IMAGE" and not (request.study_uids or request.series_uids):
        raise RetrieveRefused(STATUS_IDENTIFIER_MISMATCH, "an IMAGE retrieve needs its StudyInstanceUID or "
                                                          "SeriesInstanceUID")
    return request


# --- Which instances ---


def _image_sets(datastore_id: str, request: RetrieveRequest) -> Iterator[ImageSet]:
    """The image sets that may hold the request's instances, filtered in the query (a SERIES or IMAGE retrieve
    without StudyInstanceUID must not read every image set of the store); only the columns resolving reads."""
    queryset = ImageSet.objects.filter(datastore_id=datastore_id, is_primary=True).exclude(
        state=ImageSetState.DELETED)
    if request.patient_id:
        queryset = queryset.filter(patient_id=request.patient_id)
    if request.study_uids:
        queryset = queryset.filter(study_instance_uid__in=request.study_uids)
    if request.series_uids:
        # An image set with no single series (blank column) may still hold one of them: its document says.
        queryset = queryset.filter(Q(series_instance_uid__in=request.series_uids) | Q(series_instance_uid=""))
    return queryset.only("id", "content_version", "study_instance_uid", "series_instance_uid").order_by(
        "study_instance_uid", "series_instance_uid", "id").iterator(chunk_size=500)


def _instance_order(item: tuple[str, dict[str, Any]]) -> tuple[int, int, str]:
    number = item[1].get("DICOM", {}).get("InstanceNumber")
    try:
        return (0, int(str(number).strip()), item[0])
    except (TypeError, ValueError):
        return (1, 0, item[0])


def instances_resolve(*, datastore_id: str, request: RetrieveRequest) -> list[InstanceRef]:
    """The instances the request names, in study, series and InstanceNumber order (none: an empty list)."""
    try:
        datastore_require_active(datastore_id=datastore_id)
    except (NotFound, Conflict) as e:
        raise RetrieveRefused(STATUS_UNABLE_TO_PROCESS, "the data store is not active") from e
    series_wanted, sops_wanted = set(request.series_uids), set(request.sop_uids)
    refs: list[InstanceRef] = []
    # Closed here, whatever happens: a PostgreSQL server-side cursor left to the garbage collector is closed at a
    # random moment, possibly inside another query on the same connection, which then waits on itself forever.
    with closing(_image_sets(datastore_id, request)) as image_sets:
        for image_set in image_sets:
            series_uid_column = image_set.series_instance_uid
            if series_wanted and series_uid_column and series_uid_column not in series_wanted:
                continue
            document = image_set_document(image_set)
            study_uid = str(document.get("Study", {}).get("DICOM", {}).get("StudyInstanceUID", ""))
            for series_uid, series in sorted(document.get("Study", {}).get("Series", {}).items()):
                if series_wanted and series_uid not in series_wanted:
                    continue
                series_values = series.get("DICOM", {})
                for sop_uid, instance in sorted(series.get("Instances", {}).items(), key=_instance_order):
                    if sops_wanted and sop_uid not in sops_wanted:
                        continue
                    sop_class = instance.get("DICOM", {}).get("SOPClassUID") or series_values.get("SOPClassUID")
                    stored = instance.get("StoredTransferSyntaxUID") if instance.get("ImageFrames") else None
                    refs.append(InstanceRef(image_set.pk, study_uid, series_uid, sop_uid, str(sop_class or ""),
                                            stored))
    return refs


# --- Negotiation ---


def offered_contexts(refs: Iterable[InstanceRef]) -> list[PresentationContext]:
    """The contexts to propose to a destination: per SOP class, the stored syntaxes of its instances first, then
    Explicit and Implicit VR Little Endian (what every storage SCP accepts). At most 128: SOP classes beyond that
    are left out, and their instances fail as sub-operations."""
    syntaxes: dict[str, list[str]] = {}
    for ref in refs:
        offered = syntaxes.setdefault(ref.sop_class_uid, [])
        if ref.stored_syntax and ref.stored_syntax not in offered and ref.stored_syntax not in UNCOMPRESSED:
            offered.append(ref.stored_syntax)
    return [build_context(sop_class, [*stored, *UNCOMPRESSED])
            for sop_class, stored in list(syntaxes.items())[:MAX_CONTEXTS]]


def accepted_syntaxes(contexts: Iterable[PresentationContext], *, as_scu: bool) -> dict[str, set[str]]:
    """The transfer syntaxes accepted per SOP class, from an association's accepted contexts; `as_scu`: only the
    contexts in which this side may send C-STORE (C-GET: the role the requestor asked us to take)."""
    accepted: dict[str, set[str]] = {}
    for context in contexts:
        if as_scu and not context.as_scu:
            continue
        accepted.setdefault(str(context.abstract_syntax), set()).update(str(ts) for ts in context.transfer_syntax)
    return accepted


def syntax_choose(ref: InstanceRef, accepted: Collection[str]) -> str | None:
    """The syntax the instance's file is built in for a peer that accepted `accepted`; None: none fits.
    Implicit VR Little Endian is built as Explicit (pynetdicom re-encodes it for the accepted context)."""
    if ref.stored_syntax is None:
        return uids.EXPLICIT_LE if accepted and set(accepted) & set(UNCOMPRESSED) else None
    if ref.stored_syntax in accepted and ref.stored_syntax != uids.IMPLICIT_LE:
        return ref.stored_syntax
    if set(accepted) & set(UNCOMPRESSED) and (ref.stored_syntax in UNCOMPRESSED or lossless_syntax(ref.stored_syntax)):
        return uids.EXPLICIT_LE
    return None


# --- The datasets ---


class InstanceBuilder:
    """Builds instances as Datasets, one image set's document and frame rows held at a time (refs come grouped
    by image set from `instances_resolve`). Reads the database for an image set's frame rows, so it runs in a
    thread that may use Django's ORM."""

    def __init__(self) -> None:
        self._image_set_id: str | None = None
        self._document: dict[str, Any] = {}
        self._blobs: dict[str, FrameBlob] = {}

    def _load(self, image_set_id: str) -> None:
        if self._image_set_id == image_set_id:
            return
        image_set = ImageSet.objects.filter(pk=image_set_id).exclude(state=ImageSetState.DELETED).first()
        if image_set is None:  # deleted since the identifier was resolved
            raise BlobStoreError("an image set went away while it was being sent")
        self._document = image_set_document(image_set)
        self._blobs = image_set_frame_blobs(image_set)
        self._image_set_id = image_set_id

    def p10(self, ref: InstanceRef, syntax: str) -> bytes:
        """The instance's P10 file in `syntax` (the stored one, or Explicit VR Little Endian); InstanceUnavailable
        when it cannot be built (an image set deleted or changed meanwhile, a missing blob, a bad frame)."""
        try:
            return self._p10(ref, syntax)
        except _BUILD_ERRORS as e:
            raise InstanceUnavailable(type(e).__name__) from e

    def _p10(self, ref: InstanceRef, syntax: str) -> bytes:
        self._load(ref.image_set_id)
        dataset, instance = instance_dataset(self._document, ref.series_uid, ref.sop_uid)
        wanted = None if syntax == ref.stored_syntax else syntax
        frame_ids = [frame["ID"] for frame in instance.get("ImageFrames", [])]
        streamed, _ = instance_p10_stream(dataset=dataset, instance=instance, wanted=wanted,
                                          frame_blobs=frame_blobs_in_order(self._blobs, frame_ids),
                                          store=blob_store())
        return b"".join(streamed.parts)

    def dataset(self, ref: InstanceRef, syntax: str) -> Dataset:
        """The instance as a Dataset with its file meta, ready for `send_c_store`; InstanceUnavailable as `p10`."""
        p10 = self.p10(ref, syntax)
        try:
            return dcmread(io.BytesIO(p10))
        except _BUILD_ERRORS as e:
            raise InstanceUnavailable(type(e).__name__) from e
