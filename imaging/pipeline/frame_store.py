"""The store step of the per-file pipeline: a worker writes the frames of a file that processed cleanly to the
blob store itself, so that only metadata travels back to the job driver; no Django.

Frames are written only once the whole file has been processed and verified. A file whose frames cannot all be
written fails, and what of it was written is removed again. Keys come from imaging/storage/keys.py.

The frames of a multi-frame file are written WRITE_THREADS at a time: against an object store each put is a
round trip, and a cine loop of hundreds of frames would otherwise pay them one after another. A single frame is
written in the calling thread.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from imaging.pipeline.results import FileResult
from imaging.storage import BlobStore, BlobStoreError, discard_blobs, open_blob_store
from imaging.storage.keys import frame_blob_key

WRITE_THREADS = 4
_writers: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()


@dataclass(frozen=True)
class FrameSink:
    """Where a worker writes the frames of a file that processed cleanly: the blob store, the data store, and the
    job whose files these are."""

    blob_store_url: str
    blob_store_s3: tuple[str, str, str, str]
    datastore_id: str
    job_id: str = ""


def _writer_pool() -> ThreadPoolExecutor:
    """One pool of writer threads per process, started on the first multi-frame file."""
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="frame-writer")
        return _writers


def frames_store(result: FileResult, sink: FrameSink, *, blob_store: BlobStore | None = None) -> FileResult:
    """Write the result's frames and drop their bytes from it; on a store failure the file fails instead.
    `blob_store` is the sink's store, opened here unless given."""
    blob_store = blob_store or open_blob_store(sink.blob_store_url, sink.blob_store_s3)
    keys = [frame_blob_key(sink.datastore_id, frame.frame_id) for frame in result.frames]
    try:
        if len(keys) == 1:
            blob_store.put(keys[0], result.frames[0].frame_bytes)
        elif keys:
            # Every put is waited for, failed or not, so that none lands after its file's frames are removed.
            futures = [_writer_pool().submit(blob_store.put, key, frame.frame_bytes)
                       for key, frame in zip(keys, result.frames)]
            wait(futures)
            for future in futures:
                future.result()
    except BlobStoreError:
        discard_blobs(blob_store, keys)  # removing a frame that was never written is no error
        return result.fail("InternalServerException", "The frames could not be stored")
    for frame in result.frames:
        frame.size, frame.frame_bytes = len(frame.frame_bytes), b""
    return result
