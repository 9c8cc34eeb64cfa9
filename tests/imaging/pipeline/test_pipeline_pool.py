"""The worker pool, the filesystem blob store and import settings, on their own: no server."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from imaging.pipeline.pool import MAX_BATCH, process_all
from imaging.pipeline.sources import S3Settings, SourceObject
from imaging.storage.base import BlobStoreError
from imaging.storage.filesystem import FilesystemBlobStore
from tests.dicomgen import ct_bytes
from tests.pipeline_workers import crash_on_poison, hang_on_named_files, report_batches
from tests.paths import REPO_ROOT

S3 = S3Settings("", "", "", "us-east-1")


def series(folder, count: int, *, poison: int | None = None) -> list[SourceObject]:
    study, serie = generate_uid(), generate_uid()
    objects = []
    for n in range(count):
        path = folder / (f"{n:03}-poison.dcm" if n == poison else f"{n:03}.dcm")
        path.write_bytes(ct_bytes(study_uid=study, series_uid=serie, instance_number=n + 1, rows=32, columns=32))
        objects.append(SourceObject(uri=path.as_uri(), display_name=path.name, size=path.stat().st_size))
    return objects


def test_files_travel_in_batches_that_shrink_towards_the_end(tmp_path):
    objects = series(tmp_path, 80)
    results = list(process_all(objects, s3=S3, storage_format="HTJ2K", concurrency=2, worker=report_batches))
    assert sorted(r.input_file for r in results) == sorted(o.display_name for o in objects)
    assert all(r.ok for r in results)
    sizes = [int(r.message.split()[2]) for r in results]
    assert max(sizes) == MAX_BATCH and min(sizes) == 1


def test_a_file_that_kills_its_worker_fails_alone_and_the_others_are_imported(tmp_path):
    objects = series(tmp_path, 40, poison=5)
    results = {r.input_file: r for r in process_all(objects, s3=S3, storage_format="HTJ2K", concurrency=2,
                                                      worker=crash_on_poison)}
    assert len(results) == 40
    poison = results.pop("005-poison.dcm")
    assert not poison.ok and poison.message.startswith("The worker processing the file crashed")
    assert all(r.ok for r in results.values()), [r.message for r in results.values() if not r.ok]


def test_a_file_that_never_finishes_fails_alone_at_its_time_limit(tmp_path):
    """A hang in Python is interrupted at the limit (the file's own ValidationException); a hang in native code
    that ignores signals is ended with its worker by the watchdog, and that file alone fails."""
    objects = series(tmp_path, 12)
    for index, suffix in ((3, "python-hang.dcm"), (8, "native-hang.dcm")):
        renamed = Path(objects[index].uri.removeprefix("file://")).with_name(f"{index:03}-{suffix}")
        os.rename(objects[index].uri.removeprefix("file://"), renamed)
        objects[index] = SourceObject(uri=renamed.as_uri(), display_name=renamed.name, size=renamed.stat().st_size)
    results = {r.input_file: r for r in process_all(objects, s3=S3, storage_format="HTJ2K", concurrency=2,
                                                      worker=hang_on_named_files, file_timeout=1)}
    assert len(results) == 12
    python_hang, native_hang = results.pop("003-python-hang.dcm"), results.pop("008-native-hang.dcm")
    assert python_hang.exception_type == "ValidationException"
    assert "APERTURE_IMPORT_FILE_TIMEOUT_SECONDS (1 s)" in python_hang.message
    assert native_hang.exception_type == "InternalServerException"
    assert "APERTURE_IMPORT_FILE_TIMEOUT_SECONDS" in native_hang.message
    assert all(r.ok for r in results.values()), [r.message for r in results.values() if not r.ok]


def test_filesystem_store_refuses_keys_outside_its_folder_and_leaves_no_temporary_files(tmp_path):
    store = FilesystemBlobStore(tmp_path / "blobs")
    for key in ("../outside", "a/../../outside", "/etc/passwd", "", "a\x00b"):
        with pytest.raises(BlobStoreError):
            store.put(key, b"x")
    assert not (tmp_path / "outside").exists()
    store.put("datastores/d1/frames/ab/abc", b"first")
    store.put("datastores/d1/frames/ab/abc", b"second")
    assert store.get("datastores/d1/frames/ab/abc") == b"second"
    assert os.listdir(tmp_path / "blobs" / "datastores" / "d1" / "frames" / "ab") == ["abc"]
    assert os.listdir(tmp_path / "blobs" / ".tmp") == []
    assert oct((tmp_path / "blobs" / "datastores" / "d1" / "frames" / "ab" / "abc").stat().st_mode & 0o777) == "0o600"


def test_bucket_owner_setting_is_parsed_and_bad_values_stop_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from config.env import env_mapping

    monkeypatch.setenv("APERTURE_S3_BUCKET_OWNERS", " scans=111122223333 , archive=444455556666")
    assert env_mapping("APERTURE_S3_BUCKET_OWNERS", r"\d{12}", "12 digits") == {
        "scans": "111122223333", "archive": "444455556666"}
    for bad in ("scans", "scans=12", "=111122223333"):
        monkeypatch.setenv("APERTURE_S3_BUCKET_OWNERS", bad)
        with pytest.raises(ImproperlyConfigured, match="APERTURE_S3_BUCKET_OWNERS"):
            env_mapping("APERTURE_S3_BUCKET_OWNERS", r"\d{12}", "12 digits")


def test_workers_leave_when_the_process_that_started_them_is_killed(tmp_path):
    """A server killed (or stopped without shutting its pool down) must not leave worker processes behind."""
    import signal
    import subprocess
    import sys
    import time

    objects = series(tmp_path, 4)
    script = f"""
import sys, time
sys.path.insert(0, {str(REPO_ROOT)!r})
from imaging.pipeline import pool
from imaging.pipeline.sources import S3Settings, SourceObject
if __name__ == "__main__":
    objects = [SourceObject(uri=u, display_name=n, size=1) for u, n in {[(o.uri, o.display_name) for o in objects]!r}]
    assert all(r.ok for r in pool.process_all(objects, s3=S3Settings("", "", "", ""), storage_format="HTJ2K",
                                              concurrency=2))
    print(" ".join(str(pid) for pid in pool._pool._processes), flush=True)
    time.sleep(120)
"""
    (tmp_path / "starter.py").write_text(script)
    starter = subprocess.Popen([sys.executable, str(tmp_path / "starter.py")], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in starter.stdout.readline().split()]
        assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """A zombie counts as gone; a process that exits between open and read raises ESRCH, not ENOENT."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_a_write_cut_off_leaves_its_file_only_in_the_temporary_folder_which_is_swept(tmp_path):
    import time

    store = FilesystemBlobStore(tmp_path / "blobs")
    store.put("datastores/d1/frames/ab/abc", b"frame")
    temporary = tmp_path / "blobs" / ".tmp"
    assert temporary.is_dir() and list(temporary.iterdir()) == []  # a completed write leaves nothing there
    stale, fresh = temporary / "123-0-dead", temporary / "456-0-beef"
    stale.write_bytes(b"half a frame")
    fresh.write_bytes(b"a write in progress")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert store.sweep_temporary(older_than_seconds=3600) == 1
    assert not stale.exists() and fresh.exists()
    assert store.get("datastores/d1/frames/ab/abc") == b"frame"
    assert FilesystemBlobStore(tmp_path / "empty").sweep_temporary() == 0
