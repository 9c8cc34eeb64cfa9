"""Open render sockets end with the session, user or share link that opened them (issue 11 item 6).

A websocket is authorized once, at its handshake; without this an open socket kept rendering after its user logged
out or was deactivated, or after its share link was revoked or expired. Each socket joins channel-layer groups named
after what authorizes it: its session (hashed: group names are visible in Redis), its user and its share link. Logout,
deactivation, deletion and revocation send an end message to the group, on commit, so every process holding such a
socket closes it (Redis channel layer at scale; the in-memory layer serves the one process of the embedded default).
The consumer also re-checks its authority on every `open` and every APERTURE_WS_RECHECK_SECONDS, which catches what no
message announces: an expired link, a session that timed out, a removed data store grant.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from imaging.models import ShareLink
from imaging.services.sharing import ShareLinkInvalid, share_link_resolve

logger = logging.getLogger(__name__)

END_MESSAGE_TYPE = "socket.end"


def session_group(session_key: str) -> str:
    return "aperture-session." + hashlib.sha256(session_key.encode()).hexdigest()[:48]


def user_group(user_id) -> str:
    return f"aperture-user.{user_id}"


def share_group(link_id) -> str:
    return f"aperture-share.{link_id}"


@dataclass(frozen=True)
class SocketAuthority:
    """What opened a socket: a signed-in session, a share link, or both (a link bound to a user)."""

    session_key: str | None
    user_id: int | None
    share_link_id: str | None

    def groups(self) -> list[str]:
        groups = []
        if self.session_key:
            groups.append(session_group(self.session_key))
        if self.user_id is not None:
            groups.append(user_group(self.user_id))
        if self.share_link_id:
            groups.append(share_group(self.share_link_id))
        return groups


def end_sockets(groups: list[str], reason: str) -> None:
    """Close every socket in these groups once the current transaction commits (at once outside one)."""
    layer = get_channel_layer()
    if layer is None or not groups:
        return

    def send() -> None:
        for group in groups:
            try:
                async_to_sync(layer.group_send)(group, {"type": END_MESSAGE_TYPE, "reason": reason})
            except Exception:  # a channel layer that is down must not fail a logout or a revocation
                logger.warning("could not notify open sockets of %s", group.split(".")[0], exc_info=True)

    transaction.on_commit(send)


def _session_user(session_key: str) -> tuple[int | None, str]:
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id = store.get(SESSION_KEY)
    return (int(user_id) if user_id is not None else None), store.get(HASH_SESSION_KEY, "")


def authority_problem(authority: SocketAuthority) -> str | None:
    """Why the socket may no longer render, or None while it may."""
    if authority.share_link_id:
        link = ShareLink.objects.filter(pk=authority.share_link_id).first()
        if link is None or link.revoked_at is not None:
            return "This link has been revoked."
        if link.expires_at <= timezone.now():
            return "This link has expired."
    if authority.user_id is not None:
        user = get_user_model().objects.filter(pk=authority.user_id).first()
        if user is None or not user.is_active:
            return "Your account has been deactivated."
        if authority.session_key:
            session_user_id, session_hash = _session_user(authority.session_key)
            if session_user_id != user.pk or not constant_time_compare(session_hash, user.get_session_auth_hash()):
                return "Your session has ended. Sign in again."
    elif not authority.share_link_id:
        return "Sign in to view images."
    return None


def share_link_deadline(authority: SocketAuthority) -> datetime | None:
    if not authority.share_link_id:
        return None
    return ShareLink.objects.filter(pk=authority.share_link_id).values_list("expires_at", flat=True).first()


def session_touch(session_key: str) -> None:
    """Rendering is activity: extend the session's idle timeout as an HTTP request would (SESSION_SAVE_EVERY_REQUEST),
    so a clinician reading for half an hour without loading a page is not signed out mid-study."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if store.get(SESSION_KEY) is not None:
        store.save()


def socket_authority(*, user, session, share_token: str | None) -> SocketAuthority | None:
    """What a handshake is authorized by, or None when nothing valid opens it (anonymous, or a dead link)."""
    signed_in = user is not None and getattr(user, "is_authenticated", False) and user.is_active
    share_link_id = None
    if share_token:
        try:
            share_link_id = str(share_link_resolve(share_token, user=user if signed_in else None).pk)
        except ShareLinkInvalid:
            return None
    if not signed_in and share_link_id is None:
        return None
    session_key = getattr(session, "session_key", None) if signed_in else None
    return SocketAuthority(session_key=session_key, user_id=user.pk if signed_in else None,
                           share_link_id=share_link_id)
