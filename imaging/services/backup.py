"""Backup and restore of a whole archive (issue 13 item 9): `manage.py backup DEST` and `manage.py restore SRC`.

A backup is a folder:

    manifest.json        written last: a folder without it is not a backup
    database.sqlite3     SQLite, or database.pgdump (pg_dump's custom format) for PostgreSQL (backup_engines.py)
    blobs/<key>          every object of the blob store (a folder or S3), under its store key
    data/                the embedded default's own files from APERTURE_DATA_DIR: the generated secrets
                         (django-secret-key, key-encryption-key; absent when they come from the environment) and the
                         manifests of local imports (imports/)

Consistent while the server runs, because of the order. Blobs are written before the rows that name them commit,
and a blob is never changed in place (a new version is a new key). So the database is copied first, as one snapshot,
and the blobs after it: every blob a row of the snapshot names already existed when the snapshot was taken, and is
copied unless something deleted it meanwhile. Blobs written after the snapshot are copied too, or not; in the
restored archive nothing names them and the orphan sweep removes them. A blob deleted between listing and reading is
skipped, not an error (`blobs.vanished`); where the snapshot can be read back (SQLite) the manifest also counts the
blobs its rows name that the copy lacks (`blobs.referencedMissing`, a deletion that raced the backup; 0 normally).

The manifest holds file paths and sizes (checked before a restore begins), the database engine and its applied
migrations, and nothing about patients or credentials. The folder does hold the secrets of an embedded install and
every patient's data: keep it as the archive itself is kept.

Restore goes into an empty database and an empty blob store, and refuses anything else unless `replace` (--force).
It refuses a backup whose migrations this code does not have (made by a newer Aperture); a backup older than the
code needs `manage.py migrate` afterwards.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.db.migrations.loader import MigrationLoader
from django.db import connections

from imaging.services.backup_engines import BackupError, database_backup
from imaging.storage import blob_store

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
BLOBS = "blobs"
DATA = "data"
SECRET_FILES = {"django-secret-key": "DJANGO_SECRET_KEY", "key-encryption-key": "APERTURE_KEY_ENCRYPTION_KEY"}
DATA_FOLDERS = ("imports",)

__all__ = ["BackupError", "backup_create", "backup_restore"]


def _safe_path(root: Path, relative: str) -> Path:
    """`relative` below `root`; keys and manifest paths never climb out of the backup folder."""
    path = (root / relative).resolve()
    if not str(path).startswith(str(root.resolve()) + os.sep):
        raise BackupError(f"a path leaves the backup folder: {relative!r}")
    return path


def _write(root: Path, relative: str, data: bytes, files: list[dict[str, Any]]) -> None:
    path = _safe_path(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    files.append({"path": relative, "size": len(data)})


def _copy_blobs(destination: Path, files: list[dict[str, Any]]) -> tuple[int, int, set[str]]:
    store = blob_store()
    copied, vanished, keys = 0, 0, set()
    for info in store.list_blobs(""):
        data = store.get(info.key)
        if data is None:  # deleted since it was listed: its rows are gone from any later snapshot too
            vanished += 1
            continue
        _write(destination, f"{BLOBS}/{info.key}", data, files)
        copied += len(data)
        keys.add(info.key)
    return copied, vanished, keys


def _copy_data_files(destination: Path, files: list[dict[str, Any]]) -> list[str]:
    data_dir = Path(settings.DATA_DIR)
    secrets = []
    for filename, variable in SECRET_FILES.items():
        if not os.environ.get(variable) and (data_dir / filename).is_file():
            _write(destination, f"{DATA}/{filename}", (data_dir / filename).read_bytes(), files)
            secrets.append(filename)
    for folder in DATA_FOLDERS:
        for path in sorted((data_dir / folder).rglob("*")):
            try:
                if path.is_file() and not path.is_symlink():
                    _write(destination, f"{DATA}/{path.relative_to(data_dir).as_posix()}", path.read_bytes(), files)
            except FileNotFoundError:
                continue
    return secrets


def backup_create(*, destination: Path) -> dict[str, Any]:
    """Back the configured database and blob store up into `destination` (new or empty); returns the manifest."""
    destination = Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise BackupError(f"{destination} exists and is not an empty folder")
    destination.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = database_backup()
    started = datetime.now(timezone.utc)
    snapshot = destination / engine.filename
    engine.snapshot(snapshot)  # first: see the module docstring for why the order makes the backup consistent
    files = [{"path": engine.filename, "size": snapshot.stat().st_size}]
    blob_bytes, vanished, copied_keys = _copy_blobs(destination, files)
    referenced = engine.referenced_blobs(snapshot)
    secrets = _copy_data_files(destination, files)
    manifest = {
        "format": FORMAT,
        "createdAt": started.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "database": {"engine": engine.vendor, "file": engine.filename},
        "blobStore": urlparse(settings.APERTURE_BLOB_STORE).scheme,
        "migrations": engine.applied_migrations(snapshot),
        "blobs": {"count": len(copied_keys), "bytes": blob_bytes, "vanished": vanished,
                  "referencedMissing": None if referenced is None else len(referenced - copied_keys)},
        "secrets": secrets,
        "files": files,
    }
    (destination / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError as e:
        raise BackupError(f"{source} has no {MANIFEST}: not a backup, or one that did not finish") from e
    except ValueError as e:
        raise BackupError(f"{source / MANIFEST} is not valid JSON") from e
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not {FORMAT}")
    for entry in manifest["files"]:
        path = _safe_path(source, entry["path"])
        if not path.is_file() or path.stat().st_size != entry["size"]:
            raise BackupError(f"the backup is damaged: {entry['path']} is missing or not {entry['size']} bytes")
    return manifest


def _unknown_migrations(applied: list[list[str]]) -> list[str]:
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    return [f"{app}.{name}" for app, name in applied if (app, name) not in known]


def _pending_migrations(applied: list[list[str]]) -> bool:
    known = set(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)
    return bool(known - {tuple(pair) for pair in applied})


def backup_restore(*, source: Path, replace: bool = False) -> dict[str, Any]:
    """Restore the backup in `source` into the configured (empty) database and blob store; with `replace`, over
    whatever they hold. Returns what was restored and whether `migrate` must run next."""
    source = Path(source)
    manifest = _manifest(source)
    engine = database_backup()
    if manifest["database"]["engine"] != engine.vendor:
        raise BackupError(f"the backup holds a {manifest['database']['engine']} database; this server is configured "
                          f"for {engine.vendor}")
    unknown = _unknown_migrations(manifest["migrations"])
    if unknown:
        raise BackupError(f"the backup was made by a newer Aperture (migrations {', '.join(unknown[:5])})")
    store = blob_store()
    store_empty = next(iter(store.list_blobs("")), None) is None
    if not replace and not (engine.is_empty() and store_empty):
        raise BackupError("the database or the blob store is not empty; restore into an empty (not migrated) "
                          "database and an empty blob store, or pass --force to replace what they hold")
    engine.restore(source / manifest["database"]["file"], replace=replace)
    if replace and not store_empty:
        for info in list(store.list_blobs("")):
            store.delete(info.key)
    data_dir = Path(settings.DATA_DIR)
    restored_blobs = 0
    for entry in manifest["files"]:
        relative = entry["path"]
        if relative.startswith(f"{BLOBS}/"):
            store.put(relative[len(BLOBS) + 1:], _safe_path(source, relative).read_bytes())
            restored_blobs += 1
        elif relative.startswith(f"{DATA}/"):
            name = relative[len(DATA) + 1:]
            if name in SECRET_FILES and os.environ.get(SECRET_FILES[name]):
                continue  # this process is given its secrets by the environment; they must match the backup's
            target = _safe_path(data_dir, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_safe_path(source, relative), target)
            if name in SECRET_FILES:
                target.chmod(0o600)
    connections.close_all()
    return {"database": manifest["database"]["engine"], "blobs": restored_blobs,
            "migrateNeeded": _pending_migrations(manifest["migrations"])}
