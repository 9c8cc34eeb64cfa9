"""imaging.pipeline.transcode: a frame that does not verify fails its file; the per-file pipeline imports no
Django."""
from __future__ import annotations

from pydicom.uid import generate_uid

from imaging.codecs import htj2k
from imaging.pipeline import transcode
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.dicomgen import ct_bytes


def test_a_frame_that_does_not_verify_fails_the_file_as_a_server_error(monkeypatch):
    good = htj2k.encode_lossless
    monkeypatch.setattr(htj2k, "encode_lossless", lambda frame, rgb: good(frame ^ 1, rgb=rgb))
    result = process_bytes(ct_bytes(study_uid=generate_uid(), series_uid=generate_uid()), FileResult(input_file="x"))
    assert not result.ok
    assert result.exception_type == "InternalServerException"
    assert "verification failed" in result.message
    assert result.frames == [] and result.instance == {}


def test_transcode_module_imports_no_django():
    import subprocess
    import sys

    code = ("import sys; import imaging.pipeline.process, imaging.pipeline.discover, imaging.codecs.registry,"
            " imaging.dicom.document;"
            "sys.exit(1 if any(m == 'django' or m.startswith('django.') for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=transcode.__file__.rsplit("/imaging/", 1)[0]).returncode == 0
