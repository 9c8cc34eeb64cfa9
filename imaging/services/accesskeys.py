"""Access keys: create, look up for SigV4, rename, deactivate (and reactivate)."""
from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from imaging.crypto import decrypt_secret, encrypt_secret
from imaging.errors import NotFound, ValidationFailed
from imaging.models import AccessKey, ManagedPolicy
from imaging.policies import MANAGED_POLICIES, PolicyError, validate_policy

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
    if not updated:
        raise NotFound(f"Access key {access_key_id} does not exist")


def accesskey_for_signing(*, access_key_id: str) -> tuple[AccessKey, str] | None:
    """The active key and its plaintext secret, or None if there is no usable key by that id."""
    key = AccessKey.objects.select_related("user").filter(access_key_id=access_key_id, is_active=True).first()
    if key is None or not key.user.is_active:
        return None
    secret = decrypt_secret(key.encrypted_secret)
    if secret is None:
        return None
    return key, secret


def accesskey_touch(*, key: AccessKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _LAST_USED_RESOLUTION:
        AccessKey.objects.filter(pk=key.pk).update(last_used_at=now)


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
