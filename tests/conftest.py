"""Shared fixtures: a live Aperture server with personas' access keys, and boto3 clients for it."""
from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from tests.s3 import SeaweedS3
from tests.servers import ApertureServer

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
DICOM_DIR = SHARED / "dicom"


def imaging_client(url: str, key: dict[str, str], *, validate: bool = True):
    return boto3.client(
        "medical-imaging",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(inject_host_prefix=False, parameter_validation=validate, retries={"max_attempts": 1}),
    )


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
    instance.admin_key = instance.create_key()
    instance.readonly_key = instance.create_key(policy="AWSHealthImagingReadOnlyAccess")
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


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


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


@pytest.fixture(autouse=True)
def _eager_tasks_in_process(settings):
    """In-process (non-live) tests run background tasks in the calling thread after commit."""
    settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]



# The viewer's in-process fixture (an imported study and personas), shared by the viewer and security tests.
from tests.viewer_fixtures import viewer_data  # noqa: E402,F401
