"""Managing people who have used the archive. Their audit events outlive them: a row names its user as text
(username and principal ARN), so a user can be deleted; deactivating is the gentler choice, since it keeps the
account, its grants and keys for the record while refusing sign-in and API access at once."""
from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from imaging.models import AuditEvent


def user_deactivate(*, user: AbstractBaseUser) -> bool:
    """Refuse the user's sign-in, sessions and access keys from now on; False if already inactive. Saved through
    the model so that whatever listens for the change (open sessions, sockets) hears of it."""
    if not user.is_active:
        return False
    user.is_active = False
    user.save(update_fields=["is_active"])
    return True


def user_audit_event_count(*, user: AbstractBaseUser) -> int:
    return AuditEvent.objects.filter(user_id=user.pk).count()
