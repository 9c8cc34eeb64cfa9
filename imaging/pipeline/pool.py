"""Worker processes for the per-file pipeline.

One pool per process, started lazily with the forkserver method (forking a web server with live threads is not
safe). With APERTURE_IMPORT_CONCURRENCY=0 files are processed in the calling thread.
"""
from __future__ import annotations

import ctypes
import faulthandler
import gc
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator

from imaging.pipeline.sources import S3Settings, SourceObject, read_ahead
from imaging.dicom.reader import DEFAULT_LIMITS, DecodeLimits
from imaging.pipeline.frame_store import FrameSink, frames_deferred
from imaging.pipeline.process import process_source
from imaging.pipeline.results import FileResult

_pool: ProcessPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()
# Files handed to a worker in one task: fewer round trips through the executor's queues (the job driver shares the
# CPUs with the workers), while several batches stay in flight so that no worker waits.
MAX_BATCH = 8


def _worker_start() -> None:
    """Objects alive after start-up stay out of the collector's way, and a file's short-lived pydicom objects
    are collected less often: collection passes cost the workers about 3% of their time."""
    global _devnull
    _devnull = open(os.devnull, "w")
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    _map_large_allocations()
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()


# glibc's mallopt parameter, and the size from which allocations get their own mapping in workers.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def _map_large_allocations() -> None:
    """Blocks of 1 MiB and more get their own mappings, given back to the system when freed. glibc would raise
    this threshold after such a block is freed and serve later ones from the heap, where a stream of large values
    (a file of many 1 MiB elements, read up to APERTURE_IMPORT_MAX_DECODED_BYTES) left about 12% of the limit
    on top of it in fragments; measured in tests/imaging/pipeline/test_bombs.py. Nothing happens off glibc."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def _exit_with_parent() -> None:
    """A worker blocks on its task queue, whose pipe it holds both ends of, so it would outlive a server that was
    killed or stopped without shutting the pool down: it leaves as soon as the process that started it is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    os._exit(0)


def _executor(size: int) -> ProcessPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != size:
            # Workers are one process per core already: BLAS thread pools in them would only spin and compete.
            # The forkserver starts from this environment (numpy in this process is loaded, so unaffected).
            for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
                os.environ.setdefault(name, "1")
            if _pool is not None:
                _pool.shutdown(wait=False)  # another size was asked for: its workers finish and leave
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["imaging.pipeline.process"])
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=context, initializer=_worker_start)
            _pool_size = size
        return _pool


def _reset() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


# A worker stuck in native code past its file's time limit (+ this grace, at most the limit itself) is ended by
# faulthandler's watchdog thread.
HARD_LIMIT_GRACE_SECONDS = 30
_devnull = None


class FileTimeLimit(BaseException):
    """Raised in a worker by SIGALRM when a file outlives its time limit. A BaseException, so that the pipeline's
    handlers for a file's own errors do not take it for one and it reaches the batch loop."""


def _on_alarm(signum, frame) -> None:
    raise FileTimeLimit()


def _time_limited(uri: str, name: str, s3: S3Settings, storage_format: str, sink: FrameSink | None,
                  limits: DecodeLimits, seconds: float | None) -> FileResult:
    """process_source under a time limit (SPEC 4.7: a file that cannot be processed fails alone, and no file may
    hold a job forever). Python code is interrupted by SIGALRM at the limit; native code that never returns to the
    interpreter (a decoder looping on a corrupt stream) is ended with its process by faulthandler's watchdog
    thread shortly after, and the pool then fails that file alone (see process_all)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        return process_source(uri, name, s3, storage_format, sink, limits)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    grace = min(HARD_LIMIT_GRACE_SECONDS, seconds)
    faulthandler.dump_traceback_later(seconds + grace, exit=True, file=_watchdog_output())
    try:
        return process_source(uri, name, s3, storage_format, sink, limits)
    except FileTimeLimit:
        return FileResult(input_file=name).fail(
            "ValidationException",
            f"Processing the file took longer than APERTURE_IMPORT_FILE_TIMEOUT_SECONDS ({seconds:g} s)")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, previous)


def _watchdog_output():
    """Where faulthandler's watchdog writes the traceback it dumps before ending the process: nowhere (a
    traceback's locals are not printed, but the file names in it may be patient data)."""
    global _devnull
    if _devnull is None:
        _devnull = open(os.devnull, "w")
    return _devnull


