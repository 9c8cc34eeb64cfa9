"""`manage.py restore SRC [--force]`: a backup made by `manage.py backup` into the configured database and blob
store, which must be empty (a fresh data dir, or a new database and bucket) unless --force. Stop every server and
worker of the archive first; see imaging/services/backup.py."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imaging.services.backup import BackupError, backup_restore
from imaging.storage import BlobStoreError


class Command(BaseCommand):
    help = "Restore a backup into an empty database and blob store (--force: replace what they hold)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("source", metavar="SRC")
        parser.add_argument("--force", action="store_true",
                            help="replace the database's and the blob store's current contents")

    def handle(self, *args, source: str, force: bool, **options) -> None:
        try:
            restored = backup_restore(source=Path(source), replace=force)
        except (BackupError, BlobStoreError) as e:
            raise CommandError(f"Restore failed: {e}") from e
        self.stdout.write(f"Restored the {restored['database']} database and {restored['blobs']:,} blob(s).")
        if restored["migrateNeeded"]:
            self.stdout.write("The backup is older than this code: run `manage.py migrate` before starting.")
