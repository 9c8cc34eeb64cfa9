"""Worker functions for pool tests; module level so that forkserver workers can import them."""
from __future__ import annotations

import os

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
