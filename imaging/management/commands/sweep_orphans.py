"""`manage.py sweep_orphans [--dry-run] [--grace-seconds N]`: remove now the frame and metadata blobs that no row
refers to (left by a crash), as the server does at start-up and daily; see imaging/services/orphans.py."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imaging.services.orphans import orphan_blobs_sweep
from imaging.storage import BlobStoreError


class Command(BaseCommand):
    help = "Remove unreferenced frame and metadata blobs older than APERTURE_ORPHAN_GRACE_SECONDS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count the orphans, remove nothing")
        parser.add_argument("--grace-seconds", type=int, default=None,
                            help="keep blobs younger than this (default: APERTURE_ORPHAN_GRACE_SECONDS)")

    def handle(self, *args, **options) -> None:
        if options["grace_seconds"] is not None and options["grace_seconds"] < 0:
            raise CommandError("--grace-seconds must be at least 0")
        try:
            counts = orphan_blobs_sweep(grace_seconds=options["grace_seconds"], dry_run=options["dry_run"])
        except BlobStoreError as e:
            raise CommandError(f"The blob store could not be swept: {e}") from e
        found = f"{counts['listed']} blob(s) listed; {counts['metadata']} metadata and {counts['frames']} frame " \
                f"blob(s) referenced by nothing"
        if options["dry_run"]:
            self.stdout.write(f"{found}; nothing removed (dry run)")
        else:
            self.stdout.write(f"{found}; {counts['removed']} removed")
