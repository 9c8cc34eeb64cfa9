"""Fixtures for in-process import tests: a blob folder and data dir under tmp_path, imports in the calling thread,
and an ACTIVE data store."""
from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from imaging.models import Datastore
from imaging.services.datastores import datastore_create


@pytest.fixture
def store_settings(settings, tmp_path):
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    return settings


@pytest.fixture
def datastore(store_settings) -> Datastore:
    return Datastore.objects.get(pk=datastore_create(client_token=generate_uid()[-20:], name="local")["datastoreId"])
