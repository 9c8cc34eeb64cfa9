"""A pytest plugin (pytest.ini: `-p tests.scale_secrets`) that gives a test run on PostgreSQL the shared secrets a
deployment at scale must be given (config/secret_files.py): settings refuse to load without them.

It runs before pytest-django imports the settings, and sets them in this process's environment, so every server,
worker and `manage.py` subprocess the tests start inherits the same pair, as an operator's processes would. Values
already in the environment are kept. Tests of the refusal remove them from the environment they pass on. The
benchmarks (bench/common.py) call the same function for their throw-away databases."""
from __future__ import annotations

import os
import secrets

from cryptography.fernet import Fernet


def scale_secrets_provide() -> None:
    """A fresh pair for this run, unless DATABASE_URL is unset or SQLite (where they are generated per data folder)."""
    if not (os.environ.get("DATABASE_URL") or "sqlite:").startswith("sqlite"):
        os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
        os.environ.setdefault("APERTURE_KEY_ENCRYPTION_KEY", Fernet.generate_key().decode())


scale_secrets_provide()
