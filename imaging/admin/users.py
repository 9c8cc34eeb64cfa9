"""Admin pages for users and their data store grants. Deactivation goes through imaging.services.users."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from imaging.models import DatastoreGrant
from imaging.services.users import user_audit_event_count, user_deactivate


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
