"""Admin listing of personal access tokens (DICOMweb bearer credentials). Tokens are made by their owners on the
"API tokens" page or with `manage.py accesstoken create`, since only the owner should ever see one; here an admin
finds and revokes them. The hash is never shown."""
from __future__ import annotations

from django.contrib import admin, messages

from imaging.models import AccessToken
from imaging.services.accesstokens import accesstoken_revoke


@admin.register(AccessToken)
class AccessTokenAdmin(admin.ModelAdmin):
    list_display = ["token_id", "user", "name", "datastore", "created_at", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["token_id", "name", "user__username"]
    fields = ["token_id", "user", "name", "datastore", "created_at", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        revoked = sum(accesstoken_revoke(token_id=token.token_id) for token in queryset)
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
