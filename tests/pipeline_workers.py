"""Worker functions for pool tests; module level so that forkserver workers can import them."""
from __future__ import annotations

import os
import signal
import time

from imaging.pipeline.pool import process_batch


def crash_on_poison(items, s3, storage_format, sink, **options):
    """Kills its worker process (as a codec segfault would) when a batch holds a file named poison."""
    if any(name.endswith("poison.dcm") for _, name in items):
        os._exit(11)
    return process_batch(items, s3, storage_format, sink, **options)


def report_batches(items, s3, storage_format, sink, **options):
    """Processes the batch and tells, in each result's message, how many files travelled together."""
    results = process_batch(items, s3, storage_format, sink, **options)
    for result in results:
        result.message = f"batch of {len(items)} in {os.getpid()}"
    return results


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def report_peak_memory(items, s3, storage_format, sink, **options):
    """Processes each file alone and tells, in its result's `source_bytes`, how far the worker's peak resident
    memory (VmHWM) rose above what it held before the file: the kernel resets the peak to the current size when
    "5" is written to clear_refs (Linux 4.0+)."""
    results = []
    for item in items:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status_kib("VmHWM")
        [result] = process_batch([item], s3, storage_format, sink, **options)
        result.source_bytes = (_status_kib("VmHWM") - before) * 1024
        results.append(result)
    return results


def hanging_on_named_files(process_source):
    """`process_source`, except that files named *python-hang.dcm never finish in Python code, and *native-hang.dcm
    never finish in a call that ignores signals (SIGALRM blocked, as native code that never returns to the
    interpreter would)."""

    def hanging(uri, name, *args):
        if name.endswith("python-hang.dcm"):
            while True:
                time.sleep(0.01)
        if name.endswith("native-hang.dcm"):
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            time.sleep(3600)
        return process_source(uri, name, *args)

    return hanging


def hang_on_named_files(items, s3, storage_format, sink, **options):
    """process_batch with the hangs of `hanging_on_named_files`."""
    from imaging.pipeline import pool

    original = pool.process_source
    pool.process_source = hanging_on_named_files(original)
    try:
        return process_batch(items, s3, storage_format, sink, **options)
    finally:
        pool.process_source = original
