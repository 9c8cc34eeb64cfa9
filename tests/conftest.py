"""Shared fixtures: a live Aperture server with personas' access keys, boto3 clients for it, the viewer's imported
study in process, and the in-process import store (`store_settings`, `datastore`).

This module only registers fixtures and pytest hooks. What they are built from lives in plain modules that never
import a conftest: tests/paths.py, tests/clients.py, tests/personas.py, tests/servers.py, tests/viewer_study.py,
tests/local_store.py."""
from __future__ import annotations

import gc
import os

import pytest

from imaging.models import Datastore
from tests import personas
from tests.clients import imaging_client, wait_for
from tests.local_store import local_datastore_create, store_settings_apply
from tests.s3 import SeaweedS3
from tests.servers import ApertureServer
from tests.viewer_study import ViewerData, viewer_study_create


@pytest.fixture(scope="session")
def seaweed():
    store = SeaweedS3().start()
    yield store
    store.stop()


@pytest.fixture(scope="session")
def s3(seaweed):
    return seaweed.client()


@pytest.fixture(scope="session")
def server(seaweed):
    instance = ApertureServer(extra_env=seaweed.env()).start()
    instance.admin_key = personas.live_key(instance)
    instance.readonly_key = personas.live_key(instance, policy=personas.READ_ONLY)
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def mi(server):
    """A full-access medical-imaging client."""
    return imaging_client(server.url, server.admin_key)


@pytest.fixture(scope="session")
def mi_raw(server):
    """A full-access client that sends what it is given, without botocore's own parameter checks."""
    return imaging_client(server.url, server.admin_key, validate=False)


@pytest.fixture(scope="session")
def mi_readonly(server):
    return imaging_client(server.url, server.readonly_key)


@pytest.fixture
def active_datastore(mi):
    created = mi.create_datastore(datastoreName="test-store")
    datastore_id = created["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    return datastore_id


def _flush_through_the_prune_window() -> None:
    """SQLite empties tables between transactional tests with DELETE (PostgreSQL uses TRUNCATE, which row triggers
    do not see), and the audit table's trigger refuses that DELETE as it should. The flush opens the same prune
    window `manage.py audit_prune` uses, for all time, inside its own transaction."""
    from django.db.backends.sqlite3.base import DatabaseOperations  # (via base: operations alone is circular)

    plain_flush = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, **kwargs):
        statements = plain_flush(self, style, tables, **kwargs)
        if "imaging_auditevent" not in tables:
            return statements
        from imaging.services.audit_retention import PRUNE_WINDOW_TABLE

        return [f"INSERT INTO {PRUNE_WINDOW_TABLE} (prune_before) VALUES ('9999-12-31 23:59:59')", *statements,
                f"DELETE FROM {PRUNE_WINDOW_TABLE}"]

    DatabaseOperations.sql_flush = sql_flush


def pytest_configure(config):
    _flush_through_the_prune_window()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """On PostgreSQL, collect garbage before a test's fixtures are torn down. A generator a test left unfinished
    (a `queryset.iterator()` behind a streamed response it did not read to the end, say) holds a server-side
    cursor; left to the collector it is closed whenever the collector runs, once that was inside the database
    flush of a later test's teardown, where psycopg's connection lock, already held by the flush's own query, made
    the close wait forever. Collected here, between tests, the connection is idle."""
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        gc.collect()


@pytest.fixture(autouse=True)
def _eager_tasks_in_process(settings):
    """In-process (non-live) tests run background tasks in the calling thread after commit."""
    settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]


@pytest.fixture
def viewer_data(settings, tmp_path) -> ViewerData:
    """A small imported study with its clinician and an outsider (tests/viewer_study.py)."""
    return viewer_study_create(settings=settings, tmp_path=tmp_path)


@pytest.fixture
def store_settings(settings, tmp_path):
    """Blobs and the data dir under tmp_path, imports in the calling thread (tests/local_store.py)."""
    return store_settings_apply(settings, tmp_path)


@pytest.fixture
def datastore(store_settings) -> Datastore:
    """An ACTIVE data store in `store_settings`' blob folder."""
    return local_datastore_create()
