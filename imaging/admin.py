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
from imaging.models import AccessKey, Datastore, LosslessStorageFormat, ManagedPolicy
from imaging.services.accesskeys import accesskey_create, accesskey_deactivate
from imaging.services.datastores import datastore_create, datastore_delete


class DatastoreCreateForm(forms.ModelForm):
    name = forms.RegexField(regex=r"^[A-Za-z0-9._/#-]{1,256}$", help_text="Letters, digits and . _ / # -")
    lossless_storage_format = forms.ChoiceField(choices=LosslessStorageFormat.choices)

    class Meta:
        model = Datastore
        fields = ["name", "lossless_storage_format"]


class DatastoreDeleteForm(forms.Form):
    confirm_name = forms.CharField(label="Type the data store's name to confirm")


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

    @admin.display(description="Delete")
    def delete_link(self, obj: Datastore) -> str:
        url = reverse("admin:imaging_datastore_confirm_delete", args=[obj.pk])
        return format_html('<a class="deletelink" href="{}">Delete this data store…</a>', url)

    def get_urls(self):
        extra = [
            path(
                "<str:datastore_id>/confirm-delete/",
                self.admin_site.admin_view(self.confirm_delete_view),
                name="imaging_datastore_confirm_delete",
            )
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
        messages.warning(
            request,
            f"Access key {issued.access_key_id} created. Secret access key (shown only now): "
            f"{issued.secret_access_key}",
        )

    @admin.action(description="Deactivate selected keys")
    def deactivate(self, request, queryset) -> None:
        for key in queryset:
            accesskey_deactivate(access_key_id=key.access_key_id)
        messages.success(request, f"Deactivated {queryset.count()} key(s).")