def process_file(uri: str, name: str, s3: S3Settings, storage_format: str, sink: FrameSink | None,
                 limits: DecodeLimits = DEFAULT_LIMITS, file_timeout: float | None = None) -> FileResult:
    """One file under its time limit in this process, as a Celery worker runs its batches. Celery's prefork
    children and its solo pool run tasks in the main thread, so SIGALRM interrupts a file that outlives its
    limit; a worker stuck in native code is ended by the watchdog, and its batch, redelivered, fails that file
    once it has ended a worker twice (imaging/pipeline/batches.py). In another thread there is no limit."""
    return _time_limited(uri, name, s3, storage_format, sink, limits, file_timeout)


def process_batch(items: list[tuple[str, str]], s3: S3Settings, storage_format: str,
                  sink: FrameSink | None, limits: DecodeLimits = DEFAULT_LIMITS,
                  file_timeout: float | None = None) -> list[FileResult]:
    read_ahead([uri for uri, _ in items], s3)  # each S3 object is fetched while the one before it is processed
    with frames_deferred():  # a file's frames are written while the next file is processed
        return [_time_limited(uri, name, s3, storage_format, sink, limits, file_timeout) for uri, name in items]


def process_all(
    objects: list[SourceObject], *, s3: S3Settings, storage_format: str, concurrency: int, sink: FrameSink | None = None,
    worker: Callable[..., list[FileResult]] = process_batch, limits: DecodeLimits = DEFAULT_LIMITS,
    file_timeout: float | None = None,
) -> Iterator[FileResult]:
    """Results as they complete, batch by batch; at most 2 x concurrency batches are in flight, so memory stays
    bounded. `worker` is replaceable for tests (a module-level function taking process_batch's arguments).
    `file_timeout` limits each file in the workers (not in the calling thread, with concurrency 0)."""
    if concurrency <= 0:
        for item in objects:
            yield process_source(item.uri, item.display_name, s3, storage_format, sink, limits)
        return
    pending: dict[Future, list[SourceObject]] = {}
    queue = list(reversed(objects))
    retried: set[str] = set()
    try:
        while True:
            executor = _executor(concurrency)
            while len(pending) < 2 * concurrency and queue:
                # A file retried after a crash runs alone with nothing else in flight, so that a second crash
                # names its culprit and takes no other file down with it.
                if any(item.uri in retried for batch in pending.values() for item in batch):
                    break
                if queue[-1].uri in retried:
                    if pending:
                        break
                    size = 1
                else:
                    # Batches shrink towards the end so that the workers finish together.
                    size = max(1, min(MAX_BATCH, len(queue) // (4 * concurrency)))
                batch = [queue.pop() for _ in range(min(size, len(queue)))]
                arguments = [(item.uri, item.display_name) for item in batch]
                try:
                    future = executor.submit(worker, arguments, s3, storage_format, sink, limits=limits,
                                             file_timeout=file_timeout)
                except BrokenProcessPool:
                    # A worker died since the last result was read: this batch never started, so it goes back
                    # as it was; the batches in flight report the break below and are retried there.
                    queue.extend(reversed(batch))
                    if not pending:
                        _reset()
                    break
                pending[future] = batch
            if not pending:
                if queue:
                    continue
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                batch = pending.pop(future)
                try:
                    yield from future.result()
                except BrokenProcessPool:
                    # A worker died (a codec crash); every file in flight is lost with it. Each is tried once
                    # more, alone, in a fresh pool; a file that breaks the pool when alone fails on its own.
                    _reset()
                    lost_files = batch + [item for lost in pending.values() for item in lost]
                    for lost in lost_files:
                        if lost.uri in retried:
                            yield FileResult(input_file=lost.display_name).fail(
                                "InternalServerException",
                                "The worker processing the file crashed, or ran past"
                                " APERTURE_IMPORT_FILE_TIMEOUT_SECONDS in native code",
                            )
                        else:
                            retried.add(lost.uri)
                            queue.append(lost)
                    pending.clear()
                    break
                except Exception as e:
                    for item in batch:
                        yield FileResult(input_file=item.display_name).fail(
                            "InternalServerException", f"The worker processing the file failed: {type(e).__name__}"
                        )
    finally:
        for future in pending:
            future.cancel()
