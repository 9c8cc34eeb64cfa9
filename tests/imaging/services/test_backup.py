"""`manage.py backup` / `restore` (imaging/services/backup.py) as an operator runs them: real DICOM imported into a
live server, a backup taken while it serves, the archive wiped, the backup restored into a fresh one; then every
image set, frame (bytes) and audit row is the same, the old access key still signs, and the frames come back
identical through the API. Once on the embedded default (SQLite and a blob folder), once on PostgreSQL and S3
(SeaweedFS), where the backup shells out to pg_dump and copies the bucket's objects."""
from __future__ import annotations

import gzip
import json
import os
import secrets
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests import personas
from tests.archive_state import archive_state
from tests.clients import imaging_client, wait_for
from tests.paths import DICOM_DIR
from tests.servers import ApertureServer, PostgresDatabase, free_port

pytestmark = [pytest.mark.live, pytest.mark.slow]

FILES = ["ELE__CT_small.dcm", "ELE__SC_rgb.dcm", "RLE__OBXXXX1A_rle_2frame.dcm", "JPEG50__SC_rgb_jpeg_dcmtk.dcm"]
POSTGRES = os.environ.get("DATABASE_URL", "postgres://root@127.0.0.1:5432/test")


def _postgres_reachable() -> bool:
    if not POSTGRES.startswith("postgres"):
        return False
    try:
        import psycopg
        from urllib.parse import urlparse, urlunparse

        # The tests make their own databases beside the one named, which need not exist.
        psycopg.connect(urlunparse(urlparse(POSTGRES)._replace(path="/postgres")), connect_timeout=3).close()
        return True
    except Exception:
        return False


@pytest.fixture(params=["embedded", "postgres-s3"])
def engines(request, monkeypatch, tmp_path):
    """(extra environment of the archive, how to make an empty target for the restore)."""
    if request.param == "embedded":
        monkeypatch.delenv("DATABASE_URL", raising=False)
        yield {}, lambda env: env
        return
    if not _postgres_reachable():
        pytest.skip("PostgreSQL is not reachable")
    seaweed = request.getfixturevalue("seaweed")
    s3 = request.getfixturevalue("s3")
    bucket = "backup-" + secrets.token_hex(4)
    s3.create_bucket(Bucket=bucket)
    monkeypatch.setenv("DATABASE_URL", POSTGRES)
    extra = {**seaweed.env(), "APERTURE_BLOB_STORE": f"s3://{bucket}/archive",
             "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
             "APERTURE_KEY_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    databases = []

    def empty_target(env):
        database = PostgresDatabase(POSTGRES)
        database.create()
        databases.append(database)
        return {**env, "DATABASE_URL": database.url, "APERTURE_BLOB_STORE": f"s3://{bucket}/restored"}

    yield extra, empty_target
    for database in databases:
        database.drop()


def frames_of(mi, datastore_id: str) -> dict[str, bytes]:
    """Every frame of every image set, through GetImageFrame (audited: each read is an audit row)."""
    frames = {}
    for summary in mi.search_image_sets(datastoreId=datastore_id)["imageSetsMetadataSummaries"]:
        image_set_id = summary["imageSetId"]
        body = mi.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id)["imageSetMetadataBlob"]
        document = json.loads(gzip.decompress(body.read()))
        for series in document["Study"]["Series"].values():
            for instance in series["Instances"].values():
                for frame in instance.get("ImageFrames", []):
                    frames[frame["ID"]] = mi.get_image_frame(
                        datastoreId=datastore_id, imageSetId=image_set_id,
                        imageFrameInformation={"imageFrameId": frame["ID"]})["imageFrameBlob"].read()
    return frames


def test_backup_while_serving_wipe_restore_gives_the_same_archive(engines, tmp_path):
    extra_env, empty_target = engines
    source = ApertureServer(extra_env=extra_env).start()
    target = None
    try:
        key = personas.live_key(source)
        mi = imaging_client(source.url, key)
        datastore_id = mi.create_datastore(datastoreName="ward")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
                 == "ACTIVE")
        folder = tmp_path / "in"
        folder.mkdir()
        for name in FILES:
            (folder / name).write_bytes((DICOM_DIR / name).read_bytes())
        source.manage("import_dicom", "--datastore", datastore_id, str(folder))
        frames = frames_of(mi, datastore_id)
        assert len(frames) >= 5

        backup = tmp_path / "backup"
        made = source.manage("backup", str(backup))  # the server is serving meanwhile
        manifest = json.loads((backup / "manifest.json").read_text())
        assert manifest["blobs"]["count"] >= len(frames) and manifest["blobs"]["vanished"] == 0, made.stdout
        assert ["imaging", "0001_initial"] in manifest["migrations"]
        before = archive_state(source.manage)
        assert len(before["audit"]) >= len(frames) and None not in before["frame_blobs"].values()
        source.stop()  # the wipe: its data dir (and database) are gone

        data_dir = Path(tempfile.mkdtemp(prefix="aperture-test-"))
        target = ApertureServer(port=free_port(), data_dir=data_dir,
                                env=empty_target({**source.env, "APERTURE_DATA_DIR": str(data_dir)}))
        restored = target.manage("restore", str(backup))
        assert "Restored" in restored.stdout
        assert archive_state(target.manage) == before

        refused = target.manage("restore", str(backup), check=False)
        assert refused.returncode != 0 and "not empty" in refused.stderr
        target.manage("restore", "--force", str(backup))
        assert archive_state(target.manage) == before

        target.launch()
        mi_restored = imaging_client(target.url, key)  # the old key: its secret was decrypted with the old key
        assert frames_of(mi_restored, datastore_id) == frames
    finally:
        source.stop()
        if target is not None:
            target.stop()


