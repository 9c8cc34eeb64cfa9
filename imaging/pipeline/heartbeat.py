"""A heartbeat thread: while a job, a batch or a finishing step runs, it tells the database every few seconds that
its worker is alive, even when one file keeps the worker busy for minutes.

Recovery (imaging/pipeline/batches.py, job.py) takes work whose heartbeat is older than
APERTURE_IMPORT_STALE_SECONDS for dead and runs it again; so the beat must not depend on the work making progress.
The thread has its own database connection, closed when it stops. A beat that fails (SQLite busy under a long
write, a database restart) is skipped: the next one tries again.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from django.db import DatabaseError, connection, connections

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0


class Heartbeat:
    """`with Heartbeat(beat):` calls `beat()` every `every` seconds in a daemon thread until the block ends."""

    def __init__(self, beat: Callable[[], object], every: float = HEARTBEAT_SECONDS) -> None:
        self.beat = beat
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aperture-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        # Work run inside the caller's transaction (a script, a test) is invisible to other workers until it
        # commits, and a second connection's write to its rows would wait for that commit: no beat is needed.
        if not connection.in_atomic_block:
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    self.beat()
                except DatabaseError:
                    logger.debug("a heartbeat could not be written; the next one tries again")
        finally:
            connections.close_all()
