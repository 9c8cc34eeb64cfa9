"""How settings turn DATABASE_URL and APERTURE_DB_POOL_* into Django's DATABASES (issue 13 item 4): never persistent
connections, a bounded pool per process on PostgreSQL, none when the pool is turned off, a bad bound refused at start.
(tests/e2e/test_db_connections_live.py proves the bound against a live PostgreSQL.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.paths import REPO_ROOT

SHOW = ("import json; from config import settings; d = settings.DATABASES['default'];"
        "print(json.dumps({'age': d['CONN_MAX_AGE'], 'pool': d.get('OPTIONS', {}).get('pool'),"
        " 'checks': d['CONN_HEALTH_CHECKS']}))")
SECRETS = {"DJANGO_SECRET_KEY": "a-shared-secret-key-for-every-process-of-this-site",
           "APERTURE_KEY_ENCRYPTION_KEY": "Q0hBTkdFTUVDSEFOR0VNRUNIQU5HRU1FQ0hBTkdFTUU="}


def settings_with(tmp_path, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APERTURE_DB_POOL", "DJANGO_SETTINGS"))}
    return subprocess.run([sys.executable, "-c", SHOW], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, "APERTURE_DATA_DIR": str(tmp_path), **SECRETS, **env})


def database(tmp_path, **env: str) -> dict:
    result = settings_with(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_postgresql_gets_a_bounded_pool_and_no_persistent_connections(tmp_path):
    shown = database(tmp_path, DATABASE_URL="postgres://root@127.0.0.1:5432/anything")
    assert shown == {"age": 0, "pool": {"min_size": 0, "max_size": 10, "timeout": 30}, "checks": True}
    shown = database(tmp_path, DATABASE_URL="postgres://root@127.0.0.1:5432/anything", APERTURE_DB_POOL_MAX="4",
                     APERTURE_DB_POOL_MIN="1", APERTURE_DB_POOL_TIMEOUT="5")
    assert shown["pool"] == {"min_size": 1, "max_size": 4, "timeout": 5}


def test_with_the_pool_off_each_request_opens_and_closes_its_own_connection(tmp_path):
    shown = database(tmp_path, DATABASE_URL="postgres://root@127.0.0.1:5432/anything", APERTURE_DB_POOL_MAX="0")
    assert shown["age"] == 0 and shown["pool"] is None


def test_a_pool_minimum_above_its_maximum_is_refused(tmp_path):
    result = settings_with(tmp_path, DATABASE_URL="postgres://root@127.0.0.1:5432/anything", APERTURE_DB_POOL_MAX="2",
                           APERTURE_DB_POOL_MIN="3")
    assert result.returncode != 0 and "APERTURE_DB_POOL_MIN must be at most APERTURE_DB_POOL_MAX (2)" in result.stderr
