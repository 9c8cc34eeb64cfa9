"""Worker processes for the per-file pipeline.

One pool per process, started lazily with the forkserver method (forking a web server with live threads is not
safe). With APERTURE_IMPORT_CONCURRENCY=0 files are processed in the calling thread.
"""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Iterator

from imaging.pipeline.sources import S3Settings, SourceObject
from imaging.pipeline.transcode import FileResult, FrameSink, process_source

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _executor(size: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["imaging.pipeline.transcode"])
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=context)
            _pool_size = size
        return _pool


def _reset() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def process_all(
    objects: list[SourceObject], *, s3: S3Settings, storage_format: str, concurrency: int, sink: FrameSink | None = None
) -> Iterator[FileResult]:
    """Results as they complete; at most 2 x concurrency files are in flight, so memory stays bounded."""
    if concurrency <= 0:
        for item in objects:
            yield process_source(item.uri, item.display_name, s3, storage_format, sink)
        return
    pending: dict[Future, SourceObject] = {}
    queue = list(reversed(objects))
    retried: set[str] = set()
    try:
        while True:
            executor = _executor(concurrency)
            while len(pending) < 2 * concurrency and queue:
                item = queue.pop()
                pending[executor.submit(process_source, item.uri, item.display_name, s3, storage_format, sink)] = item
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    # A worker died (a codec crash); every file in flight is lost with it. Each is tried once
                    # more in a fresh pool; a file that breaks the pool twice fails on its own.
                    _reset()
                    for lost in [item, *pending.values()]:
                        if lost.uri in retried:
                            yield FileResult(input_file=lost.display_name).fail(
                                "InternalServerException", "The worker processing the file crashed"
                            )
                        else:
                            retried.add(lost.uri)
                            queue.append(lost)
                    pending.clear()
                    break
                except Exception as e:
                    yield FileResult(input_file=item.display_name).fail(
                        "InternalServerException", f"The worker processing the file failed: {type(e).__name__}"
                    )
    finally:
        for future in pending:
            future.cancel()
