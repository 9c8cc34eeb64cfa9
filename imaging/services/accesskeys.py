"""Access keys: create, look up for SigV4, rename, deactivate (and reactivate).

Every signed call needs its key, the key's user and the plaintext secret, and whether that user may read the data
store it names. Read from the database and decrypted each time, that was three queries and a decryption of every
GetImageFrame. So the answers are kept in each web process (AuthCache below), and checked on every call against one
small row, AuthGeneration, whose stamp changes whenever what they were read from changes: a key updated through this
module or saved, a user saved or deleted, a grant or a data store saved or deleted, from any process (the admin,
`manage.py accesskey deactivate`). A deactivated key is refused by the very next call everywhere. Changes made
behind the ORM's back (raw SQL) are seen after APERTURE_AUTH_CACHE_SECONDS at the latest; 0 turns the caches off.
"""
from __future__ import annotations

import secrets
import string
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Hashable, Iterator

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from imaging.crypto import decrypt_secret, encrypt_secret
from imaging.errors import NotFound, ValidationFailed
from imaging.models import AccessKey, AuthGeneration, ManagedPolicy
from imaging.policies import MANAGED_POLICIES, PolicyError, validate_policy
from imaging.selectors import datastore_readable

_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
# Recording last use on every request would turn each read into a write; once a minute is precise enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    access_key_id: str
    secret_access_key: str


def accesskey_create(
    *, user, name: str = "", policy: str = ManagedPolicy.FULL_ACCESS, policy_document: Any = None
) -> IssuedKey:
    """Make a key; the secret is returned here once and stored only encrypted."""
    if policy not in ManagedPolicy.values:
        raise ValidationFailed(f"Unknown policy {policy}")
    if policy == ManagedPolicy.CUSTOM:
        try:
            validate_policy(policy_document)
        except PolicyError as e:
            raise ValidationFailed(f"Invalid policy document: {e}") from e
    else:
        policy_document = None
    access_key_id = "AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))
    AccessKey.objects.create(
        access_key_id=access_key_id,
        user=user,
        name=name,
        encrypted_secret=encrypt_secret(secret),
        policy=policy,
        policy_document=policy_document,
    )
    return IssuedKey(access_key_id=access_key_id, secret_access_key=secret)


def accesskey_deactivate(*, access_key_id: str) -> None:
    _accesskey_update(access_key_id=access_key_id, is_active=False)


def accesskey_reactivate(*, access_key_id: str) -> None:
    """Undo a deactivation (the admin's change form); the secret is the one issued at creation."""
    _accesskey_update(access_key_id=access_key_id, is_active=True)


def accesskey_rename(*, access_key_id: str, name: str) -> None:
    _accesskey_update(access_key_id=access_key_id, name=name)


def _accesskey_update(*, access_key_id: str, **fields: Any) -> None:
    updated = AccessKey.objects.filter(access_key_id=access_key_id).update(**fields)
    auth_caches_invalidate()  # a queryset update sends no signal
    if not updated:
        raise NotFound(f"Access key {access_key_id} does not exist")


class AuthCache:
    """Answers kept for at most APERTURE_AUTH_CACHE_SECONDS (read at each lookup, so settings overrides take
    effect) and only while the AuthGeneration stamp is the one they were read under; shared by this process's
    threads. A different stamp drops every entry at once: changes are rare, lookups are not."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._stamp: int | None = None
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        ttl = settings.APERTURE_AUTH_CACHE_SECONDS
        stamp = _current_stamp() if ttl > 0 else None
        if stamp is None:
            return compute()
        now = time.monotonic()
        with self._lock:
            if self._stamp != stamp:
                self._entries, self._stamp = {}, stamp
            found = self._entries.get(key)
            if found is not None and found[0] > now:
                return found[1]
            entries = self._entries
        value = compute()  # read after the stamp: a change committed meanwhile has a newer stamp
        with self._lock:
            if self._entries is entries and self._stamp == stamp:  # no clear() and no newer stamp meanwhile
                if len(entries) >= self._max_entries:
                    self._entries = entries = {k: v for k, v in entries.items() if v[0] > now}
                    if len(entries) >= self._max_entries:
                        self._entries = entries = {}
                entries[key] = (now + ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries, self._stamp = {}, None


_signing_cache = AuthCache()
_grant_cache = AuthCache()


_stamp_of_this_call: ContextVar[list[int | None] | None] = ContextVar("auth_stamp_of_this_call", default=None)


@contextmanager
def auth_stamp_read_once() -> Iterator[None]:
    """Within one call, read the AuthGeneration stamp once for both caches (the signing key and the grants) rather
    than once each: one query less on every signed call. A change made by the call itself still reaches every
    other process, and this one at its next call."""
    token = _stamp_of_this_call.set([])
    try:
        yield
    finally:
        _stamp_of_this_call.reset(token)


def _current_stamp() -> int | None:
    held = _stamp_of_this_call.get()
    if held is None:
        return _stamp_read()
    if not held:
        held.append(_stamp_read())
    return held[0]


def _stamp_read() -> int | None:
    """The AuthGeneration stamp, read on every signed call, so by the cheapest query there is (no ORM); None when
    the row is missing (a flushed test database), which disables the caches until the next change writes it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT stamp FROM {AuthGeneration._meta.db_table} WHERE id = 1")
        row = cursor.fetchone()
    return row[0] if row else None


