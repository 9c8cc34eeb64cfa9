"""The listener gives its database connections back: each association's thread uses one (the peer decision, the
handlers), and with PostgreSQL's pool (here 3 connections, or 2) a leak would refuse the next association. Accepted
and rejected associations alike, and associations that stay open, idle, after their C-ECHO or C-STORE. (On SQLite
these pass trivially.) And connections that never speak cannot pile up threads or hold up a stop."""
from __future__ import annotations

import socket
import time

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from tests.clients import imaging_client, wait_for
from tests.dimse import DicomListener, datastore_ae_set, orm
from tests.imaging.dimse.test_store_live import generated_ct
from tests.servers import ApertureServer

pytestmark = pytest.mark.live


def test_associations_return_their_database_connection():
    server = ApertureServer(extra_env={"APERTURE_DB_POOL_MAX": "3", "APERTURE_DB_POOL_TIMEOUT": "5"}).start()
    listener = DicomListener(server, extra_env={"APERTURE_DB_POOL_MAX": "3", "APERTURE_DB_POOL_TIMEOUT": "5"})
    try:
        listener.start()
        for attempt in range(6):
            assert listener.echo().returncode == 0, (attempt, listener.log()[-800:])
        for attempt in range(6):
            assert "Called AE Title Not Recognized" in listener.echo(called="NOBODY").stderr, attempt
        assert listener.echo().returncode == 0, listener.log()[-800:]
    finally:
        listener.stop()
        server.stop()


def test_idle_associations_hold_no_connection(tmp_path):
    """A pool of 2: a modality idle after its C-STORE and two idle after C-ECHO; a fourth is still accepted at once
    and audited (each used to keep its connection until it ended: the third waited out the pool and was lost)."""
    pool = {"APERTURE_DB_POOL_MAX": "2", "APERTURE_DB_POOL_TIMEOUT": "3"}
    server = ApertureServer(extra_env=pool).start()
    mi = imaging_client(server.url, server.create_key())
    datastore_id = mi.create_datastore(datastoreName="pool")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    datastore_ae_set(server, datastore_id, "POOL1")
    listener = DicomListener(server, extra_env=pool)
    held = []
    try:
        listener.start()
        modality = AE(ae_title="MODALITY")
        modality.add_requested_context(CTImageStorage)
        modality.add_requested_context(Verification)
        stored = modality.associate("127.0.0.1", listener.port, ae_title="POOL1")
        held.append(stored)
        assert stored.is_established
        assert stored.send_c_store(pydicom.dcmread(generated_ct(tmp_path, 1)[0])).Status == 0x0000
        for number in range(3):
            started = time.monotonic()
            association = modality.associate("127.0.0.1", listener.port, ae_title="POOL1")
            held.append(association)
            assert association.is_established, (number, listener.log()[-800:])
            assert time.monotonic() - started < 2.5, number
            assert association.send_c_echo().Status == 0x0000
        audited = orm(server, "from imaging.models import AuditEvent; print(AuditEvent.objects.filter("
                              "event_name='DICOMAssociate', status_code=200).count())")
        assert audited >= 5  # the listener's own start-up echo, then these four
    finally:
        for association in held:
            association.release()
        listener.stop()
        server.stop()


def _silent_connections(port: int, count: int) -> list[socket.socket]:
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.settimeout(0.2)
        connections.append(connection)
    return connections


def _closed_by_listener(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True


def test_silent_connections_are_capped_and_do_not_hold_up_a_stop():
    """APERTURE_DICOM_MAX_ASSOCIATIONS 2: at most 4 connections wait undecided; the rest are closed at once. Once
    they go, C-ECHO answers; a stop does not wait out its grace for connections that never asked anything."""
    server = ApertureServer().start()
    listener = DicomListener(server, extra_env={"APERTURE_DICOM_MAX_ASSOCIATIONS": "2",
                                                "APERTURE_DICOM_SHUTDOWN_SECONDS": "30"})
    try:
        listener.start()
        silent = _silent_connections(listener.port, 30)
        time.sleep(1.0)
        closed = sum(_closed_by_listener(connection) for connection in silent)
        assert closed >= 26, closed
        for connection in silent:
            connection.close()
        wait_for(lambda: listener.echo().returncode == 0, timeout=10, what="C-ECHO after the silent connections")
        silent = _silent_connections(listener.port, 4)
        time.sleep(0.5)
        started = time.monotonic()
        assert listener.stop() == 0
        assert time.monotonic() - started < 10
        for connection in silent:
            connection.close()
    finally:
        listener.stop()
        server.stop()
