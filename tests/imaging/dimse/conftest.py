"""Fixtures of the DIMSE tests: the in-process archive and a dcmtk storescp destination (tests/dimse_archive.py)."""
from __future__ import annotations

import pytest

from tests.dimse_archive import Archive, StoreSCP, archive_build


@pytest.fixture
def archive(store_settings, tmp_path) -> Archive:
    return archive_build(tmp_path)


@pytest.fixture
def storescp(tmp_path):
    scp = StoreSCP(tmp_path / "received")
    yield scp
    scp.stop()
