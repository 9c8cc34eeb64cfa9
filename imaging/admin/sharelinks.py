"""Admin pages for share links: made through imaging.services.sharing, shown with the link ready to copy."""
from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from imaging.models import ShareLink
from imaging.services.sharing import (
    ShareLinkTargetError,
    share_link_create,
    share_link_revoke,
    share_link_target,
    share_token,
)


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