def auth_caches_invalidate(**_signal: Any) -> None:
    """Something that authentication or grants read has changed: forget this process's answers now, and give the
    AuthGeneration row a new random stamp so that every other process forgets them on its next call. (Random, not
    a counter: a stamp rolled back with its transaction is never issued again.) Also a signal receiver."""
    _signing_cache.clear()
    _grant_cache.clear()
    stamp = secrets.randbits(62)
    if not AuthGeneration.objects.filter(pk=1).update(stamp=stamp):
        AuthGeneration.objects.bulk_create([AuthGeneration(id=1, stamp=stamp)], ignore_conflicts=True)


for _sender in (AccessKey, settings.AUTH_USER_MODEL, "imaging.DatastoreGrant", "imaging.Datastore"):
    post_save.connect(auth_caches_invalidate, sender=_sender, weak=False, dispatch_uid=f"auth-caches-save-{_sender}")
    post_delete.connect(auth_caches_invalidate, sender=_sender, weak=False,
                        dispatch_uid=f"auth-caches-delete-{_sender}")


def _usable_key(access_key_id: str) -> tuple[AccessKey, str] | None:
    key = AccessKey.objects.select_related("user").filter(access_key_id=access_key_id, is_active=True).first()
    if key is None or not key.user.is_active:
        return None
    secret = decrypt_secret(key.encrypted_secret)
    if secret is None:
        return None
    return key, secret


def accesskey_for_signing(*, access_key_id: str) -> tuple[AccessKey, str] | None:
    """The active key and its plaintext secret, or None if there is no usable key by that id (see the module
    docstring for how long an answer is kept)."""
    return _signing_cache.get_or_compute(access_key_id, lambda: _usable_key(access_key_id))


def user_datastore_readable(*, user: Any, datastore_id: str) -> bool:
    """The API's grant check: whether `user` may read `datastore_id` in any state (selectors.datastore_readable
    with include_inactive), kept as the signing answer is."""
    if user is None or not getattr(user, "pk", None):
        return datastore_readable(user=user, datastore_id=datastore_id, include_inactive=True)
    return _grant_cache.get_or_compute(
        (user.pk, datastore_id),
        lambda: datastore_readable(user=user, datastore_id=datastore_id, include_inactive=True))


def accesskey_touch(*, key: AccessKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
        AccessKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now  # the cached key too: the next write is a minute away


def accesskey_policy_document(key: AccessKey) -> dict[str, Any]:
    if key.policy == ManagedPolicy.CUSTOM:
        return key.policy_document or {"Statement": []}
    return MANAGED_POLICIES[key.policy]


def principal_arn(key: AccessKey) -> str:
    return f"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:user/{key.user.get_username()}"


@transaction.atomic
def bootstrap_admin(*, username: str = "admin") -> tuple[str | None, IssuedKey | None]:
    """Create the first admin user and a full-access key when none exist; returns what was created."""
    User = get_user_model()
    password = None
    user = User.objects.filter(is_superuser=True).order_by("pk").first()
    if user is None:
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(username=username, email="", password=password)
    issued = None
    if not AccessKey.objects.filter(is_active=True).exists():
        issued = accesskey_create(user=user, name="bootstrap", policy=ManagedPolicy.FULL_ACCESS)
    return password, issued
