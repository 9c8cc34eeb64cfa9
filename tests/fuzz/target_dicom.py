"""Fuzz target: reading and normalizing DICOM P10 bytes (imaging.dicom.reader, imaging.dicom.normalize).

Property: any bytes either read and normalize into JSON-ready metadata, or fail with a DicomInputError that is
the file's fault (server_fault False) and says why. Any other exception is a bug.
"""
from __future__ import annotations

import json
from typing import Iterable

from imaging.dicom.normalize import Normalized, normalize_dataset
from imaging.dicom.reader import DicomInputError, check_instance, read_p10
from tests.fuzz import seeds


def read_and_normalize(data: bytes) -> Normalized | None:
    """The normalized instance, or None when the file was refused (with a reason, as the sender's fault)."""
    try:
        dataset = read_p10(data)
        notes = normalize_dataset(dataset)
        values = {key: value for level in notes.levels.values() for key, value in level.items()}
        check_instance(values, notes.unreadable)
    except DicomInputError as e:
        assert not e.server_fault, f"a malformed file was reported as a server fault: {e.message}"
        assert e.message.strip(), "a refused file must say why"
        return None
    json.dumps([notes.levels, notes.vrs])  # what persisting does with it
    return notes


def one_input(data: bytes) -> None:
    read_and_normalize(data)


def seed_inputs() -> Iterable[bytes]:
    return (path.read_bytes() for path in seeds.seed_paths())
