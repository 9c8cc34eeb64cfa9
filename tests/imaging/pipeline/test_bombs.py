"""Decompression bombs and decoded-size bounds at import (issue 11 item 2): a deflated body stops inflating at
APERTURE_IMPORT_MAX_DECODED_BYTES, declared lengths are checked against what remains, frames over
APERTURE_MAX_FRAME_PIXELS fail before their pixels are read, and a worker's memory stays within the limit plus a
constant while it reads a bomb."""
from __future__ import annotations

import glob
import json
import io
import struct
import warnings
from pathlib import Path

import pydicom
import pydicom.encaps
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from imaging.dicom.reader import DecodeLimits, DicomInputError, read_p10
from imaging.pipeline.pool import process_all
from imaging.pipeline.sources import S3Settings, SourceObject
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.bombs import MIB, bomb_header, deflated_bomb, inflated_size, pixel_bomb, private_ob_bomb
from tests.dicomgen import ct_bytes, ct_dataset, to_bytes
from tests.pipeline_workers import report_peak_memory
from tests.paths import DICOM_DIR

SHARED_FILES = sorted(glob.glob(str(DICOM_DIR / "*.dcm")))
S3 = S3Settings("", "", "", "us-east-1")
DECODED_LIMIT_NAME = "APERTURE_IMPORT_MAX_DECODED_BYTES"
PIXEL_LIMIT_NAME = "APERTURE_MAX_FRAME_PIXELS"


def failure(data: bytes, limits: DecodeLimits = DecodeLimits()) -> FileResult:
    result = process_bytes(data, FileResult(input_file="bomb.dcm"), limits=limits)
    assert not result.ok
    return result


class TestDeflatedBodies:
    def test_a_body_inflating_past_the_limit_fails_naming_it(self):
        bomb = private_ob_bomb(256 * MIB, elements=8)
        assert len(bomb) < MIB and inflated_size(bomb) > 256 * MIB
        result = failure(bomb, DecodeLimits(max_decoded_bytes=64 * MIB))
        assert result.exception_type == "ValidationException"
        assert result.message == f"The deflated data set inflates to more than {DECODED_LIMIT_NAME} (67108864 bytes)"

    def test_the_issue_file_a_2_gib_private_element_fails_with_the_default_limit(self):
        bomb = private_ob_bomb(2 << 30)
        assert len(bomb) < 3 * MIB
        result = failure(bomb)
        assert result.exception_type == "ValidationException" and DECODED_LIMIT_NAME in result.message

    def test_a_body_under_the_limit_imports_as_before(self):
        data = to_bytes(_deflated(ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())))
        assert process_bytes(data, FileResult(input_file="ok.dcm"), limits=DecodeLimits(max_decoded_bytes=64 * 1024)).ok
        result = failure(data, DecodeLimits(max_decoded_bytes=4096))
        assert DECODED_LIMIT_NAME in result.message

    def test_a_truncated_body_is_the_files_failure(self):
        data = to_bytes(_deflated(ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())))
        result = failure(data[: len(data) - 200])
        assert result.exception_type == "ValidationException" and "Not a valid DICOM P10 file" in result.message


class TestDeclaredLengths:
    def test_a_4_gib_length_in_a_small_file_fails_at_once_with_a_reason(self):
        data = ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), rows=4, columns=4)
        data += struct.pack("<HH2sHI", 0x0029, 0x1010, b"OB", 0, 0xFFFFFFF0) + b"\0" * 100
        with pytest.raises(DicomInputError) as caught:
            read_p10(data)
        assert str(caught.value) == ("Not a valid DICOM P10 file: element (0029,1010) declares 4294967280 bytes "
                                     "but only 100 remain in the file")

    def test_pixel_data_longer_than_the_file_fails(self):
        data = bytearray(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), rows=8, columns=8))
        header = data.rindex(struct.pack("<HH2sH", 0x7FE0, 0x0010, b"OW", 0))
        data[header + 8 : header + 12] = struct.pack("<I", 1 << 30)
        result = failure(bytes(data))
        assert result.message == ("Not a valid DICOM P10 file: element (7FE0,0010) declares 1073741824 bytes but "
                                  "only 128 remain in the file")

    def test_a_value_cut_short_by_the_end_of_a_deflated_body_fails(self):
        cut_short = struct.pack("<HH2sHI", 0x0029, 0x1010, b"OB", 0, 64) + b"\0" * 8
        result = failure(deflated_bomb(bomb_header(), [], trailing=cut_short))
        assert result.message == ("Not a valid DICOM P10 file: element (0029,1010) declares 64 bytes but only 8 "
                                  "remain in the file")


