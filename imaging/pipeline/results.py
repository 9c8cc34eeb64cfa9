"""What the per-file steps hand back to the job driver: a file's result and its encoded frames; no Django.

Plain data only: results travel from the worker processes to the driver by pickling, so nothing here may hold a
connection, a store or a dataset.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EncodedFrame:
    """One frame as it will be stored; a worker drops `frame_bytes` once it has written them (`size` stays)."""

    frame_id: str
    frame_bytes: bytes
    size: int = 0


@dataclass
class FileResult:
    input_file: str
    ok: bool = False
    exception_type: str = ""
    message: str = ""
    study_uid: str = ""
    series_uid: str = ""
    sop_uid: str = ""
    instance_number: int | None = None
    levels: dict[str, dict[str, Any]] = field(default_factory=dict)
    level_vrs: dict[str, dict[str, str]] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    frames: list[EncodedFrame] = field(default_factory=list)
    grouping: tuple[str, ...] = ()
    warnings: list[dict[str, Any]] = field(default_factory=list)
    source_bytes: int = 0

    def fail(self, exception_type: str, message: str) -> "FileResult":
        self.ok, self.exception_type, self.message = False, exception_type, message
        self.frames, self.levels, self.instance = [], {}, {}
        return self


class FrameIds:
    """Frame ids of one file: derived from (job, input object, frame index) when a job is known, so a job that is
    run again after a crash, or a file retried after its worker died, writes the same blobs again instead of
    leaving the first attempt's frames behind; random otherwise."""

    def __init__(self, job_id: str = "", source: str = "") -> None:
        self.seed = f"{job_id}\0{source}\0" if job_id else ""

    def __call__(self, index: int) -> str:
        if not self.seed:
            return uuid.uuid4().hex
        return hashlib.sha256(f"{self.seed}{index}".encode()).hexdigest()[:32]
