"""The C-STORE spool (imaging/dimse/store.py) in process: batches by file count, one import job each with the
calling AE; and the recovery at start of the spools a crashed listener left."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from imaging.dimse import store
from imaging.dimse.peer import Peer
from imaging.models import AuditEvent, ImportJob, JobStatus
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.django_db(transaction=True)
FILES = ["ELE__CT_small.dcm", "ELE__MR_small.dcm", "ELE__SC_rgb.dcm"]


def peer_for(datastore) -> Peer:
    return Peer(datastore_id=datastore.id, called_ae_title="CT_STORE", calling_ae_title="MODALITY",
                address="192.0.2.9", node_id=None, may_store=True, may_query=False, may_retrieve=False)


def received(tmp_path, name: str):
    """A file as pynetdicom leaves it in the incoming folder."""
    path = store.uploads_dir() / store.INCOMING / f"tmp-{name}"
    shutil.copy(DICOM_DIR / name, path)
    return path


def test_an_association_becomes_jobs_of_at_most_batch_files(store_settings, datastore, settings, tmp_path):
    settings.APERTURE_DICOM_BATCH_FILES = 2
    store.store_configure()
    association = store.AssociationStore(peer_for(datastore))
    for name in FILES:
        association.keep(received(tmp_path, name))
    association.finish()
    jobs = list(ImportJob.objects.filter(datastore=datastore).order_by("submitted_at"))
    assert [(job.status, job.imported_files, job.name) for job in jobs] == [
        (JobStatus.COMPLETED, 2, "C-STORE from MODALITY"), (JobStatus.COMPLETED, 1, "C-STORE from MODALITY")]
    assert {(job.calling_ae_title, job.calling_address) for job in jobs} == {("MODALITY", "192.0.2.9")}
    assert sorted(path.name for path in store.uploads_dir().iterdir()) == [store.INCOMING]  # jobs took their folders
    batches = AuditEvent.objects.filter(event_name="DICOMStoreBatch")
    assert sorted(event.request_parameters["instances"] for event in batches) == [1, 2]
    with pytest.raises(OSError):
        association.keep(received(tmp_path, FILES[0]))  # after the end, nothing more is kept


def test_a_long_association_becomes_a_job_every_batch_seconds(store_settings, datastore, settings, tmp_path):
    settings.APERTURE_DICOM_BATCH_SECONDS = 0
    store.store_configure()
    association = store.AssociationStore(peer_for(datastore))
    association.keep(received(tmp_path, FILES[0]))
    store.spools_tick()  # not registered: the tick of the registry does not see this one
    association.tick()
    assert ImportJob.objects.filter(datastore=datastore, imported_files=1).count() == 1
    association.keep(received(tmp_path, FILES[1]))
    association.finish()
    assert ImportJob.objects.filter(datastore=datastore).count() == 2


def test_a_crashed_listener_spool_becomes_a_job_at_start(store_settings, datastore):
    store.store_configure()
    uploads = store.uploads_dir()
    folder = uploads / "dimse-crashed"
    folder.mkdir()
    shutil.copy(DICOM_DIR / "ELE__CT_small.dcm", folder / "000001.dcm")
    (uploads / "dimse-crashed.json").write_text(json.dumps({
        "datastore_id": datastore.id, "calling_ae_title": "MODALITY", "called_ae_title": "CT_STORE",
        "address": "192.0.2.9"}))
    half_received = uploads / store.INCOMING / "tmp-half.dcm"
    half_received.write_bytes(b"partial")
    os.utime(half_received, (time.time() - 3600, time.time() - 3600))
    live = store.Spool(peer=peer_for(datastore))  # held by this (live) process: left alone
    store.spools_recover()
    [job] = ImportJob.objects.filter(datastore=datastore)
    assert (job.status, job.imported_files, job.calling_ae_title, job.client_token) == (
        JobStatus.COMPLETED, 1, "MODALITY", "dimse-crashed")
    assert not folder.exists() and not (uploads / "dimse-crashed.json").exists()
    assert not half_received.exists()
    assert live.folder.exists() and live.sidecar.exists()
    assert live.submit()  # empty: removed without a job
    assert not live.folder.exists() and not live.sidecar.exists()


def test_a_failed_job_keeps_its_acknowledged_instances(store_settings, datastore, monkeypatch):
    """A C-STORE job that fails as a whole (the blob store away, say) must not delete what was acknowledged."""
    import imaging.pipeline.job as job_module

    def broken(*args, **kwargs):
        raise RuntimeError("blob store unreachable for a moment")

    monkeypatch.setattr(job_module, "_import", broken)
    store.store_configure()
    association = store.AssociationStore(peer_for(datastore))
    association.keep(received(None, FILES[0]))
    folder = association.current.folder
    association.finish()
    [job] = ImportJob.objects.filter(datastore=datastore)
    assert job.status == JobStatus.FAILED
    kept = store.uploads_dir() / "dimse-failed" / job.id
    assert not folder.exists()
    assert [path.name for path in kept.iterdir()] == ["000001.dcm"]
    assert str(kept) in job.message


def test_housekeeping_removes_abandoned_incoming_files(store_settings, settings):
    """An aborted transfer's temporary file goes once nothing has written it for the network timeout."""
    settings.APERTURE_DICOM_TIMEOUT_SECONDS = 30
    store.store_configure()
    incoming = store.uploads_dir() / store.INCOMING
    old, young = incoming / "tmpold.dcm", incoming / "tmpyoung.dcm"
    old.write_bytes(b"\0" * 132)
    young.write_bytes(b"\0" * 132)
    past = time.time() - 31
    os.utime(old, (past, past))
    store.spools_tick()
    assert not old.exists() and young.exists()


def test_the_end_of_an_association_removes_the_data_set_it_was_receiving(store_settings, datastore):
    """EVT_ABORTED / EVT_CONN_CLOSE with a data set half received: its temporary file goes at once."""
    from types import SimpleNamespace

    from pynetdicom import dimse_messages

    store.store_configure()
    partial = dimse_messages.NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")
    partial.write(b"\0" * 128 + b"DICM")
    path = store.Path(partial.name)
    assert path.parent == store.uploads_dir() / store.INCOMING
    message = SimpleNamespace(_data_set_file=partial, _data_set_path=path)
    assoc = SimpleNamespace(dimse=SimpleNamespace(message=message), aperture_peer=peer_for(datastore))
    store.association_end(SimpleNamespace(assoc=assoc))
    assert not path.exists() and partial.closed


def test_a_failed_reimport_of_kept_files_keeps_them(store_settings, datastore):
    from imaging.pipeline.job import discard_uploads

    kept = store.uploads_dir() / "dimse-failed" / "job1"
    kept.mkdir(parents=True)
    (kept / "000001.dcm").write_bytes(b"x")
    job = ImportJob(id="job2", status=JobStatus.FAILED, input_paths=[str(kept)])
    discard_uploads(job)
    assert (kept / "000001.dcm").exists()
    job.status = JobStatus.COMPLETED
    discard_uploads(job)
    assert not kept.exists()
