"""`manage.py verify_frames` (imaging/services/scrub.py): real files imported into a blob folder, then re-read; a
flipped byte, a truncated frame and a lost one are each found, named by image set and frame id, and the run shows on
the data store's admin page."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from imaging.models import Datastore, FrameScrub, ImageFrame
from imaging.services.datastores import datastore_create
from imaging.services.imports import import_job_start_local
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.django_db(transaction=True)

# Transcoded to HTJ2K with checksums (grey 16-bit, RGB, multi-frame) and one kept as received (lossy JPEG).
FILES = ["ELE__CT_small.dcm", "ELE__SC_rgb.dcm", "RLE__OBXXXX1A_rle_2frame.dcm", "JPEG50__SC_rgb_jpeg_dcmtk.dcm"]


def imported(datastore: Datastore, tmp_path: Path, names=FILES) -> list[ImageFrame]:
    folder = tmp_path / f"in-{datastore.id}"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((DICOM_DIR / name).read_bytes())
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    return list(ImageFrame.objects.filter(image_set__datastore=datastore).order_by("id"))


def verify(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("verify_frames", *args, stdout=out)
    except SystemExit as e:
        return e.code, out.getvalue()
    return 0, out.getvalue()


def blob_path(store_settings, frame: ImageFrame) -> Path:
    return Path(store_settings.APERTURE_BLOB_STORE.removeprefix("file://")) / frame.blob_key


def test_sound_frames_pass_and_the_run_is_recorded(store_settings, datastore, tmp_path):
    frames = imported(datastore, tmp_path)
    assert len(frames) >= 5
    status, output = verify("--datastore", datastore.id)
    assert status == 0, output
    scrub = FrameScrub.objects.get()
    assert (scrub.frames_checked, scrub.frames_bad, scrub.datastore_id) == (len(frames), 0, datastore.id)
    assert scrub.frames_without_checksum == 1 and scrub.ended_at is not None  # the JPEG kept as received


def test_a_flipped_byte_in_a_stored_frame_is_found(store_settings, datastore, tmp_path):
    frames = imported(datastore, tmp_path)
    victim = next(frame for frame in frames if frame.stored_transfer_syntax.endswith(".4.202"))
    path = blob_path(store_settings, victim)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    status, output = verify()
    assert status == 1
    assert f"BAD image set {victim.image_set_id} frame {victim.frame_id}" in output
    scrub = FrameScrub.objects.get()
    assert scrub.frames_bad == 1 and scrub.bad_frames[0]["problem"] in ("checksum", "undecodable")
    assert "PatientName" not in output and "CompressedSamples" not in output


def test_lost_and_truncated_frames_are_found(store_settings, datastore, tmp_path):
    frames = imported(datastore, tmp_path)
    lost, truncated = frames[0], frames[-1]
    blob_path(store_settings, lost).unlink()
    path = blob_path(store_settings, truncated)
    path.write_bytes(path.read_bytes()[:-10])
    status, _ = verify("--datastore", datastore.id)
    problems = {(bad["frameId"], bad["problem"]) for bad in FrameScrub.objects.get().bad_frames}
    assert status == 1 and problems == {(lost.frame_id, "missing"), (truncated.frame_id, "size")}


def test_sample_and_datastore_limit_what_is_read(store_settings, datastore, tmp_path):
    frames = imported(datastore, tmp_path)
    other = Datastore.objects.get(pk=datastore_create(client_token="other-store", name="other")["datastoreId"])
    other_frames = imported(other, tmp_path, names=["ELE__CT_small.dcm"])
    blob_path(store_settings, other_frames[0]).unlink()
    assert verify("--datastore", datastore.id)[0] == 0
    assert verify("--sample", "2", "--datastore", datastore.id)[0] == 0
    assert FrameScrub.objects.first().frames_checked == 2
    assert verify()[0] == 1 and FrameScrub.objects.first().frames_checked == len(frames) + 1


def test_command_refuses_bad_arguments(store_settings, datastore):
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        call_command("verify_frames", "--sample", "0")
    with pytest.raises(CommandError):
        call_command("verify_frames", "--datastore", "nosuchstore")


def test_admin_shows_the_last_scrub_of_a_datastore(store_settings, datastore, tmp_path, admin_client):
    page = admin_client.get(f"/admin/imaging/datastore/{datastore.id}/change/")
    assert b"Last frame scrub" in page.content and b"never" in page.content
    frames = imported(datastore, tmp_path)
    blob_path(store_settings, frames[0]).unlink()
    verify("--datastore", datastore.id)
    scrub = FrameScrub.objects.get()
    page = admin_client.get(f"/admin/imaging/datastore/{datastore.id}/change/").content.decode()
    assert f"{len(frames)} frames checked, 1 bad" in page
    detail = admin_client.get(f"/admin/imaging/framescrub/{scrub.pk}/change/").content.decode()
    assert frames[0].frame_id in detail and "missing" in detail


def test_a_flipped_byte_in_an_s3_object_is_found(store_settings, seaweed, s3, tmp_path):
    s3.create_bucket(Bucket="scrub-blobs")
    store_settings.APERTURE_BLOB_STORE = "s3://scrub-blobs/archive"
    store_settings.APERTURE_S3_ENDPOINT_URL = seaweed.endpoint
    store_settings.APERTURE_S3_ACCESS_KEY_ID = seaweed.access_key
    store_settings.APERTURE_S3_SECRET_ACCESS_KEY = seaweed.secret_key
    datastore = Datastore.objects.get(pk=datastore_create(client_token="s3-store", name="s3")["datastoreId"])
    frames = imported(datastore, tmp_path, names=["ELE__CT_small.dcm", "ELE__SC_rgb.dcm"])
    assert verify("--datastore", datastore.id)[0] == 0
    victim = frames[-1]
    key = f"archive/{victim.blob_key}"
    data = bytearray(s3.get_object(Bucket="scrub-blobs", Key=key)["Body"].read())
    data[-len(data) // 3] ^= 0x40
    s3.put_object(Bucket="scrub-blobs", Key=key, Body=bytes(data))
    status, output = verify("--datastore", datastore.id)
    assert status == 1 and f"frame {victim.frame_id}" in output
