"""Admin pages for the audit trail: read-only, searchable, exported as JSON lines (the filtered list or a
selection, through one helper)."""
from __future__ import annotations

from typing import Iterable

from django.contrib import admin
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path

from imaging.models import AuditEvent
from imaging.services.audit import audit_export_lines


def _json_lines_download(events: Iterable[AuditEvent]) -> StreamingHttpResponse:
    """`events` as a JSON-lines attachment, streamed: an export can be the whole trail."""
    response = StreamingHttpResponse(audit_export_lines(events), content_type="application/x-ndjson")
    response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
    return response


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["event_time", "event_name", "username", "source_ip", "datastore_id", "patient_id",
                    "study_instance_uid", "status_code", "error_code"]
    list_filter = ["event_category", "event_type", "read_only", "event_name"]
    search_fields = ["username", "patient_id", "study_instance_uid", "event_name", "access_key_id"]
    date_hierarchy = "event_time"
    actions = ["export_json_lines"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.method in ("GET", "HEAD") and super().has_view_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        extra = [path("export.jsonl", self.admin_site.admin_view(self.export_view), name="imaging_auditevent_export")]
        return extra + super().get_urls()

    def export_view(self, request: HttpRequest):
        """The events matching the changelist's search and filters, as JSON lines."""
        changelist = self.get_changelist_instance(request)
        return _json_lines_download(changelist.get_queryset(request).order_by("event_time").iterator())

    @admin.action(description="Export selected events as JSON lines")
    def export_json_lines(self, request, queryset):
        return _json_lines_download(queryset.order_by("event_time").iterator())
