"""GetDICOMInstance (SPEC 11.4): one SOP instance of an image set version as a DICOM P10 file.

The file is streamed: everything that needs the database (the image set, its metadata, the frames' blob keys and
sizes) is settled before the first byte, and the frames are then read, and decoded where Explicit VR Little Endian
is asked of a compressed store, one at a time as the file is sent, so the server holds one frame, not the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from imaging.codecs import registry
from imaging.codecs.base import UnsupportedTransferSyntax
from imaging.codecs.description import PixelDescription, decoded_photometric
from imaging.dicom import uids
from imaging.dicom.document import decode_document
from imaging.dicom.rebuild import StreamedP10, instance_dataset, p10_parts, write_p10
from imaging.errors import NotAcceptable, NotFound
from imaging.models import Datastore, DatastoreStatus, ImageFrame, ImageSet, ImageSetState
from imaging.services.datastores import datastore_require_active
from imaging.services.imagesets import imageset_touch
from imaging.storage import BlobStoreError, blob_store


def instance_image_set(*, datastore_id: str, study_uid: str, series_uid: str, image_set_id: str | None) -> ImageSet:
    """The image set a DICOMweb instance request reads: the one named by `imageSetId`, else the primary image set of
    the series. Callers authorize the action on this image set before reading from it (SPEC 12.4)."""
    found = _live_image_set(datastore_id=datastore_id, study_uid=study_uid, series_uid=series_uid,
                            image_set_id=image_set_id)
    if found is not None:
        return found
    datastore_require_active(datastore_id=datastore_id)  # the data store's own error, if that is what failed
    queryset = ImageSet.objects.filter(datastore_id=datastore_id).exclude(state=ImageSetState.DELETED)
    if image_set_id:
        image_set = queryset.filter(pk=image_set_id).first()
    else:
        image_set = queryset.filter(study_instance_uid=study_uid, series_instance_uid=series_uid,
                                    is_primary=True).first()
    if image_set is None:
        raise NotFound("No image set holds that instance")
    return image_set


def _live_image_set(*, datastore_id: str, study_uid: str, series_uid: str, image_set_id: str | None
                    ) -> ImageSet | None:
    """The usual case of instance_image_set in one query: the image set, when its data store is ACTIVE and it is
    not deleted; None otherwise (the caller then finds out which). Plain SQL, for every WADO-RS frame asks it: the
    ORM took longer to build the two queries this replaces than SQLite took to answer them."""
    image_set, datastore = ImageSet._meta.db_table, Datastore._meta.db_table
    columns = ", ".join(f"s.{field.column}" for field in ImageSet._meta.concrete_fields)
    if image_set_id:
        which, params = "s.id = %s", [image_set_id]
    else:
        which, params = "s.study_instance_uid = %s AND s.series_instance_uid = %s AND s.is_primary", [study_uid,
                                                                                                   series_uid]
    rows = ImageSet.objects.raw(
        f"SELECT {columns} FROM {image_set} s JOIN {datastore} d ON d.id = s.datastore_id "
        f"WHERE s.datastore_id = %s AND d.status = %s AND s.state <> %s AND {which} LIMIT 1",
        [datastore_id, DatastoreStatus.ACTIVE, ImageSetState.DELETED, *params])
    return next(iter(rows), None)


def requested_syntax(accept: str | None) -> str | None:
    """The transfer syntax asked for: None for the stored one (`*`); Explicit VR Little Endian by default."""
    if not accept:
        return uids.EXPLICIT_LE
    for entry in accept.split(","):
        parts = [p.strip() for p in entry.split(";")]
        if parts[0] not in ("application/dicom", "*/*", "multipart/related"):
            continue
        params = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        syntax = params.get("transfer-syntax", uids.EXPLICIT_LE).strip('"')
        return None if syntax == "*" else syntax
    raise NotAcceptable("Only application/dicom can be served for an instance")


def instance_p10(*, image_set: ImageSet, study_uid: str, series_uid: str, sop_uid: str,
                 accept: str | None) -> tuple[StreamedP10, str]:
    """The instance's file as pieces to send, and its transfer syntax. Iterating the pieces reads blobs only (no
    database), so it may run in any thread once this returns."""
    version = image_set.versions.get(version=image_set.content_version)
    store = blob_store()
    document = decode_document(store.get(version.metadata_key) or b"")
    try:
        dataset, instance = instance_dataset(document, series_uid, sop_uid)
    except KeyError as e:
        raise NotFound("That instance is not in the image set") from e
    if str(dataset.get("StudyInstanceUID", "")) != study_uid:
        raise NotFound("That instance is not in the study")
    wanted = requested_syntax(accept)
    syntax_of(instance, wanted)  # 406 before anything is read
    frame_blobs = _frame_blobs(image_set, [frame["ID"] for frame in instance.get("ImageFrames", [])])
    imageset_touch(image_set=image_set)
    return instance_p10_stream(dataset=dataset, instance=instance, wanted=wanted, frame_blobs=frame_blobs,
                               store=store)


def syntax_of(instance: dict[str, Any], wanted: str | None) -> tuple[str, bool, bool]:
    """(transfer syntax, native, decode) of the file served for `wanted` (None: the stored syntax), from the
    instance node alone; NotAcceptable where it cannot be served so."""
    stored = instance.get("StoredTransferSyntaxUID")
    if not instance.get("ImageFrames"):
        syntax = wanted or uids.EXPLICIT_LE
        if syntax != uids.EXPLICIT_LE:
            raise NotAcceptable("An instance without pixel data is served as Explicit VR Little Endian")
        return syntax, True, False
    if wanted is None or wanted == stored and stored != uids.EXPLICIT_LE:
        return stored, stored == uids.EXPLICIT_LE, False
    if wanted == uids.EXPLICIT_LE and lossless_syntax(stored):
        return uids.EXPLICIT_LE, True, stored != uids.EXPLICIT_LE
    raise NotAcceptable(f"The instance is stored as {stored} and cannot be served as {wanted}")


def instance_p10_stream(*, dataset, instance: dict[str, Any], wanted: str | None, frame_blobs: list[FrameBlob],
                        store) -> tuple[StreamedP10, str]:
    """The file of one instance whose frames' blobs are known: pieces to send and its transfer syntax. Reads
    blobs only (no database), so study and series retrievals call it as they stream, one instance at a time."""
    syntax, native, decode = syntax_of(instance, wanted)
    if not instance.get("ImageFrames"):
        body = write_p10(dataset, transfer_syntax=syntax, pixel_frames=None, native=True)
        return StreamedP10(len(body), iter([body])), syntax
    stored = instance.get("StoredTransferSyntaxUID")
    if decode:
        sizes = [_native_frame_size(dataset)] * len(frame_blobs)
    else:
        sizes = [blob.size or len(_get(store, blob.key)) for blob in frame_blobs]
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if stored != uids.EXPLICIT_LE and lossless_syntax(stored):  # the store's own lossless transcodes: as decoded
        dataset.PhotometricInterpretation = decoded_photometric(photometric)
        if int(dataset.get("SamplesPerPixel", 1)) > 1:
            dataset.PlanarConfiguration = 0
    frames = _frames(store, [blob.key for blob in frame_blobs], stored if decode else None, dataset)
    return p10_parts(dataset, transfer_syntax=syntax, frame_sizes=sizes, frames=frames, native=native), syntax


def lossless_syntax(stored: str | None) -> bool:
    """Whether frames stored in `stored` decode to exactly the received samples (the codec registry says)."""
    try:
        return stored is not None and registry.is_lossless(stored)
    except UnsupportedTransferSyntax:
        return False


@dataclass(frozen=True)
class FrameBlob:
    """Where one stored frame is and how many bytes it has (0: unknown, a row from before sizes were recorded)."""

    key: str
    size: int


def image_set_frame_blobs(image_set: ImageSet) -> dict[str, FrameBlob]:
    """Every frame of the image set by frame id (one query; for retrievals of many instances)."""
    return {frame_id: FrameBlob(key, size) for frame_id, key, size in ImageFrame.objects.filter(
        image_set=image_set).values_list("frame_id", "blob_key", "size")}


def frame_blobs_in_order(rows: dict[str, FrameBlob], frame_ids: list[str]) -> list[FrameBlob]:
    """The blob of each frame, in the order asked; a frame the image set lacks is a store fault."""
    missing = [frame_id for frame_id in frame_ids if frame_id not in rows]
    if missing:
        raise BlobStoreError("a frame of the instance is missing")
    return [rows[frame_id] for frame_id in frame_ids]


def _frame_blobs(image_set: ImageSet, frame_ids: list[str]) -> list[FrameBlob]:
    """The blob of each frame, in the order asked."""
    rows = {frame_id: FrameBlob(key, size) for frame_id, key, size in ImageFrame.objects.filter(
        image_set=image_set, frame_id__in=frame_ids).values_list("frame_id", "blob_key", "size")}
    missing = [frame_id for frame_id in frame_ids if frame_id not in rows]
    if missing:
        raise BlobStoreError("a frame of the instance is missing")
    return [rows[frame_id] for frame_id in frame_ids]


def _get(store, key: str) -> bytes:
    data = store.get(key)
    if data is None:
        raise BlobStoreError("a frame of the instance is missing")
    return data


def _frames(store, keys: list[str], decode_from: str | None, dataset) -> Iterator[bytes]:
    description = stored_description(dataset, decode_from) if decode_from else None
    for key in keys:
        data = _get(store, key)
        yield native_frame(data, description) if description else data


def _native_frame_size(dataset) -> int:
    """What `native_frame` makes of one frame: every sample in 1 or 2 bytes."""
    size = 1 if int(dataset.get("BitsAllocated", 16)) <= 8 else 2
    return int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1) or 1) * size


def stored_description(dataset, stored: str) -> PixelDescription:
    bits_allocated = int(dataset.get("BitsAllocated", 16))
    return PixelDescription(
        rows=int(dataset.Rows), columns=int(dataset.Columns),
        samples_per_pixel=int(dataset.get("SamplesPerPixel", 1) or 1), bits_allocated=bits_allocated,
        bits_stored=bits_allocated, signed=int(dataset.get("PixelRepresentation", 0)) == 1,
        photometric=str(dataset.get("PhotometricInterpretation", "")), transfer_syntax=stored,
    )


def native_frame(codestream: bytes, description: PixelDescription) -> bytes:
    """One stored frame decoded and written as Explicit VR Little Endian samples of 1 or 2 bytes."""
    decoded = registry.frame_decode(codestream, description)
    samples = decoded.astype(f"{'i' if description.signed else 'u'}{1 if description.bits_allocated <= 8 else 2}",
                             copy=False)
    return registry.frame_encode(samples, transfer_syntax=uids.EXPLICIT_LE)
