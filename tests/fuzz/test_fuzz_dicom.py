"""Fuzzing DICOM input: reading and normalization, the per-file import pipeline and the P10 rebuild (issue 11 item
12). Seeds are the real files in ../shared/dicom; see tests/fuzz/target_*.py for the properties."""
from __future__ import annotations

import pytest
from hypothesis import given

from imaging.pipeline.sources import S3Settings
from imaging.pipeline.process import process_source
from tests.fuzz import seeds, target_dicom, target_pipeline, target_rebuild
from tests.fuzz.strategies import bounded, mutated_files, require_seeds

pytestmark = pytest.mark.fuzz


def test_two_hundred_mutated_real_files_fail_as_validation_failures_with_a_reason(tmp_path):
    """The issue's finding, reproduced through the function the pool workers run for each object: 240 real files
    mutated deterministically (20 per small seed, round robin), read from disk by URI. Before the fixes 1 in 46
    of such files ended as InternalServerException and one in ~3000 escaped the worker (a Rust panic)."""
    require_seeds()
    corpus = seeds.mutated_corpus(240)
    failures, imported = [], 0
    for name, number, data in corpus:
        path = tmp_path / f"{number:05d}-{name}"
        path.write_bytes(data)
        result = process_source(path.as_uri(), path.name, S3Settings("", "", "", ""), "HTJ2K")
        if result.ok:
            imported += 1
        elif result.exception_type != "ValidationException" or not result.message.strip():
            failures.append((name, number, result.exception_type, result.message))
    assert failures == []
    assert 0 < imported < len(corpus)  # the mutations neither break everything nor nothing


@bounded(400)
@given(mutated_files())
def test_reading_and_normalizing_mutated_files(case):
    require_seeds()
    target_dicom.one_input(case[2])


@bounded(300)
@given(mutated_files())
def test_the_import_pipeline_on_mutated_files(case):
    require_seeds()
    target_pipeline.one_input(case[2])


def test_rebuilt_files_read_back_with_the_values_of_their_document():
    """Every shared file that imports is rebuilt (as GetDICOMInstance does) into a file with the same values."""
    require_seeds()
    rebuilt = [path.name for path in seeds.seed_paths(None) if target_rebuild.check_rebuild(path.read_bytes())]
    assert len(rebuilt) > 40


@bounded(200)
@given(mutated_files())
def test_rebuilding_whatever_the_pipeline_imported(case):
    """A mutated file that imports keeps odd values as it had them (an IS "1.0 (", text where US belongs); the
    rebuild still writes a file pydicom reads (values pydicom cannot write in their VR go out as their bytes)."""
    require_seeds()
    target_rebuild.check_rebuild(case[2], compare_values=False)
