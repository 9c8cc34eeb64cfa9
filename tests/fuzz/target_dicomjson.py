"""Fuzz target: DICOM JSON (PS3.18 Annex F) to normalized metadata (imaging.dicom.dicomjson), used by JSON
metadata import.

Properties: any JSON document is either converted or refused with a DicomJsonError naming the problem (the
import then fails with that reason); and a dataset written as DICOM JSON (pydicom's to_json_dict) converts to
exactly the values normalization gives for the same dataset read from a file, so a metadata file and a P10 file
that say the same thing give the same document.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

from pydicom.dataset import Dataset

from imaging.dicom.dicomjson import DicomJsonError, levels_from_dicom_json
from imaging.dicom.normalize import BULK_THRESHOLD, normalize_dataset
from tests.fuzz import seeds


def convert(document: Any) -> tuple[dict, dict] | None:
    try:
        return levels_from_dicom_json(document)
    except DicomJsonError as e:
        assert str(e).strip(), "a refused metadata file must say why"
        return None


def one_input(data: bytes) -> None:
    try:
        document = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return  # not JSON: the import refuses it before conversion
    convert(document)


def comparable(dataset: Dataset) -> Dataset:
    """The dataset without what JSON metadata cannot carry or set: File Meta, pixel data, the SOP Instance UID,
    bulk values (BulkDataURI) and group lengths."""
    kept = Dataset()
    for element in dataset:
        if element.tag.group == 0x0002 or element.tag.element == 0 or element.keyword in (
                "PixelData", "FloatPixelData", "DoubleFloatPixelData", "SOPInstanceUID", "TransferSyntaxUID"):
            continue
        if element.VR in ("OB", "OW", "OD", "OF", "OL", "OV", "UN") and len(element.value or b"") > BULK_THRESHOLD:
            continue
        kept.add(element)
    return kept


def normalized_both_ways(dataset: Dataset) -> tuple[dict, dict]:
    """(levels from the dataset as read, levels from its DICOM JSON), each flattened to one map with its VRs."""
    dataset = comparable(dataset)
    dataset.file_meta = Dataset()
    notes = normalize_dataset(dataset)
    from_file = {key: value for level in notes.levels.values() for key, value in level.items()}
    levels, vrs = levels_from_dicom_json(dataset.to_json_dict(bulk_data_threshold=BULK_THRESHOLD + 1))
    from_json = {key: value for level in levels.values() for key, value in level.items()}
    return from_file, from_json


def same_values(a: Any, b: Any) -> bool:
    """Equal, where IS and DS count as equal by their number: DICOM JSON carries them as JSON numbers, so a file's
    "240.0000" comes back from JSON as "240.0" (PS3.18 F.2.3; the text form cannot survive JSON)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_values(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_values(x, y) for x, y in zip(a, b))
    if a == b:
        return True
    try:
        return isinstance(a, str) and isinstance(b, str) and float(a) == float(b)
    except ValueError:
        return False


def differences(a: dict, b: dict) -> list[str]:
    return sorted(key for key in a.keys() | b.keys() if not same_values(a.get(key), b.get(key)))


def seed_inputs() -> Iterable[bytes]:
    yield b'{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}, "00200013": {"vr": "IS", "Value": [3]}}'
    for path in seeds.seed_paths()[:8]:
        import pydicom

        dataset = pydicom.dcmread(path, force=True)
        try:
            yield json.dumps(comparable(dataset).to_json_dict()).encode()
        except Exception:
            continue
