"""Admin pages for data stores and access keys. Writes go through the same services as the API."""
from __future__ import annotations

import uuid

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from imaging.errors import ApertureError
import json
from pathlib import Path

from django.conf import settings

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db.models import Count, Sum
from django.http import StreamingHttpResponse

from imaging.dicom.document import decode_document
from imaging.models import (
    AccessKey,
    AuditEvent,
    Datastore,
    DatastoreGrant,
    ImageFrame,
    ImageSet,
    ImageSetState,
    ImportJob,
    LosslessStorageFormat,
    ManagedPolicy,
    ShareLink,
)
from imaging.services.audit import audit_export_lines
from imaging.services.sharing import (
    ShareLinkTargetError,
    share_link_create,
    share_link_revoke,
    share_link_target,
    share_token,
)
from imaging.storage import blob_store
from imaging.services.accesskeys import accesskey_create, accesskey_deactivate
from imaging.services.datastores import datastore_create, datastore_delete
from imaging.services.users import user_audit_event_count, user_deactivate
from imaging.services.imports import import_job_start_local, import_job_start_upload, manifest_summary


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
                       "created_at", "updated_at", "storage_by_tier", "delete_link"]
    fields = readonly_fields

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = DatastoreCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name", "lossless_storage_format", "tags"] if obj is None else ["name", *self.readonly_fields]

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
            tags=form.cleaned_data.get("tags") or None,
        )
        obj.pk = result["datastoreId"]
        obj.refresh_from_db()

    @admin.display(description="Image sets and bytes per storage tier")
    def storage_by_tier(self, obj: Datastore) -> str:
        live = ImageSet.objects.filter(datastore=obj).exclude(state=ImageSetState.DELETED)
        counts = dict(live.values_list("storage_tier").annotate(n=Count("id")).order_by())
        sizes = dict(ImageFrame.objects.filter(image_set__in=live).values_list("image_set__storage_tier")
                     .annotate(b=Sum("size")).order_by())
        # format_html escapes its arguments to strings first, so numbers are formatted before they go in.
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{} bytes</td></tr>", (
            (tier, f"{counts.get(tier, 0):,}", f"{sizes.get(tier) or 0:,}")
            for tier in ("FREQUENT_ACCESS", "ARCHIVE_INSTANT_ACCESS")))
        return format_html("<table><tr><th>Tier</th><th>Image sets</th><th>Frame bytes</th></tr>{}</table>", rows)

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
        from imaging.services.imports import import_job_start

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
                    job_id = import_job_start_local(datastore_id=datastore.id, paths=[form.cleaned_data["folder"]]).id
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

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        job = ImportJob.objects.filter(pk=object_id).only("status").first()
        if job is not None and job.status in ("SUBMITTED", "IN_PROGRESS"):
            response["Refresh"] = "2"  # live counts while the job runs
        return response

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
        rows = "".join(format_html("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", v.version,
                                   v.state, v.workflow_status, "yes" if v.is_primary else "no", v.created_at)
                       for v in obj.versions.all())
        return format_html("<table><tr><th>Version</th><th>State</th><th>Workflow</th><th>Primary</th>"
                           "<th>Created</th></tr>{}</table>", format_html(rows))

    @admin.display(description="Metadata document (current version)")
    def metadata_document(self, obj: ImageSet) -> str:
        version = obj.versions.filter(version=obj.content_version).first()
        blob = blob_store().get(version.metadata_key) if version else None
        if not blob:
            return "(not available)"
        return format_html("<pre style='max-height:40em;overflow:auto'>{}</pre>",
                           json.dumps(decode_document(blob), indent=1)[:500_000])


