"""Admin pages for image sets: read-only, with their versions and the current metadata document (through
imaging.services.imagesets)."""
from __future__ import annotations

import json

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from imaging.models import ImageSet
from imaging.services.imagesets import imageset_metadata_document


@admin.register(ImageSet)
class ImageSetAdmin(admin.ModelAdmin):
    list_display = ["id", "datastore", "state", "workflow_status", "is_primary", "latest_version", "modality",
                    "number_of_instances", "updated_at"]
    list_filter = ["state", "is_primary", "storage_tier"]
    search_fields = ["id", "study_instance_uid", "series_instance_uid"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields] + ["versions_table", "metadata_document"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Versions")
    def versions_table(self, obj: ImageSet) -> str:
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (v.version, v.state, v.workflow_status, "yes" if v.is_primary else "no", v.created_at)
            for v in obj.versions.all()))
        return format_html("<table><tr><th>Version</th><th>State</th><th>Workflow</th><th>Primary</th>"
                           "<th>Created</th></tr>{}</table>", rows)

    @admin.display(description="Metadata document (current version)")
    def metadata_document(self, obj: ImageSet) -> str:
        document = imageset_metadata_document(image_set=obj)
        if document is None:
            return "(not available)"
        return format_html("<pre style='max-height:40em;overflow:auto'>{}</pre>",
                           json.dumps(document, indent=1)[:500_000])
