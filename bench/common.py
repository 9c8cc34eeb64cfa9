"""Shared set-up for the benchmarks: a throw-away data directory and database, migrated, torn down after."""
from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


@contextmanager
def throwaway_store(prefix: str) -> Iterator[None]:
    """Django set up on a temp data dir (SQLite), or a fresh database beside DATABASE_URL's (PostgreSQL)."""
    os.environ["APERTURE_DATA_DIR"] = tempfile.mkdtemp(prefix=prefix)
    database = None
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        from tests.servers import PostgresDatabase

        database = PostgresDatabase(os.environ["DATABASE_URL"])
        database.create()
        os.environ["DATABASE_URL"] = database.url
        from tests.scale_secrets import scale_secrets_provide

        scale_secrets_provide()  # at scale the settings require shared secrets
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    try:
        call_command("migrate", verbosity=0)
        yield
    finally:
        connection.close()
        if database:
            database.drop()