class ShareLinkForm(forms.ModelForm):
    expires_in_hours = forms.IntegerField(min_value=1, max_value=24 * 30, initial=24)
    # The fields the service's checks name, as the form calls them.
    _FIELDS = {"study_uid": "study_instance_uid", "image_set_id": "image_set_id", "expires_in": "expires_in_hours",
               "window_preset": "window_preset"}

    class Meta:
        model = ShareLink
        fields = ["datastore", "study_instance_uid", "image_set_id", "bound_user", "hide_browser", "initial_series",
                  "window_preset"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "study_instance_uid" in self.fields:  # the add form; on the change page every field is read-only
            self.fields["study_instance_uid"].required = False  # an image set names its study
            self.fields["study_instance_uid"].help_text = "Or leave empty and name an image set below"

    def clean(self) -> dict:
        """The service's own checks (the study or image set exists in the data store, the lifetime is allowed),
        shown beside the field at fault instead of failing when the link is saved."""
        data = super().clean()
        if self.errors:
            return data
        try:
            share_link_target(datastore_id=data["datastore"].id, study_uid=data.get("study_instance_uid") or "",
                              image_set_id=data.get("image_set_id") or "",
                              expires_in=timedelta(hours=data["expires_in_hours"]),
                              window_preset=data.get("window_preset") or "")
        except ShareLinkTargetError as e:
            self.add_error(self._FIELDS[e.field], e.error.message)
        return data


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ["id", "datastore", "created_by", "bound_user", "expires_at", "revoked_at"]
    actions = ["revoke"]
    form = ShareLinkForm

    class Media:
        js = ["admin/imaging/copy_link.js"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [f.name for f in self.model._meta.fields] + ["link"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["datastore", "study_instance_uid", "image_set_id", "expires_in_hours", "bound_user",
                    "hide_browser", "initial_series", "window_preset"]
        return ["link", "datastore", "study_instance_uid", "image_set_id", "bound_user", "created_by", "created_at",
                "expires_at", "revoked_at", "hide_browser", "initial_series", "window_preset"]

    def save_model(self, request, obj, form, change) -> None:
        if change:
            return
        data = form.cleaned_data
        link, _ = share_link_create(
            created_by=request.user, datastore_id=data["datastore"].id, study_uid=data["study_instance_uid"],
            image_set_id=data["image_set_id"], expires_in=timedelta(hours=data["expires_in_hours"]),
            bound_user=data["bound_user"], hide_browser=data["hide_browser"],
            initial_series=data["initial_series"], window_preset=data["window_preset"])
        obj.pk = link.pk
        obj.refresh_from_db()

    def response_add(self, request, obj, post_url_continue=None):
        """Say what was made in the words the admin needs: the link itself, ready to copy."""
        link = self._absolute_link(request, obj)
        messages.success(request, format_html("Share link created: {}", _copyable_link(link)))
        return HttpResponseRedirect(reverse("admin:imaging_sharelink_change", args=[obj.pk]))

    @admin.display(description="Link to embed")
    def link(self, obj: ShareLink) -> str:
        # A display field has no request to take the host from; copy_link.js makes the path absolute in the page.
        url = reverse("viewer:share", args=[share_token(obj)])
        return format_html('{} <a href="{}" target="_blank" rel="noopener">open</a>', _copyable_link(url), url)

    @staticmethod
    def _absolute_link(request: HttpRequest, obj: ShareLink) -> str:
        return request.build_absolute_uri(reverse("viewer:share", args=[share_token(obj)]))

    @admin.action(description="Revoke selected links")
    def revoke(self, request, queryset) -> None:
        for link in queryset:
            share_link_revoke(link_id=link.pk)


def _copyable_link(url: str) -> str:
    """A read-only field holding the link and a button that copies it (admin/imaging/copy_link.js)."""
    return format_html('<input readonly class="share-link" size="100" value="{}"> '
                       '<button type="button" class="button" data-copy-link>Copy</button>', url)


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
        queryset = changelist.get_queryset(request).order_by("event_time")
        response = StreamingHttpResponse(audit_export_lines(queryset.iterator()), content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
        return response

    @admin.action(description="Export selected events as JSON lines")
    def export_json_lines(self, request, queryset):
        response = StreamingHttpResponse(audit_export_lines(queryset.order_by("event_time").iterator()),
                                         content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="audit.jsonl"'
        return response


class DatastoreGrantInline(admin.TabularInline):
    model = DatastoreGrant
    extra = 1
    fk_name = "user"


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class ApertureUserAdmin(UserAdmin):
    """Users with their roles: superusers are administrators; others read the data stores granted to them."""

    inlines = [DatastoreGrantInline]
    list_display = ["username", "is_superuser", "is_staff", "is_active", "last_login"]
    actions = ["deactivate_users"]

    @admin.action(description="Deactivate selected users (keeps them and their audit history)")
    def deactivate_users(self, request, queryset) -> None:
        changed = sum(user_deactivate(user=user) for user in queryset)
        messages.success(request, f"Deactivated {changed} user(s): they can no longer sign in or use their access "
                                  "keys. Their audit history is unchanged.")

    def delete_view(self, request, object_id, extra_context=None):
        user = self.get_object(request, object_id)
        if request.method == "GET" and user is not None:
            events = user_audit_event_count(user=user)
            if events:
                messages.warning(request, f"“{user.get_username()}” has {events} audit event(s). They stay in the "
                                          "audit trail under this username either way. Deactivating (the action on "
                                          "the user list, or unticking Active) keeps the account on record and "
                                          "refuses sign-in and API access just the same.")
        return super().delete_view(request, object_id, extra_context)


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
