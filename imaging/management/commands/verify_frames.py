"""`manage.py verify_frames [--datastore ID] [--sample N]`: re-read stored frames and check them against the CRC-32
checksums recorded at import (bit rot); see imaging/services/scrub.py. Prints each bad frame (image set and frame id)
and exits with status 1 when there is one, so a cron job or a monitoring check can alert on it."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imaging.models import Datastore
from imaging.services.scrub import frames_verify


class Command(BaseCommand):
    help = "Re-read stored frames and verify their checksums; exit status 1 when any frame is bad."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datastore", metavar="ID", help="only this data store (default: every one)")
        parser.add_argument("--sample", type=int, metavar="N", help="a random sample of N frames (default: all)")

    def handle(self, *args, datastore: str | None, sample: int | None, **options) -> None:
        if sample is not None and sample < 1:
            raise CommandError("--sample must be at least 1")
        if datastore and not Datastore.objects.filter(pk=datastore).exists():
            raise CommandError("No such data store")
        scrub = frames_verify(datastore_id=datastore, sample=sample)
        for bad in scrub.bad_frames:
            self.stdout.write(f"BAD image set {bad['imageSetId']} frame {bad['frameId']}: {bad['problem']}")
        self.stdout.write(f"{scrub.frames_checked} frame(s) checked ({scrub.frames_without_checksum} without a "
                          f"checksum: presence and size only), {scrub.frames_bad} bad; recorded as scrub {scrub.pk}")
        if scrub.frames_bad:
            raise SystemExit(1)