class TestFramePixels:
    def test_a_frame_over_the_limit_fails_naming_it(self):
        data = ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), rows=64, columns=64)
        result = failure(data, DecodeLimits(max_frame_pixels=64 * 64 - 1))
        assert result.exception_type == "ValidationException"
        assert result.message == f"A frame of 64x64 pixels is more than {PIXEL_LIMIT_NAME} (4095)"
        assert process_bytes(data, FileResult(input_file="x"), limits=DecodeLimits(max_frame_pixels=64 * 64)).ok

    def test_the_issue_file_32768_squared_fails_by_the_pixel_limit_before_its_pixels_inflate(self):
        bomb = pixel_bomb(32768, 32768)
        result = failure(bomb)
        assert result.message == f"A frame of 32768x32768 pixels is more than {PIXEL_LIMIT_NAME} (268435456)"


def _deflated(ds):
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return ds


@pytest.mark.parametrize("path", SHARED_FILES, ids=[Path(p).name for p in SHARED_FILES])
def test_shared_files_read_as_pydicom_reads_them(path):
    """The bounded reader gives what pydicom's own dcmread gives, for each shared file and for each
    little-endian one re-encoded as Deflated Explicit VR."""
    data = Path(path).read_bytes()
    if data[128:132] != b"DICM":
        pytest.skip("not a P10 file: refused before reading (tested elsewhere)")
    candidates = [data]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = pydicom.dcmread(io.BytesIO(data))
        if original.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            original.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
            buffer = io.BytesIO()
            original.save_as(buffer, implicit_vr=False, little_endian=True, enforce_file_format=True)
            candidates.append(buffer.getvalue())
        for candidate in candidates:
            expected = [(e.tag, e.VR, e.value) for e in pydicom.dcmread(io.BytesIO(candidate)).iterall()]
            assert [(e.tag, e.VR, e.value) for e in read_p10(candidate).iterall()] == expected


def test_worker_memory_stays_within_the_limit_plus_a_constant(tmp_path):
    """Real pool workers read the bombs; each reports how far its peak resident memory rose for the file."""
    limit = 128 * MIB
    files = {
        "elements.dcm": private_ob_bomb(512 * MIB, elements=512),  # each element fits; all of them do not
        "one-huge-element.dcm": private_ob_bomb(2 << 30),  # its declared length alone passes the limit
        "huge-frame.dcm": pixel_bomb(32768, 32768),  # fails by the pixel limit before its pixels inflate
    }
    objects = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        objects.append(SourceObject(uri=(tmp_path / name).as_uri(), display_name=name, size=len(data)))
    results = {r.input_file: r for r in process_all(
        objects, s3=S3, storage_format="HTJ2K", concurrency=1, worker=report_peak_memory,
        limits=DecodeLimits(max_decoded_bytes=limit, max_frame_pixels=2**28))}
    growth = {name: result.source_bytes for name, result in results.items()}
    assert DECODED_LIMIT_NAME in results["elements.dcm"].message
    assert DECODED_LIMIT_NAME in results["one-huge-element.dcm"].message
    assert PIXEL_LIMIT_NAME in results["huge-frame.dcm"].message
    constant = 16 * MIB
    assert growth["elements.dcm"] < limit + constant, growth
    assert growth["one-huge-element.dcm"] < constant, growth
    assert growth["huge-frame.dcm"] < constant, growth
    print("peak worker RSS growth (MiB):", {name: round(size / MIB, 1) for name, size in growth.items()})


