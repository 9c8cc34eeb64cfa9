"""Fuzz target: rebuilding a P10 file from a stored metadata document (imaging.dicom.rebuild, GetDICOMInstance).

Inputs are DICOM files; those the pipeline imports become a metadata document exactly as an import stores it
(gzip JSON, read back), and the instance is rebuilt as GetDICOMInstance rebuilds it with the stored frames.
Property: pydicom reads the rebuilt file, and normalizing it again gives the values the document holds.
"""
from __future__ import annotations

import io
from typing import Any, Iterable

import pydicom

from imaging.dicom import uids
from imaging.dicom.document import decode_document, encode_document
from imaging.dicom.normalize import PIXEL_KEYWORDS, normalize_dataset
from imaging.dicom.rebuild import instance_dataset, write_p10
from tests.fuzz import seeds
from tests.fuzz.target_pipeline import document_of, import_file


def merged_values(levels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """All levels' values in one map, without what a rebuild writes anew (File Meta, pixel data)."""
    merged = {key: value for level in levels.values() for key, value in level.items()}
    return {key: value for key, value in merged.items()
            if key not in PIXEL_KEYWORDS and not _is_file_meta(key)}


def _is_file_meta(key: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    tag = int(key, 16) if len(key) == 8 and all(c in "0123456789ABCDEF" for c in key) else tag_for_keyword(key)
    return tag is not None and tag >> 16 == 0x0002


def rebuild(document: dict[str, Any], series_uid: str, sop_uid: str, frames: list[bytes]) -> bytes:
    dataset, instance = instance_dataset(document, series_uid, sop_uid)
    stored = instance.get("StoredTransferSyntaxUID")
    if not instance.get("ImageFrames"):
        return write_p10(dataset, transfer_syntax=uids.EXPLICIT_LE, pixel_frames=None, native=True)
    return write_p10(dataset, transfer_syntax=stored, pixel_frames=frames, native=stored == uids.EXPLICIT_LE)


def check_rebuild(data: bytes, *, compare_values: bool = True) -> bool:
    """False when the file was not imported (nothing to rebuild); raises when the rebuild is wrong. Values are
    compared for well-formed input; a mutated file's misfit values are written as bytes, so for those only the
    rebuild itself and pydicom's reading of it are checked."""
    result = import_file(data)
    if not result.ok:
        return False
    document = decode_document(encode_document(document_of(result)))
    p10 = rebuild(document, result.series_uid, result.sop_uid, [frame.frame_bytes for frame in result.frames])
    reread = pydicom.dcmread(io.BytesIO(p10))
    assert str(reread.file_meta.TransferSyntaxUID) in (uids.EXPLICIT_LE, result.instance.get("StoredTransferSyntaxUID"))
    if not compare_values:
        normalize_dataset(reread)
        return True
    expected = merged_values({"Patient": document["Patient"]["DICOM"], "Study": document["Study"]["DICOM"],
                              "Series": document["Study"]["Series"][result.series_uid]["DICOM"],
                              "Instance": result.instance["DICOM"]})
    actual = merged_values(normalize_dataset(reread).levels)
    differences = {key: (expected.get(key), actual.get(key)) for key in expected.keys() | actual.keys()
                   if expected.get(key) != actual.get(key)}
    assert not differences, f"the rebuilt file reads back differently: {sorted(differences)[:10]}"
    return True


def one_input(data: bytes) -> None:
    check_rebuild(data, compare_values=False)


def seed_inputs() -> Iterable[bytes]:
    return (path.read_bytes() for path in seeds.seed_paths())
