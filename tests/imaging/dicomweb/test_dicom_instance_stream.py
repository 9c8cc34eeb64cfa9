"""GetDICOMInstance streams (issue 11 item 2): the file sent piece by piece is byte for byte the one built whole,
and the web process holds about one frame of it, not the file."""
from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import numpy as np
import pydicom
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from pydicom.uid import generate_uid

from imaging.dicom import uids
from imaging.dicom.rebuild import FrameSizeError, dict_to_dataset, p10_parts, write_p10
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.clients import wait_for
from tests.paths import DICOM_DIR
from tests.dicomgen import ct_dataset, to_bytes
from tests.importing import run_import

SHARED_FILES = sorted(DICOM_DIR.glob("*.dcm"))
MIB = 1024 * 1024


def _imported(path: Path) -> FileResult | None:
    result = process_bytes(path.read_bytes(), FileResult(input_file=path.name))
    return result if result.ok and result.frames else None


def _dataset(result: FileResult):
    """The instance's dataset as GetDICOMInstance rebuilds it from metadata (see rebuild.instance_dataset)."""
    merged, vrs = {}, {}
    for level in ("Patient", "Study", "Series"):
        merged.update(result.levels[level])
        vrs.update(result.level_vrs.get(level, {}))
    merged.update(result.instance["DICOM"])
    vrs.update(result.instance.get("DICOMVRs", {}))
    merged["DICOMVRs"] = vrs
    merged.pop("PixelData", None)
    return dict_to_dataset(merged, signed=merged.get("PixelRepresentation") == 1)


@pytest.mark.parametrize("path", SHARED_FILES, ids=[p.name for p in SHARED_FILES])
def test_streamed_file_is_byte_identical_to_the_whole_one(path):
    result = _imported(path)
    if result is None:
        pytest.skip("no pixel data, or not imported")
    frames = [frame.frame_bytes for frame in result.frames]
    stored = result.instance["StoredTransferSyntaxUID"]
    for syntax, native in ((stored, stored == uids.EXPLICIT_LE), (uids.EXPLICIT_LE, True)):
        whole = write_p10(_dataset(result), transfer_syntax=syntax, pixel_frames=frames, native=native)
        handed: list[int] = []

        def lazily():
            for index, frame in enumerate(frames):
                handed.append(index)
                yield frame

        streamed = p10_parts(_dataset(result), transfer_syntax=syntax, frame_sizes=[len(f) for f in frames],
                             frames=lazily(), native=native)
        assert handed == []  # nothing is fetched before the file is sent
        assert streamed.length == len(whole)
        assert b"".join(streamed.parts) == whole


def test_a_frame_of_another_size_than_announced_stops_the_stream():
    result = _imported(DICOM_DIR / "ELE__CT_small.dcm")
    frame = result.frames[0].frame_bytes
    streamed = p10_parts(_dataset(result), transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL, frame_sizes=[len(frame) + 2],
                         frames=iter([frame]), native=False)
    with pytest.raises(FrameSizeError):
        b"".join(streamed.parts)


def _signed_get(server, url: str, accept: str | None = None):
    request = AWSRequest(method="GET", url=url, headers={"Accept": accept} if accept else {})
    SigV4Auth(Credentials(server.admin_key["AccessKeyId"], server.admin_key["SecretAccessKey"]),
              "medical-imaging", "us-east-1").add_auth(request)
    return urllib.request.urlopen(urllib.request.Request(url, headers=dict(request.headers.items())))


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise LookupError("VmHWM")


@pytest.mark.live
def test_a_large_instance_streams_through_a_small_web_process(server, mi, s3):
    """A 64 MiB instance (32 frames of 1024x1024 16-bit noise, stored as HTJ2K) served as Explicit VR Little
    Endian: each frame is decoded as it is sent. The server's peak resident memory (VmHWM, reset through
    clear_refs just before the request) grows by far less than the file; building the file whole held the
    codestreams, the decoded frames and the joined file at once."""
    frames, rows = 32, 1024
    pixels = np.random.default_rng(7).integers(0, 4096, size=(frames, rows, rows), dtype=np.uint16)
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid(), rows=rows, columns=rows,
                    pixels=pixels[0])
    ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype("<u2").tobytes()
    datastore_id = mi.create_datastore(datastoreName="stream")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    outcome = run_import(mi, s3, datastore_id, {"big.dcm": to_bytes(ds)})
    image_set_id = outcome.line_for("big.dcm")["importResponse"]["imageSetId"]
    url = (f"{server.url}/datastore/{datastore_id}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/"
           f"instances/{ds.SOPInstanceUID}?imageSetId={image_set_id}")
    pid = server.process.pid
    sizes = []
    for _ in range(2):  # the first request also loads the decoder and starts threads: the second one is measured
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = _peak_kib(pid)
        body = io.BytesIO()
        with _signed_get(server, url) as response:
            assert response.status == 200
            length = int(response.headers["Content-Length"])
            while chunk := response.read(MIB):
                body.write(chunk)
        sizes.append((_peak_kib(pid) - before) * 1024)
    growth = sizes[-1]
    assert length == len(body.getvalue()) > frames * rows * rows * 2
    rebuilt = pydicom.dcmread(io.BytesIO(body.getvalue()))
    assert np.array_equal(rebuilt.pixel_array, pixels)
    print(f"web process peak RSS growth while sending {length / MIB:.1f} MiB: {growth / MIB:.1f} MiB")
    assert growth < length / 2, growth  # measured here: about 17 MiB (313 MiB when the file was built whole)
