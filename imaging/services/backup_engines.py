"""The database half of a backup (imaging/services/backup.py): a consistent snapshot of the configured database into
a file, and that file back into an empty database. One class per engine, chosen by Django's vendor name.

- SQLite: the online backup API (`sqlite3.Connection.backup`) copies every page inside one read transaction, so the
  copy is the database as of one moment while the server goes on writing (WAL mode: readers do not block writers).
  Restoring runs the same API the other way, which replaces the target's content whole (no stale -wal file survives).
- PostgreSQL: `pg_dump --format=custom` (one repeatable-read snapshot) and `pg_restore`. Data is loaded before the
  triggers are created, so the audit table's append-only triggers (migration 0008) do not stand in the way; with
  `--force` the old tables are dropped first (`--clean`), which no row trigger sees. The connection's password goes
  to the tools in their environment (PGPASSWORD), never on a command line others can read.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from django.db import connections
from django.db.migrations.recorder import MigrationRecorder



class BackupError(Exception):
    """A backup or restore cannot go on; the message says why, in words for the operator."""


class DatabaseBackup:
    vendor = ""
    filename = ""

    def snapshot(self, destination: Path) -> None:
        raise NotImplementedError

    def restore(self, snapshot: Path, *, replace: bool) -> None:
        raise NotImplementedError

    def applied_migrations(self, snapshot: Path) -> list[list[str]]:
        """(app, migration name) pairs applied in the snapshot."""
        raise NotImplementedError

    def referenced_blobs(self, snapshot: Path) -> set[str] | None:
        """Every blob key rows of the snapshot name, where the snapshot can be read without restoring it."""
        return None

    def is_empty(self) -> bool:
        return not connections["default"].introspection.table_names()


class SqliteBackup(DatabaseBackup):
    vendor, filename = "sqlite", "database.sqlite3"

    def __init__(self) -> None:
        self.path = Path(connections["default"].settings_dict["NAME"])

    def snapshot(self, destination: Path) -> None:
        source = sqlite3.connect(self.path, timeout=30)
        target = sqlite3.connect(destination)
        try:
            source.backup(target)  # all pages in one step: one read transaction, one moment
        finally:
            target.close()
            source.close()

    def restore(self, snapshot: Path, *, replace: bool) -> None:
        connections.close_all()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(snapshot)
        target = sqlite3.connect(self.path, timeout=30)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()

    def _query(self, snapshot: Path, sql: str) -> list[tuple]:
        with sqlite3.connect(f"{snapshot.as_uri()}?mode=ro", uri=True) as db:
            return db.execute(sql).fetchall()

    def applied_migrations(self, snapshot: Path) -> list[list[str]]:
        return [[app, name] for app, name in self._query(
            snapshot, "SELECT app, name FROM django_migrations ORDER BY app, name")]

    def referenced_blobs(self, snapshot: Path) -> set[str]:
        return {key for (key,) in self._query(snapshot, "SELECT blob_key FROM imaging_imageframe UNION "
                                                        "SELECT metadata_key FROM imaging_imagesetversion")}

    def is_empty(self) -> bool:
        if not self.path.exists():
            return True
        with sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True) as db:
            return not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").fetchall()


class PostgresBackup(DatabaseBackup):
    vendor, filename = "postgresql", "database.pgdump"

    def _environment(self) -> dict[str, str]:
        database = connections["default"].settings_dict
        env = dict(os.environ)
        for variable, value in (("PGHOST", database.get("HOST")), ("PGPORT", database.get("PORT")),
                                ("PGUSER", database.get("USER")), ("PGPASSWORD", database.get("PASSWORD")),
                                ("PGDATABASE", database.get("NAME")),
                                ("PGSSLMODE", database.get("OPTIONS", {}).get("sslmode"))):
            if value:
                env[variable] = str(value)
        return env

    def _run(self, tool: str, *args: str) -> None:
        if shutil.which(tool) is None:
            raise BackupError(f"{tool} is not installed (Debian: postgresql-client, of the server's version or newer)")
        result = subprocess.run([tool, *args], env=self._environment(), capture_output=True, text=True)
        if result.returncode != 0:
            raise BackupError(f"{tool} failed: {result.stderr.strip()[-2000:]}")

    def snapshot(self, destination: Path) -> None:
        self._run("pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={destination}")

    def restore(self, snapshot: Path, *, replace: bool) -> None:
        connections.close_all()
        clean = ["--clean", "--if-exists"] if replace else []
        self._run("pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", *clean,
                  "--dbname", self._environment()["PGDATABASE"], str(snapshot))

    def applied_migrations(self, snapshot: Path) -> list[list[str]]:
        # Read from the live database just after the dump: migrations do not run while a backup is taken.
        return sorted([app, name] for app, name in MigrationRecorder(connections["default"]).applied_migrations())


def database_backup() -> DatabaseBackup:
    vendor = connections["default"].vendor
    if vendor == "sqlite":
        return SqliteBackup()
    if vendor == "postgresql":
        return PostgresBackup()
    raise BackupError(f"backups of a {vendor} database are not supported")
