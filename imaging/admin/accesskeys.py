"""Admin pages for access keys: issued through imaging.services.accesskeys; the secret is shown once, on the page
that answers the creation, and never stored in a message or the session."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render

from imaging.errors import ApertureError
from imaging.models import AccessKey, ManagedPolicy
from imaging.services.accesskeys import (
    accesskey_create,
    accesskey_deactivate,
    accesskey_reactivate,
    accesskey_rename,
)


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
            if "name" in form.changed_data:
                accesskey_rename(access_key_id=obj.pk, name=form.cleaned_data["name"])
            if "is_active" in form.changed_data:
                toggle = accesskey_reactivate if form.cleaned_data["is_active"] else accesskey_deactivate
                toggle(access_key_id=obj.pk)
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
