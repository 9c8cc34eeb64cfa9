"""Admin pages for data stores: create (through imaging.services.datastores), a typed-name delete page, storage
totals per tier (imaging.selectors), and the import page (server folder, S3 URIs or browser uploads, each started
through imaging.services.imports)."""
from __future__ import annotations

import uuid

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from imaging.admin.dicomnodes import admin_actor
from imaging.errors import ApertureError
from imaging.models import Datastore, LosslessStorageFormat
from imaging.selectors import datastore_storage_by_tier
from imaging.services.datastores import datastore_create, datastore_delete, datastore_rename
from imaging.services.dicom_nodes import datastore_ae_title_check, datastore_ae_title_set
from imaging.services.imports import import_job_start, import_job_start_local, import_job_start_upload
from imaging.services.scrub import scrub_latest


class DatastoreCreateForm(forms.ModelForm):
    name = forms.RegexField(regex=r"^[A-Za-z0-9._/#-]{1,256}$", help_text="Letters, digits and . _ / # -")
    lossless_storage_format = forms.ChoiceField(choices=LosslessStorageFormat.choices)
    tags = forms.CharField(required=False, help_text="key=value per line. Tags must not contain patient data.",
                           widget=forms.Textarea(attrs={"rows": 3}))

    def clean_tags(self) -> dict[str, str]:
        tags = {}
        for line in self.cleaned_data["tags"].splitlines():
            if line.strip():
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise forms.ValidationError("Write one key=value per line.")
                tags[key.strip()] = value.strip()
        return tags

    class Meta:
        model = Datastore
        fields = ["name", "lossless_storage_format"]


class DatastoreChangeForm(forms.ModelForm):
    """The name and the AE title DICOM nodes call the data store by (empty for none); the rest is read-only."""

    def clean_ae_title(self) -> str | None:
        ae_title = self.cleaned_data.get("ae_title") or None
        if ae_title is not None:
            try:
                datastore_ae_title_check(datastore_id=self.instance.pk, ae_title=ae_title)
            except ApertureError as e:
                raise forms.ValidationError(e.message) from e
        return ae_title

    class Meta:
        model = Datastore
        fields = ["name", "ae_title"]
        labels = {"ae_title": "AE title"}
        help_texts = {"ae_title": "The called AE title that picks this data store for DICOM networking (C-STORE, "
                                  "C-FIND, C-MOVE, C-GET); empty for none. Unique among data stores."}


class DatastoreDeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the data store's name to confirm")


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's documented pattern)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        if isinstance(data, (list, tuple)):
            return [super(MultipleFileField, self).clean(item, initial) for item in data]
        return super().clean(data, initial)


class UploadImportForm(forms.Form):
    files = MultipleFileField(help_text="DICOM files from this computer")


class S3ImportForm(forms.Form):
    input_s3_uri = forms.RegexField(regex=r"^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$", label="Input S3 URI")
    output_s3_uri = forms.RegexField(regex=r"^s3://[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9](/.*)?$", label="Output S3 URI")
    data_access_role_arn = forms.RegexField(regex=r"^arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+$",
                                            initial="arn:aws:iam::000000000000:role/aperture-import")


class FolderImportForm(forms.Form):
    # Which folders may be imported is the service's rule (import_job_start_local's import_roots_only).
    folder = forms.CharField(label="Server folder", help_text="A folder under one of APERTURE_IMPORT_ROOTS")


