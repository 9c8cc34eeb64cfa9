"""`manage.py backup DEST`: the database (one consistent snapshot) and then every blob, into a new folder, while the
server goes on serving; see imaging/services/backup.py for the layout and why the order makes it consistent."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from imaging.services.backup import BackupError, backup_create
from imaging.storage import BlobStoreError


class Command(BaseCommand):
    help = "Back up the database and the blob store into DEST (a new or empty folder)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("destination", metavar="DEST")

    def handle(self, *args, destination: str, **options) -> None:
        try:
            manifest = backup_create(destination=Path(destination))
        except (BackupError, BlobStoreError) as e:
            raise CommandError(f"Backup failed: {e}") from e
        blobs = manifest["blobs"]
        self.stdout.write(f"Backed up the {manifest['database']['engine']} database and {blobs['count']:,} blob(s) "
                          f"({blobs['bytes']:,} bytes) into {destination}; {blobs['vanished']} deleted while copying")
        if blobs["referencedMissing"]:
            self.stderr.write(f"{blobs['referencedMissing']} blob(s) named by the database snapshot were deleted "
                              "before they could be copied (image sets deleted during the backup)")
        if manifest["secrets"]:
            self.stdout.write("The backup holds this server's generated secrets: keep it as safe as the archive.")
