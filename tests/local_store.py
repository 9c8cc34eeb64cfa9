"""In-process import tests' store: a blob folder and data dir under tmp_path, imports in the calling thread, and an
ACTIVE data store; and `manage.py` run in its own process.

Builders only: tests/conftest.py registers the `store_settings` and `datastore` fixtures from them. It must not
import a conftest."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from imaging.models import Datastore
from imaging.services.datastores import datastore_create
from tests.paths import REPO_ROOT


def store_settings_apply(settings: Any, tmp_path: Path) -> Any:
    """Blobs under tmp_path/blobs, the data dir tmp_path, imports in the calling thread; returns `settings`."""
    settings.APERTURE_BLOB_STORE = f"file://{tmp_path / 'blobs'}"
    settings.DATA_DIR = tmp_path
    settings.APERTURE_IMPORT_CONCURRENCY = 0
    return settings


def local_datastore_create(*, name: str = "local") -> Datastore:
    """An ACTIVE data store (provisioned at once by the eager task backend)."""
    return Datastore.objects.get(pk=datastore_create(client_token=generate_uid()[-20:], name=name)["datastoreId"])


def manage_in_own_process(data_dir: Path):
    """`manage.py` in its own process on a fresh data dir (as an operator runs it), and an ACTIVE data store's id."""
    env = {"APERTURE_DATA_DIR": str(data_dir), "PATH": str(Path(sys.executable).parent)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], env=env, capture_output=True, text=True,
                              cwd=REPO_ROOT)

    assert run("migrate", "-v0").returncode == 0
    created = run("shell", "-c", "from django.conf import settings;"
                  "settings.APERTURE_TASK_BACKEND=settings.APERTURE_TASK_BACKEND_ALIASES['eager'];"
                  "from imaging.services.datastores import datastore_create;"
                  "print(datastore_create(client_token='cli', name='cli')['datastoreId'])")
    return run, created.stdout.strip().splitlines()[-1]