def test_restore_refuses_an_unfinished_or_damaged_backup(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    source = ApertureServer().start()
    try:
        backup = tmp_path / "backup"
        source.manage("backup", str(backup))
        again = source.manage("backup", str(backup), check=False)
        assert again.returncode != 0 and "not an empty folder" in again.stderr

        data_dir = Path(tempfile.mkdtemp(prefix="aperture-test-"))
        target = ApertureServer(port=free_port(), data_dir=data_dir,
                                env={**source.env, "APERTURE_DATA_DIR": str(data_dir)})
        manifest = json.loads((backup / "manifest.json").read_text())
        database_file = backup / manifest["database"]["file"]
        database_file.write_bytes(database_file.read_bytes()[:-1])
        damaged = target.manage("restore", str(backup), check=False)
        assert damaged.returncode != 0 and "damaged" in damaged.stderr
        (backup / "manifest.json").unlink()
        unfinished = target.manage("restore", str(backup), check=False)
        assert unfinished.returncode != 0 and "manifest.json" in unfinished.stderr
        target.stop()
    finally:
        source.stop()


class DeletingWhileListed:
    """The configured folder store, with one frame's blob deleted from the folder right after the listing yields it,
    as an image set deleted while a backup runs would."""

    def __init__(self, store, victim: str) -> None:
        self.store, self.victim = store, victim

    def list_blobs(self, prefix: str):
        for info in self.store.list_blobs(prefix):
            if info.key == self.victim:
                self.store.delete(info.key)
            yield info

    def get(self, key: str):
        return self.store.get(key)


@pytest.mark.django_db(transaction=True)
def test_a_blob_deleted_during_the_copy_does_not_fail_the_backup(store_settings, datastore, tmp_path, monkeypatch):
    from imaging.models import ImageFrame
    from imaging.services import backup
    from imaging.services.imports import import_job_start_local
    from imaging.storage import blob_store

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "ct.dcm").write_bytes((DICOM_DIR / "ELE__CT_small.dcm").read_bytes())
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    victim = ImageFrame.objects.get().blob_key
    monkeypatch.setattr(backup, "blob_store", lambda: DeletingWhileListed(blob_store(), victim))
    manifest = backup.backup_create(destination=tmp_path / "backup")
    assert manifest["blobs"]["vanished"] == 1 and manifest["blobs"]["count"] == 1  # the metadata document
    assert manifest["blobs"]["referencedMissing"] in (1, None)  # None: a pg_dump cannot be read back here
    assert not (tmp_path / "backup" / "blobs" / victim).exists()


def test_a_backup_taken_during_an_import_restores_to_a_sound_archive(monkeypatch, tmp_path):
    """Whatever moment the snapshot catches of a running import, every frame row it holds has its blob, whole."""
    import subprocess
    import sys

    import numpy as np
    from pydicom.uid import generate_uid

    from tests.dicomgen import ct_bytes
    from tests.paths import REPO_ROOT

    monkeypatch.delenv("DATABASE_URL", raising=False)
    source = ApertureServer().start()
    target = None
    try:
        mi = imaging_client(source.url, personas.live_key(source))
        datastore_id = mi.create_datastore(datastoreName="busy")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
                 == "ACTIVE")
        folder = tmp_path / "in"
        study = generate_uid()
        for n in range(4):  # four series in four jobs: the snapshot may fall between their image sets
            series, part = generate_uid(), folder / f"part{n}"
            part.mkdir(parents=True)
            for i in range(15):
                pixels = (np.arange(128 * 128).reshape(128, 128) * (n + i + 1)) % 4000
                (part / f"{i}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=i + 1,
                                                         rows=128, columns=128, pixels=pixels.astype(np.uint16)))
        importing = [subprocess.Popen([sys.executable, "manage.py", "import_dicom", "--datastore", datastore_id,
                                       str(folder / f"part{n}")], cwd=REPO_ROOT, env=source.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in range(4)]
        backup = tmp_path / "backup"
        source.manage("backup", str(backup))
        assert [process.wait(120) for process in importing] == [0, 0, 0, 0]
        assert json.loads((backup / "manifest.json").read_text())["blobs"]["referencedMissing"] == 0

        data_dir = Path(tempfile.mkdtemp(prefix="aperture-test-"))
        target = ApertureServer(port=free_port(), data_dir=data_dir,
                                env={**source.env, "APERTURE_DATA_DIR": str(data_dir)})
        target.manage("restore", str(backup))
        checked = target.manage("verify_frames", check=False)
        assert checked.returncode == 0, checked.stdout
    finally:
        source.stop()
        if target is not None:
            target.stop()
