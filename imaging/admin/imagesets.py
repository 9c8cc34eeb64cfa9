"""Admin pages for image sets: read-only, with their versions and the current metadata document (through
imaging.services.imagesets), and the "Send to DICOM node…" action (imaging.services.dicom_send)."""
from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from imaging.errors import ApertureError
from imaging.models import DicomNode, ImageSet
from imaging.services.dicom_send import dicom_send_start
from imaging.services.imagesets import imageset_metadata_document


class SendToNodeForm(forms.Form):
    node = forms.ModelChoiceField(queryset=DicomNode.objects.all(), label="DICOM node", empty_label=None)


@admin.register(ImageSet)
class ImageSetAdmin(admin.ModelAdmin):
    list_display = ["id", "datastore", "state", "workflow_status", "is_primary", "latest_version", "modality",
                    "number_of_instances", "updated_at"]
    list_filter = ["state", "is_primary", "storage_tier"]
    search_fields = ["id", "study_instance_uid", "series_instance_uid"]
    actions = ["send_to_node"]

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

    @admin.action(description="Send to DICOM node…")
    def send_to_node(self, request, queryset):
        """An intermediate page to choose the node; each selected image set's series is sent (one DicomSend per
        series) with the rights of the signed-in user."""
        if not DicomNode.objects.exists():
            messages.warning(request, "No DICOM node is configured: add one under DICOM nodes first.")
            return None
        form = SendToNodeForm(request.POST if "send" in request.POST else None)
        if "send" in request.POST and form.is_valid():
            node, started, refused = form.cleaned_data["node"], [], []
            targets = sorted({(s.datastore_id, s.study_instance_uid, s.series_instance_uid) for s in queryset})
            for datastore_id, study_uid, series_uid in targets:
                try:
                    started.append(dicom_send_start(datastore_id=datastore_id, node_id=node.pk, study_uid=study_uid,
                                                    series_uid=series_uid or None, user=request.user))
                except ApertureError as e:
                    refused.append(e.message)
            if started:
                messages.success(request, f"{len(started)} send(s) to {node.ae_title} started.")
            for message in sorted(set(refused)):
                messages.error(request, message)
            return HttpResponseRedirect(reverse("admin:imaging_dicomsend_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "image_sets": queryset,
                   "opts": self.model._meta, "title": "Send to a DICOM node",
                   "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
        return render(request, "admin/imaging/imageset_send_to_node.html", context)
