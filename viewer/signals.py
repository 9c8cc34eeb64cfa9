"""What ends open render sockets: logout, a user deactivated or deleted, a share link revoked (viewer.socket_sessions)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from imaging.models import ShareLink
from imaging.services.sharing import share_link_revoked
from viewer.socket_sessions import end_sockets, session_group, share_group, user_group


@receiver(user_logged_out)
def _logged_out(sender, request=None, user=None, **kwargs) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        end_sockets([session_group(session_key)], "You have signed out.")


@receiver(post_save, sender=get_user_model())
def _user_saved(sender, instance, created: bool = False, **kwargs) -> None:
    if not created and not instance.is_active:
        end_sockets([user_group(instance.pk)], "Your account has been deactivated.")


@receiver(post_delete, sender=get_user_model())
def _user_deleted(sender, instance, **kwargs) -> None:
    end_sockets([user_group(instance.pk)], "Your account has been deactivated.")


@receiver(share_link_revoked)
def _link_revoked(sender, link_ids, **kwargs) -> None:
    end_sockets([share_group(link_id) for link_id in link_ids], "This link has been revoked.")


@receiver(post_save, sender=ShareLink)
def _link_saved(sender, instance, created: bool = False, **kwargs) -> None:
    if not created and instance.revoked_at is not None:
        end_sockets([share_group(instance.pk)], "This link has been revoked.")
