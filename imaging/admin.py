"""Admin pages for data stores and access keys. Writes go through the same services as the API."""
from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from imaging.errors import ApertureError
import json
from pathlib import Path

from django.conf import settings

from imaging.models import AccessKey, Datastore, ImageSet, ImportJob, LosslessStorageFormat, ManagedPolicy
from imaging.services.accesskeys import accesskey_create, accesskey_deactivate
from imaging.services.datastores import datastore_create, datastore_delete
from imaging.services.imports import import_job_start_local, manifest_summary


class DatastoreCreateForm(forms.ModelForm):
    name = forms.RegexField(regex=r"^[A-Za-z0-9._/#-]{1,256}$", help_text="Letters, digits and . _ / # -")
    lossless_storage_format = forms.ChoiceField(choices=LosslessStorageFormat.choices)

    class Meta:
        model = Datastore
        fields = ["name", "lossless_storage_format"]


class DatastoreDeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the data store's name to confirm")


class FolderImportForm(forms.Form):
    folder = forms.CharField(label="Server folder", help_text="A folder under one of APERTURE_IMPORT_ROOTS")

    def clean_folder(self) -> str:
        folder = Path(self.cleaned_data["folder"]).resolve()
        roots = [Path(root).resolve() for root in settings.APERTURE_IMPORT_ROOTS]
        if not any(folder == root or folder.is_relative_to(root) for root in roots):
            raise forms.ValidationError("That folder is not under an allowed import root (APERTURE_IMPORT_ROOTS).")
        if not folder.is_dir():
            raise forms.ValidationError("That folder does not exist.")
        return str(folder)


@admin.register(Datastore)
class DatastoreAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "status", "lossless_storage_format", "created_at"]
    list_filter = ["status", "lossless_storage_format"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "status", "lossless_storage_format", "kms_key_arn", "lambda_authorizer_arn",
                       "created_at", "updated_at", "delete_link"]
    fields = readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = DatastoreCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "lossless_storage_format"] if obj is None else ["name", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deletion goes through the typed-name confirmation page below

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.save(update_fields=["name", "updated_at"])
            return
        result = datastore_create(
            client_token=uuid.uuid4().hex,
            name=form.cleaned_data["name"],
            lossless_storage_format=form.cleaned_data["lossless_storage_format"],
        )
        obj.pk = result["datastoreId"]
        obj.refresh_from_db()

    @admin.display(description="Actions")
    def delete_link(self, obj: Datastore) -> str:
        delete_url = reverse("admin:imaging_datastore_confirm_delete", args=[obj.pk])
        import_url = reverse("admin:imaging_datastore_import_folder", args=[obj.pk])
        return format_html('<a href="{}">Import a server folder…</a> · <a class="deletelink" href="{}">Delete this '
                           'data store…</a>', import_url, delete_url)

    def get_urls(self):
        extra = [
            path(
                "<str:datastore_id>/confirm-delete/",
                self.admin_site.admin_view(self.confirm_delete_view),
                name="imaging_datastore_confirm_delete",
            ),
            path(
                "<str:datastore_id>/import-folder/",
                self.admin_site.admin_view(self.import_folder_view),
                name="imaging_datastore_import_folder",
            ),
        ]
        return extra + super().get_urls()

    def confirm_delete_view(self, request: HttpRequest, datastore_id: str):
        datastore = get_object_or_404(Datastore, pk=datastore_id)
        form = DatastoreDeleteForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if form.cleaned_data["confirm_name"] != datastore.name:
                form.add_error("confirm_name", "The name does not match.")
            else:
                try:
                    datastore_delete(datastore_id=datastore.id)
                except ApertureError as e:
                    form.add_error(None, e.message)
                else:
                    messages.success(request, f"Data store {datastore.name} is being deleted.")
                    return HttpResponseRedirect(reverse("admin:imaging_datastore_changelist"))
        context = {**self.admin_site.each_context(request), "datastore": datastore, "form": form,
                   "opts": self.model._meta, "title": f"Delete data store {datastore.name}"}
        return render(request, "admin/imaging/datastore_confirm_delete.html", context)


    def import_folder_view(self, request: HttpRequest, datastore_id: str):
        datastore = get_object_or_404(Datastore, pk=datastore_id)
        form = FolderImportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                job = import_job_start_local(datastore_id=datastore.id, paths=[form.cleaned_data["folder"]])
            except ApertureError as e:
                form.add_error(None, e.message)
            else:
                messages.success(request, f"Import job {job.id} started.")
                return HttpResponseRedirect(reverse("admin:imaging_importjob_change", args=[job.id]))
        context = {**self.admin_site.each_context(request), "datastore": datastore, "form": form,
                   "roots": settings.APERTURE_IMPORT_ROOTS, "opts": self.model._meta,
                   "title": f"Import a server folder into {datastore.name}"}
        return render(request, "admin/imaging/datastore_import_folder.html", context)


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "datastore", "status", "scanned_files", "imported_files", "failed_files",
                    "submitted_at", "ended_at"]
    list_filter = ["status"]
    search_fields = ["id", "name"]
    fields = ["id", "name", "datastore", "status", "message", "input_s3_uri", "output_s3_uri", "scanned_files",
              "imported_files", "failed_files", "submitted_at", "started_at", "ended_at", "manifest", "failures"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

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
        rows = "".join(
            format_html("<tr><td>{}</td><td>{}</td><td>{}</td></tr>", line["inputFile"],
                        line["exception"]["exceptionType"], line["exception"]["message"])
            for line in lines
        )
        return format_html("<table><tr><th>File</th><th>Kind</th><th>Reason</th></tr>{}</table>", format_html(rows))


@admin.register(ImageSet)
class ImageSetAdmin(admin.ModelAdmin):
    list_display = ["id", "datastore", "state", "workflow_status", "is_primary", "latest_version", "modality",
                    "number_of_instances", "updated_at"]
    list_filter = ["state", "is_primary", "storage_tier"]
    search_fields = ["id", "study_instance_uid", "series_instance_uid"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AccessKeyCreateForm(forms.ModelForm):
    class Meta:
        model = AccessKey
        fields = ["user", "name", "policy", "policy_document"]


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    list_display = ["access_key_id", "user", "name", "policy", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active", "policy"]
    search_fields = ["access_key_id", "name", "user__username"]
    actions = ["deactivate"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = AccessKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["access_key_id", "user", "policy", "policy_document", "created_at", "last_used_at"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name", "policy", "policy_document"]
        return ["access_key_id", "user", "name", "policy", "policy_document", "is_active", "created_at", "last_used_at"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            obj.save(update_fields=["name", "is_active"])
            return
        try:
            issued = accesskey_create(
                user=form.cleaned_data["user"],
                name=form.cleaned_data["name"],
                policy=form.cleaned_data["policy"] or ManagedPolicy.FULL_ACCESS,
                policy_document=form.cleaned_data.get("policy_document"),
            )
        except ApertureError as e:
            messages.error(request, e.message)
            raise
        obj.pk = issued.access_key_id
        obj.refresh_from_db()
        request._issued_access_key = issued  # shown by response_add, never stored in a message or session

    def response_add(self, request, obj, post_url_continue=None):
        issued = getattr(request, "_issued_access_key", None)
        if issued is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "issued": issued, "opts": self.model._meta,
                   "title": "Access key created"}
        response = render(request, "admin/imaging/accesskey_created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Deactivate selected keys")
    def deactivate(self, request, queryset) -> None:
        for key in queryset:
            accesskey_deactivate(access_key_id=key.access_key_id)
        messages.success(request, f"Deactivated {queryset.count()} key(s).")
