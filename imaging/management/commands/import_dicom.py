"""`manage.py import_dicom --datastore ID PATH...`: import local files or folders through the same pipeline as
StartDICOMImportJob; the manifests are kept under APERTURE_DATA_DIR/imports/."""
from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from imaging.errors import ApertureError
from imaging.models import ImportJob
from imaging.services.imports import import_job_run, import_job_start_local, manifest_summary


class Command(BaseCommand):
    help = "Import DICOM P10 files or folders (recursively) into a data store."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--datastore", required=True, help="data store id")
        parser.add_argument("--name", default="", help="job name")
        parser.add_argument("paths", nargs="+")

    def handle(self, *args, **options) -> None:
        # Run here, in this process, rather than in a server's worker.
        settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]
        try:
            job = import_job_start_local(datastore_id=options["datastore"], paths=options["paths"],
                                         job_name=options["name"])
        except ApertureError as e:
            raise CommandError(e.message) from e
        job = ImportJob.objects.get(pk=job.pk)
        if job.status not in ("COMPLETED", "FAILED"):
            import_job_run(job_id=job.id)
            job.refresh_from_db()
        if job.status == "FAILED":
            raise CommandError(f"Import job {job.id} failed: {job.message}")
        self.stdout.write(json.dumps(manifest_summary(job)["jobSummary"], indent=1))
