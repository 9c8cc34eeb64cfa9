"""Secrets at start-up (issue 13 item 5): processes starting together on one fresh data folder all read the same
generated secrets and none crashes; at scale a process without the shared secrets refuses to start and says which
variables it needs."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.paths import REPO_ROOT

pytestmark = pytest.mark.slow

# Each child imports everything settings need, then waits at the barrier (one pipe shared by all, on its standard
# input) so that all of them read or generate the secrets at the same moment, not one Python start-up apart.
CHILD = """
import os, sys, dj_database_url, cryptography.fernet, django.core.exceptions, config.env, config.secret_files
os.read(0, 1)
from config import settings
print(settings.SECRET_KEY, settings.APERTURE_KEY_ENCRYPTION_KEY)
"""
PROCESSES = 12
ROUNDS = 8


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DJANGO_SECRET_KEY", "APERTURE_KEY_ENCRYPTION_KEY")}
    return {**env, **extra}


def start_together(data_dir: Path) -> list[subprocess.CompletedProcess]:
    env = child_env(APERTURE_DATA_DIR=str(data_dir))
    barrier, opener = os.pipe()
    try:
        children = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO_ROOT, env=env, stdin=barrier,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for _ in range(PROCESSES)]
    finally:
        os.close(barrier)
        os.close(opener)  # end of file for every child at once: the barrier opens
    results = []
    for child in children:
        child.wait(timeout=120)  # what each prints is far below a pipe's buffer
        results.append(subprocess.CompletedProcess(child.args, child.returncode, child.stdout.read(),
                                                   child.stderr.read()))
    return results


def test_processes_starting_together_on_a_fresh_folder_share_one_pair_of_secrets():
    for _ in range(ROUNDS):
        with tempfile.TemporaryDirectory(prefix="aperture-secrets-") as folder:
            results = start_together(Path(folder))
            failed = [r.stderr.strip().splitlines()[-1:] for r in results if r.returncode != 0]
            assert not failed, failed
            pairs = {tuple(r.stdout.split()) for r in results}
            assert len(pairs) == 1, pairs
            secret_key, encryption_key = pairs.pop()
            assert len(secret_key) >= 50 and len(encryption_key) == 44
            assert (Path(folder) / "django-secret-key").read_text() == secret_key
            assert sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".")) == []  # no leftovers
            assert (Path(folder) / "key-encryption-key").stat().st_mode & 0o077 == 0


AT_SCALE = {"DATABASE_URL": "postgres://root@127.0.0.1:5432/never_created"}


def start_at_scale(tmp_path, argv: list[str], **given: str) -> str:
    """What a process at scale says when it refuses to start (its last line on stderr); fails if it starts."""
    env = child_env(APERTURE_DATA_DIR=str(tmp_path), APERTURE_TASKS="celery", REDIS_URL="redis://127.0.0.1:6379/12",
                    **AT_SCALE, **given)
    result = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert not (tmp_path / "django-secret-key").exists()  # nothing generated where it would not be shared
    return result.stderr.strip().splitlines()[-1]


def named(message: str) -> set[str]:
    assert "ImproperlyConfigured" in message and "must be set when DATABASE_URL names a shared database" in message
    return {name for name in ("DJANGO_SECRET_KEY", "APERTURE_KEY_ENCRYPTION_KEY")
            if name in message.split(" must be set")[0]}


@pytest.mark.parametrize("argv", [
    ["manage.py", "migrate", "--noinput"],
    ["manage.py", "serve", "127.0.0.1:1"],
    ["-m", "celery", "-A", "config.celery", "worker", "--pool=solo"],
], ids=["migrate", "serve", "celery-worker"])
def test_at_scale_a_process_without_the_shared_secrets_refuses_to_start(tmp_path, argv):
    assert named(start_at_scale(tmp_path, argv)) == {"DJANGO_SECRET_KEY", "APERTURE_KEY_ENCRYPTION_KEY"}


@pytest.mark.parametrize("given, missing", [
    ({"DJANGO_SECRET_KEY": "a-shared-secret-key-for-every-process-of-this-site"}, {"APERTURE_KEY_ENCRYPTION_KEY"}),
    ({"APERTURE_KEY_ENCRYPTION_KEY": "Q0hBTkdFTUVDSEFOR0VNRUNIQU5HRU1FQ0hBTkdFTUU="}, {"DJANGO_SECRET_KEY"}),
], ids=["no-encryption-key", "no-secret-key"])
def test_the_refusal_names_only_the_missing_secret(tmp_path, given, missing):
    assert named(start_at_scale(tmp_path, ["manage.py", "migrate", "--noinput"], **given)) == missing


def test_a_key_encryption_key_that_is_not_a_fernet_key_is_refused_at_start(tmp_path):
    env = child_env(APERTURE_DATA_DIR=str(tmp_path), APERTURE_KEY_ENCRYPTION_KEY="not-a-key")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "APERTURE_KEY_ENCRYPTION_KEY must be a Fernet key" in result.stderr
