"""The listener gives its database connections back: each association's thread uses one (the peer decision, the
handlers), and with PostgreSQL's pool (here 3 connections) a leak would refuse the fourth association. Accepted
and rejected associations alike. (On SQLite this passes trivially.)"""
from __future__ import annotations

import pytest

from tests.dimse import DicomListener
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
