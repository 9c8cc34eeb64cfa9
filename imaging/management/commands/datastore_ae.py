"""`manage.py datastore_ae --datastore ID --ae-title TITLE` (or `--clear`): the AE title DICOM nodes call to store
into, query or retrieve from a data store (imaging.services.dicom_nodes.datastore_ae_title_set: checked, unique,
audited)."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from imaging.errors import ApertureError
from imaging.services.dicom_nodes import Actor, datastore_ae_title_set


class Command(BaseCommand):
    help = "Set or clear the AE title that picks a data store for DICOM networking."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datastore", required=True, help="the data store id")
        title = parser.add_mutually_exclusive_group(required=True)
        title.add_argument("--ae-title", help="1 to 16 printable characters, no backslash")
        title.add_argument("--clear", action="store_true", help="remove the data store's AE title")

    def handle(self, *args, **options) -> None:
        ae_title = None if options["clear"] else options["ae_title"]
        try:
            datastore_ae_title_set(actor=Actor(user_agent="manage.py datastore_ae"),
                                   datastore_id=options["datastore"], ae_title=ae_title)
        except ApertureError as e:
            raise CommandError(e.message) from e
        if ae_title is None:
            self.stdout.write(f"Data store {options['datastore']} has no AE title now")
        else:
            self.stdout.write(f"Data store {options['datastore']} is called {ae_title}")
