"""Admin pages for import jobs: read-only, refreshed while the job runs, with its manifest and failed files, and for
jobs made of what a DICOM node sent over C-STORE, its calling AE title and address."""
from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from imaging.models import ImportJob
from imaging.pipeline.job import RUNNING
from imaging.services.imports import manifest_summary


class SourceFilter(admin.SimpleListFilter):
    """C-STORE jobs are the ones with a calling AE title (the listener always sets it)."""

    title = "source"
    parameter_name = "source"

    def lookups(self, request, model_admin):
        return [("cstore", "C-STORE"), ("other", "other")]

    def queryset(self, request, queryset):
        if self.value() == "cstore":
            return queryset.exclude(calling_ae_title="")
        if self.value() == "other":
            return queryset.filter(calling_ae_title="")
        return queryset


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "datastore", "status", "calling_ae", "calling_from", "scanned_files",
                    "imported_files", "failed_files", "submitted_at", "ended_at"]
    list_filter = ["status", SourceFilter]
    search_fields = ["id", "name", "calling_ae_title"]
    fields = ["id", "name", "datastore", "status", "message", "input_s3_uri", "output_s3_uri", "calling_ae",
              "calling_from", "scanned_files", "imported_files", "failed_files", "submitted_at", "started_at",
              "ended_at", "manifest", "failures"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        job = ImportJob.objects.filter(pk=object_id).only("status").first()
        if job is not None and job.status in RUNNING:
            response["Refresh"] = "2"  # live counts while the job runs
        return response

    @admin.display(description="Calling AE title", ordering="calling_ae_title")
    def calling_ae(self, obj: ImportJob) -> str:
        return obj.calling_ae_title or "–"

    @admin.display(description="Calling address", ordering="calling_address")
    def calling_from(self, obj: ImportJob) -> str:
        return obj.calling_address or "–"

    @admin.display(description="job-output-manifest.json")
    def manifest(self, obj: ImportJob) -> str:
        if obj.outcome is None:
            return "(written when the job completes)"
        return format_html("<pre>{}</pre>", json.dumps(manifest_summary(obj), indent=1))

    @admin.display(description="Failed files")
    def failures(self, obj: ImportJob) -> str:
        lines = [line for line in (obj.outcome or {}).get("lines", []) if "exception" in line]
        if not lines:
            return "none"
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (line["inputFile"], line["exception"]["exceptionType"], line["exception"]["message"]) for line in lines))
        return format_html("<table><tr><th>File</th><th>Kind</th><th>Reason</th></tr>{}</table>", rows)