@pytest.mark.django_db(transaction=True)
def test_an_import_job_fails_the_bomb_alone_with_the_configured_limits(settings, tmp_path):
    """The settings reach the workers: a local import job with lowered limits lists each bomb in its failure
    manifest with the reason naming the limit, and imports the good file beside them."""
    from imaging.models import Datastore
    from imaging.services.datastores import datastore_create
    from imaging.services.imports import import_job_start_local

    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 1
    settings.APERTURE_IMPORT_MAX_DECODED_BYTES = 8 * MIB
    settings.APERTURE_MAX_FRAME_PIXELS = 1000
    created = datastore_create(client_token=generate_uid()[-20:], name="bombs")
    datastore = Datastore.objects.get(pk=created["datastoreId"])
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "inflates.dcm").write_bytes(private_ob_bomb(64 * MIB, elements=64))
    (folder / "frame.dcm").write_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), rows=64,
                                                columns=64))
    (folder / "fine.dcm").write_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), rows=16,
                                               columns=16))
    job = import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    job.refresh_from_db()
    assert job.status == "COMPLETED" and (job.imported_files, job.failed_files) == (1, 2)
    out = tmp_path / "imports" / f"{datastore.id}-DicomImport-{job.id}"
    failures = {Path(line["inputFile"]).name: line["exception"]
                for line in map(json.loads, (out / "FAILURE" / "failure.ndjson").read_text().splitlines())}
    assert failures["inflates.dcm"] == {"exceptionType": "ValidationException", "message":
                                        f"The deflated data set inflates to more than {DECODED_LIMIT_NAME} "
                                        f"({8 * MIB} bytes)"}
    assert failures["frame.dcm"]["message"] == f"A frame of 64x64 pixels is more than {PIXEL_LIMIT_NAME} (1000)"


def _frame_header_bomb(name: str) -> bytes:
    """A shared file whose (only) frame's own header is made to declare 30000x30000 pixels; Rows and Columns
    are left as they are."""
    data = bytearray((DICOM_DIR / name).read_bytes())
    sof = data.find(b"\xff\xc0")
    if sof >= 0:  # JPEG: lines and samples per line in the SOF segment
        data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)
        return bytes(data)
    siz = data.find(b"\xff\x51")  # JPEG 2000: Xsiz and Ysiz in the SIZ segment
    data[siz + 6 : siz + 14] = struct.pack(">II", 30000, 30000)
    return bytes(data)


@pytest.mark.parametrize("name", ["JPEG50__SC_rgb_jpeg_dcmtk.dcm", "J2K90__MR_small_jp2klossless.dcm"])
def test_a_frame_whose_codestream_declares_more_than_rows_and_columns_fails_before_decoding(name):
    """Decoders allocate what the codestream says: a frame declaring 30000x30000 in a 100x100 (kept as received)
    or 64x64 (transcoded) instance fails the file with the reason, and the viewer refuses to decode it."""
    from imaging.codecs.dimensions import declared_size
    from imaging.dicom import uids
    from imaging.codecs.description import PixelDescription
    from imaging.render.pixels import RenderError, decode_frame

    bomb = _frame_header_bomb(name)
    source = pydicom.dcmread(io.BytesIO(bomb))
    syntax = str(source.file_meta.TransferSyntaxUID)
    frame = next(pydicom.encaps.generate_frames(source.PixelData, number_of_frames=1))
    assert declared_size(frame, syntax) == (30000, 30000)
    result = failure(bomb)
    assert result.exception_type == "ValidationException"
    assert result.message == (f"A frame's codestream declares 30000x30000 pixels, more than the "
                              f"{source.Columns}x{source.Rows} of Columns x Rows")
    assert process_bytes((DICOM_DIR / name).read_bytes(), FileResult(input_file=name)).ok
    stored = syntax if syntax in uids.AS_RECEIVED else uids.J2K_LOSSLESS
    module = PixelDescription(rows=int(source.Rows), columns=int(source.Columns),
                              samples_per_pixel=int(source.SamplesPerPixel), bits_allocated=int(source.BitsAllocated),
                              bits_stored=int(source.BitsStored), signed=False, photometric="RGB",
                              transfer_syntax=stored)
    with pytest.raises(RenderError, match="declares 30000x30000 pixels"):
        decode_frame(frame, module)
