"""`manage.py search_index_rebuild [--datastore ID] [--all]`: refill image sets' search columns and the study index
from their metadata documents (see imaging/services/search_index.py). Run once after upgrading to a release that
adds search columns (the QIDO-RS attributes of migration 0013); by default only image sets never filled are read."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imaging.models import Datastore
from imaging.services.search_index import search_index_rebuild


class Command(BaseCommand):
    help = "Refill image sets' search columns and the study index from their metadata documents."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datastore", metavar="ID", help="only this data store (default: every one)")
        parser.add_argument("--all", action="store_true", help="every image set, not only those never filled")

    def handle(self, *args, datastore: str | None, all: bool, **options) -> None:
        if datastore and not Datastore.objects.filter(pk=datastore).exists():
            raise CommandError("No such data store")
        refilled = search_index_rebuild(datastore_id=datastore, only_missing=not all)
        self.stdout.write(f"{refilled} image set(s) refilled")
