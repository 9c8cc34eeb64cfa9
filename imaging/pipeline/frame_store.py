"""The store step of the per-file pipeline: a worker writes the frames of a file that processed cleanly to the
blob store itself, so that only metadata travels back to the job driver; no Django.

Frames are written only once the whole file has been processed and verified. A file whose frames cannot all be
written fails, and what of it was written is removed again. Keys come from imaging/storage/keys.py.
"""
from __future__ import annotations

from dataclasses import dataclass

from imaging.pipeline.results import FileResult
from imaging.storage import BlobStoreError, discard_blobs, open_blob_store
from imaging.storage.keys import frame_blob_key


@dataclass(frozen=True)
class FrameSink:
    """Where a worker writes the frames of a file that processed cleanly: the blob store, the data store, and the
    job whose files these are."""

    blob_store_url: str
    blob_store_s3: tuple[str, str, str, str]
    datastore_id: str
    job_id: str = ""


def frames_store(result: FileResult, sink: FrameSink) -> FileResult:
    """Write the result's frames and drop their bytes from it; on a store failure the file fails instead."""
    blob_store = open_blob_store(sink.blob_store_url, sink.blob_store_s3)
    written: list[str] = []
    try:
        for frame in result.frames:
            key = frame_blob_key(sink.datastore_id, frame.frame_id)
            blob_store.put(key, frame.frame_bytes)
            written.append(key)
            frame.size, frame.frame_bytes = len(frame.frame_bytes), b""
    except BlobStoreError:
        discard_blobs(blob_store, written)
        return result.fail("InternalServerException", "The frames could not be stored")
    return result
