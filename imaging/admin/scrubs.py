"""Admin pages for frame scrubs (`manage.py verify_frames`): read-only, one row per run, with its bad frames."""
from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from imaging.models import FrameScrub


def bad_frames_table(scrub: FrameScrub) -> str:
    if not scrub.bad_frames:
        return "none"
    rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", (
        (bad["imageSetId"], bad["frameId"], bad["problem"]) for bad in scrub.bad_frames))
    return format_html("<table><tr><th>Image set</th><th>Frame</th><th>Problem</th></tr>{}</table>", rows)


@admin.register(FrameScrub)
class FrameScrubAdmin(admin.ModelAdmin):
    list_display = ["id", "datastore_id", "started_at", "ended_at", "sample_size", "frames_checked", "frames_bad"]
    search_fields = ["datastore_id"]
    fields = ["datastore_id", "started_at", "ended_at", "sample_size", "frames_checked", "frames_without_checksum",
              "frames_bad", "bad_frames_found"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Bad frames")
    def bad_frames_found(self, obj: FrameScrub) -> str:
        return bad_frames_table(obj)
