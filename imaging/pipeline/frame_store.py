"""The store step of the per-file pipeline: a worker writes the frames of a file that processed cleanly to the
blob store itself, so that only metadata travels back to the job driver; no Django.

Frames are written only once the whole file has been processed and verified. A file whose frames cannot all be
written fails, and what of it was written is removed again. Keys come from imaging/storage/keys.py.

Writes overlap the work around them, through a few writer threads per process:
- the frames of a multi-frame file are written WRITE_THREADS at a time (a cine loop of hundreds of frames would
  otherwise pay one round trip to an object store after another);
- inside `frames_deferred()` (a worker's batch, imaging/pipeline/pool.py) a file's writes are only started, and
  the worker goes on to its next file; when the block ends every write is waited for, and each file whose frames
  could not all be written fails there, its frames removed. At most DEFER_MAX_BYTES of frames wait to be written:
  beyond that the writes already started are settled first.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from imaging.pipeline.results import FileResult
from imaging.storage import BlobStore, BlobStoreError, discard_blobs, open_blob_store
from imaging.storage.keys import frame_blob_key

WRITE_THREADS = 4
DEFER_MAX_BYTES = 64 * 1024 * 1024
STORE_FAILED = "The frames could not be stored"
_writers: ThreadPoolExecutor | None = None
_writers_lock = threading.Lock()
_local = threading.local()


@dataclass(frozen=True)
class FrameSink:
    """Where a worker writes the frames of a file that processed cleanly: the blob store, the data store, and the
    job whose files these are."""

    blob_store_url: str
    blob_store_s3: tuple[str, str, str, str]
    datastore_id: str
    job_id: str = ""


def _writer_pool() -> ThreadPoolExecutor:
    """One pool of writer threads per process, started on first use."""
    global _writers
    with _writers_lock:
        if _writers is None:
            _writers = ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="frame-writer")
        return _writers


@dataclass
class _Writes:
    """The writes started for one file's frames."""

    result: FileResult
    blob_store: BlobStore
    keys: list[str]
    futures: list[Future]

    @classmethod
    def start(cls, result: FileResult, blob_store: BlobStore, keys: list[str]) -> _Writes:
        futures = [_writer_pool().submit(blob_store.put, key, frame.frame_bytes)
                   for key, frame in zip(keys, result.frames)]
        return cls(result=result, blob_store=blob_store, keys=keys, futures=futures)

    def finish(self) -> FileResult:
        """Once every write is done: the file's bytes dropped, or the file failed and its frames removed. Every
        put is waited for first, failed or not, so that none lands after its file's frames are removed."""
        wait(self.futures)
        failure = next((future.exception() for future in self.futures if future.exception() is not None), None)
        if isinstance(failure, BlobStoreError):
            discard_blobs(self.blob_store, self.keys)  # removing a frame that was never written is no error
            return self.result.fail("InternalServerException", STORE_FAILED)
        if failure is not None:
            raise failure
        _drop_bytes(self.result)
        return self.result


class _Deferred:
    """The files of a `frames_deferred` block whose writes have started."""

    def __init__(self) -> None:
        self.writes: list[_Writes] = []
        self.bytes = 0

    def add(self, result: FileResult, blob_store: BlobStore, keys: list[str]) -> None:
        size = sum(len(frame.frame_bytes) for frame in result.frames)
        if self.writes and self.bytes + size > DEFER_MAX_BYTES:
            self.settle()
        self.writes.append(_Writes.start(result, blob_store, keys))
        self.bytes += size

    def settle(self) -> None:
        writes, self.writes, self.bytes = self.writes, [], 0
        unexpected: BaseException | None = None
        for file_writes in writes:
            try:
                file_writes.finish()
            except Exception as e:  # settled all the same; the first surprise is raised at the end
                unexpected = unexpected or e
        if unexpected is not None:
            raise unexpected


@contextmanager
def frames_deferred() -> Iterator[None]:
    """Inside the block, `frames_store` starts a file's writes and returns its result at once; when the block
    ends, every result is final (its frames written, or the file failed)."""
    deferred = _Deferred()
    _local.deferred = deferred
    try:
        yield
    finally:
        _local.deferred = None
        deferred.settle()


def frames_store(result: FileResult, sink: FrameSink, *, blob_store: BlobStore | None = None) -> FileResult:
    """Write the result's frames and drop their bytes from it; on a store failure the file fails instead (inside
    `frames_deferred`, when the block ends). `blob_store` is the sink's store, opened here unless given."""
    blob_store = blob_store or open_blob_store(sink.blob_store_url, sink.blob_store_s3)
    keys = [frame_blob_key(sink.datastore_id, frame.frame_id) for frame in result.frames]
    deferred: _Deferred | None = getattr(_local, "deferred", None)
    if not keys:
        return result
    if deferred is not None:
        deferred.add(result, blob_store, keys)
        return result
    if len(keys) > 1:
        return _Writes.start(result, blob_store, keys).finish()
    try:
        blob_store.put(keys[0], result.frames[0].frame_bytes)
    except BlobStoreError:
        discard_blobs(blob_store, keys)
        return result.fail("InternalServerException", STORE_FAILED)
    _drop_bytes(result)
    return result


def _drop_bytes(result: FileResult) -> None:
    for frame in result.frames:
        frame.size, frame.frame_bytes = len(frame.frame_bytes), b""
