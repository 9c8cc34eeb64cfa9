"""APERTURE_DICOM_ALLOW_ANY's default: true only for a listener nothing off this machine can reach (a loopback
APERTURE_DICOM_HOST) and not with Celery; an explicit value always wins."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from imaging.addresses import host_is_loopback
from tests.config.test_database_settings import SECRETS
from tests.paths import REPO_ROOT

SHOW = "from config import settings; print(settings.APERTURE_DICOM_ALLOW_ANY)"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("LocalHost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False), ("pacs.example.org", False),
    ("", False),
])
def test_host_is_loopback(host, loopback):
    assert host_is_loopback(host) is loopback


def allow_any(tmp_path, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APERTURE_DICOM", "APERTURE_TASK",
                                                                       "DJANGO_SETTINGS"))}
    result = subprocess.run([sys.executable, "-c", SHOW], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={**base, "APERTURE_DATA_DIR": str(tmp_path), **SECRETS, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "True"),
    ({"APERTURE_DICOM_HOST": "localhost"}, "True"),
    ({"APERTURE_DICOM_HOST": "0.0.0.0"}, "False"),
    ({"APERTURE_DICOM_HOST": "10.0.0.5"}, "False"),
    ({"APERTURE_DICOM_HOST": "0.0.0.0", "APERTURE_DICOM_ALLOW_ANY": "true"}, "True"),
    ({"APERTURE_DICOM_ALLOW_ANY": "false"}, "False"),
], ids=["loopback default", "localhost", "any address", "a LAN address", "explicit true", "explicit false"])
def test_allow_any_default(tmp_path, env, expected):
    assert allow_any(tmp_path, **env) == expected
