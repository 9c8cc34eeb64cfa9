"""Fuzz target: the per-file import pipeline (imaging.pipeline.process.process_bytes, what the pool workers run
for every object: read, check, normalize, decode, encode HTJ2K, verify with OpenJPEG).

Property: a file is imported, or it fails as a ValidationException with a reason. A malformed file never ends
as an InternalServerException (that type is kept for our own faults: a frame that does not verify, a blob store
that cannot be written), and nothing escapes process_bytes. An imported file's metadata can be stored as a
metadata document.
"""
from __future__ import annotations

from typing import Iterable

from imaging.dicom.document import InstancePart, add_instances, encode_document, new_document
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.fuzz import seeds


def import_file(data: bytes, name: str = "fuzz.dcm") -> FileResult:
    result = process_bytes(data, FileResult(input_file=name))
    if not result.ok:
        assert result.exception_type == "ValidationException", (
            f"a malformed file ended as {result.exception_type}: {result.message}")
        assert result.message.strip(), "a failed file must say why"
    return result


def document_of(result: FileResult) -> dict:
    """The metadata document an import would store for this one instance."""
    part = InstancePart(series_uid=result.series_uid, sop_uid=result.sop_uid, instance_number=result.instance_number,
                        levels=result.levels, level_vrs=result.level_vrs, instance=result.instance)
    return add_instances(new_document(datastore_id="0" * 32, image_set_id="1" * 32), [part])


def one_input(data: bytes) -> None:
    result = import_file(data)
    if result.ok:
        encode_document(document_of(result))


def seed_inputs() -> Iterable[bytes]:
    return (path.read_bytes() for path in seeds.seed_paths())
