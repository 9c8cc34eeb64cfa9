"""`manage.py tiering_sweep`: move image sets untouched for APERTURE_TIERING_DAYS to ARCHIVE_INSTANT_ACCESS now
(the server also runs this daily by itself)."""
from __future__ import annotations

from django.core.management.base import BaseCommand

from imaging.services.imageset_writes import imagesets_archive_sweep


class Command(BaseCommand):
    help = "Run the storage-tier sweep once."

    def handle(self, *args, **options) -> None:
        self.stdout.write(f"{imagesets_archive_sweep()} image set(s) moved to ARCHIVE_INSTANT_ACCESS")
