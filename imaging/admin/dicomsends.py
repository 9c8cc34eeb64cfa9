"""Admin pages for DICOM sends ("Send to"): read-only, with their progress, refreshed while a send runs."""
from __future__ import annotations

from django.contrib import admin

from imaging.models import DicomSend, SendStatus


@admin.register(DicomSend)
class DicomSendAdmin(admin.ModelAdmin):
    list_display = ["id", "destination", "datastore", "status", "progress", "requested_by", "submitted_at",
                    "ended_at"]
    list_filter = ["status"]
    search_fields = ["id", "destination", "study_uid", "series_uid"]
    fields = ["id", "datastore", "node", "destination", "study_uid", "series_uid", "requested_by", "status",
              "progress", "total_instances", "sent_instances", "failed_instances", "message", "submitted_at",
              "started_at", "ended_at"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        if DicomSend.objects.filter(status__in=[SendStatus.SUBMITTED, SendStatus.IN_PROGRESS]).exists():
            response["Refresh"] = "3"  # live progress while a send runs
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        send = DicomSend.objects.filter(pk=object_id).only("status").first()
        if send is not None and send.status in (SendStatus.SUBMITTED, SendStatus.IN_PROGRESS):
            response["Refresh"] = "2"
        return response

    @admin.display(description="Progress")
    def progress(self, obj: DicomSend) -> str:
        if not obj.total_instances:
            return "-"
        failed = f", {obj.failed_instances} failed" if obj.failed_instances else ""
        return f"{obj.sent_instances}/{obj.total_instances} sent{failed}"