@admin.register(Datastore)
class DatastoreAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "ae_title", "status", "lossless_storage_format", "created_at"]
    list_filter = ["status", "lossless_storage_format"]
    search_fields = ["name", "id", "ae_title"]
    readonly_fields = ["id", "status", "lossless_storage_format", "kms_key_arn", "lambda_authorizer_arn",
                       "created_at", "updated_at", "storage_by_tier", "last_scrub", "delete_link"]
    fields = readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        kwargs["form"] = DatastoreCreateForm if obj is None else DatastoreChangeForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "lossless_storage_format", "tags"]
        return ["name", "ae_title", *self.readonly_fields]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deletion goes through the typed-name confirmation page below

    def save_model(self, request, obj, form, change) -> None:
        if change:
            datastore_rename(datastore_id=obj.pk, name=form.cleaned_data["name"])
            if "ae_title" in form.changed_data:
                datastore_ae_title_set(actor=admin_actor(request), datastore_id=obj.pk,
                                       ae_title=form.cleaned_data["ae_title"])
            return
        result = datastore_create(
            client_token=uuid.uuid4().hex,
            name=form.cleaned_data["name"],
            lossless_storage_format=form.cleaned_data["lossless_storage_format"],
            tags=form.cleaned_data.get("tags") or None,
        )
        obj.pk = result["datastoreId"]
        obj.refresh_from_db()

    @admin.display(description="Image sets and bytes per storage tier")
    def storage_by_tier(self, obj: Datastore) -> str:
        # format_html escapes its arguments to strings first, so numbers are formatted before they go in.
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{} bytes</td></tr>", (
            (totals.storage_tier, f"{totals.image_sets:,}", f"{totals.frame_bytes:,}")
            for totals in datastore_storage_by_tier(datastore_id=obj.pk)))
        return format_html("<table><tr><th>Tier</th><th>Image sets</th><th>Frame bytes</th></tr>{}</table>", rows)

    @admin.display(description="Last frame scrub (manage.py verify_frames)")
    def last_scrub(self, obj: Datastore) -> str:
        scrub = scrub_latest(datastore_id=obj.pk)
        if scrub is None:
            return "never"
        link = reverse("admin:imaging_framescrub_change", args=[scrub.pk])
        return format_html('<a href="{}">{}</a>: {} frames checked, {} bad{}', link, scrub.ended_at.isoformat(
            timespec="seconds"), f"{scrub.frames_checked:,}", f"{scrub.frames_bad:,}",
            "" if scrub.datastore_id else " (a run over every data store)")

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
        """Start an import from a server folder, from S3 URIs, or from files uploaded through the browser."""
        datastore = get_object_or_404(Datastore, pk=datastore_id)
        kind = request.POST.get("kind", "folder")
        # Only the form that was submitted is bound: an unbound form shows no errors before any input.
        posted = request.method == "POST"
        forms_by_kind = {
            "folder": FolderImportForm(request.POST if posted and kind == "folder" else None),
            "s3": S3ImportForm(request.POST if posted and kind == "s3" else None),
            "upload": UploadImportForm(request.POST if posted and kind == "upload" else None,
                                       request.FILES if posted and kind == "upload" else None),
        }
        form = forms_by_kind.get(kind, forms_by_kind["folder"])
        if request.method == "POST" and form.is_valid():
            try:
                if kind == "s3":
                    answer = import_job_start(
                        datastore_id=datastore.id, client_token=uuid.uuid4().hex,
                        data_access_role_arn=form.cleaned_data["data_access_role_arn"],
                        input_s3_uri=form.cleaned_data["input_s3_uri"], output_s3_uri=form.cleaned_data["output_s3_uri"])
                    job_id = answer["jobId"]
                elif kind == "upload":
                    job_id = import_job_start_upload(datastore_id=datastore.id,
                                                     uploads=request.FILES.getlist("files")).id
                else:
                    job_id = import_job_start_local(datastore_id=datastore.id, paths=[form.cleaned_data["folder"]],
                                                    import_roots_only=True).id
            except ApertureError as e:
                form.add_error(None, e.message)
            else:
                messages.success(request, f"Import job {job_id} started.")
                return HttpResponseRedirect(reverse("admin:imaging_importjob_change", args=[job_id]))
        context = {**self.admin_site.each_context(request), "datastore": datastore, "form": form,
                   "folder_form": forms_by_kind["folder"], "s3_form": forms_by_kind["s3"],
                   "upload_form": forms_by_kind["upload"], "kind": kind,
                   "roots": settings.APERTURE_IMPORT_ROOTS, "opts": self.model._meta,
                   "title": f"Import into {datastore.name}"}
        return render(request, "admin/imaging/datastore_import_folder.html", context)
