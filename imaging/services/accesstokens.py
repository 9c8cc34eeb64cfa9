"""Personal access tokens: bearer credentials a user makes for DICOMweb clients that cannot sign SigV4 (a PACS, a
script with `Authorization: Bearer`). Create, look up for a request, list, revoke.

A token is `apt_<id>_<secret>`: the id (12 lowercase alphanumerics after `apt_`) finds the row, the secret (256
random bits, urlsafe base64) proves possession. Only the secret's SHA-256 is stored and it is compared in constant
time; the token itself is returned once by `accesstoken_create` and never stored, logged or audited (the audit trail
records the id).

What a token may do (`bearer_policy_document`) is the DICOMweb read actions, plus StoreDICOM/StoreDICOMStudy for a
superuser (grants are read rights; only superusers write), always bounded by the user's data store grants and,
when the token names one, by that data store. A token never reaches the HealthImaging API: imaging/aws/signed.py
accepts bearer credentials only on routes that opt in, which are the DICOMweb ones.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from imaging.errors import NotFound, ValidationFailed
from imaging.models import AccessToken, Datastore
from imaging.policies import SERVICE_PREFIX
from imaging.selectors import datastore_readable

TOKEN_PREFIX = "apt_"
_ID_LENGTH = 12
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN = re.compile(r"apt_([a-z0-9]{12})_([A-Za-z0-9_-]{43})")
# Recording last use on every request would turn each read into a write; once a minute is precise enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_DAYS = 3650

# Every DICOMweb read, present and to come (WADO-RS, rendered), by the names SPEC 11.1 gives them; the one API
# operation those patterns also match is denied outright.
DICOMWEB_READ_PATTERNS = ["SearchDICOM*", "GetDICOM*"]
NOT_DICOMWEB = ["GetDICOMImportJob"]
DICOMWEB_STORE_ACTIONS = ["StoreDICOM", "StoreDICOMStudy"]


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str
    expires_at: Any


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def bearer_policy_document(user: Any) -> dict[str, Any]:
    """The policy of a user's bearer credentials (a token, an OIDC JWT, the viewer's session): DICOMweb reads, and
    stores for a superuser. The user's grants bound it further (imaging/aws/callers.py)."""
    actions = DICOMWEB_READ_PATTERNS + (DICOMWEB_STORE_ACTIONS if user.is_superuser else [])
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": [f"{SERVICE_PREFIX}:{action}" for action in actions], "Resource": "*"},
        {"Effect": "Deny", "Action": [f"{SERVICE_PREFIX}:{action}" for action in NOT_DICOMWEB], "Resource": "*"}]}


@transaction.atomic
def accesstoken_create(*, user: Any, name: str = "", datastore_id: str | None = None,
                       days: int | None = None) -> IssuedToken:
    """A new token for `user`, limited to `datastore_id` if given (a data store the user may read) and expiring
    after `days` if given. The token is returned here once."""
    if not user.is_active:
        raise ValidationFailed("An inactive user cannot create tokens")
    datastore = None
    if datastore_id:
        datastore = Datastore.objects.filter(pk=datastore_id).first()
        if datastore is None or not datastore_readable(user=user, datastore_id=datastore_id):
            raise ValidationFailed(f"Data store {datastore_id} is not one this user may read")
    expires_at = None
    if days is not None:
        if not 1 <= days <= MAX_DAYS:
            raise ValidationFailed(f"days must be between 1 and {MAX_DAYS}")
        expires_at = timezone.now() + timedelta(days=days)
    if len(name) > 128:
        raise ValidationFailed("A token name is at most 128 characters")
    token_id = TOKEN_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
    secret = secrets.token_urlsafe(32)
    AccessToken.objects.create(token_id=token_id, user=user, name=name, secret_sha256=_secret_hash(secret),
                               datastore=datastore, expires_at=expires_at)
    return IssuedToken(token_id=token_id, token=f"{token_id}_{secret}", expires_at=expires_at)


def is_access_token(bearer: str) -> bool:
    """Whether a bearer credential is one of ours (by its prefix) rather than a JWT."""
    return bearer.startswith(TOKEN_PREFIX)


def accesstoken_for_bearer(*, bearer: str) -> AccessToken | None:
    """The usable token (not revoked, not expired, of an active user) that `bearer` is, or None."""
    match = _TOKEN.fullmatch(bearer)
    if match is None:
        return None
    token = AccessToken.objects.select_related("user").filter(token_id=TOKEN_PREFIX + match.group(1)).first()
    if token is None or not hmac.compare_digest(token.secret_sha256, _secret_hash(match.group(2))):
        return None
    now = timezone.now()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at > _LAST_USED_RESOLUTION:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def accesstoken_revoke(*, token_id: str, user: Any | None = None) -> bool:
    """Revoke a token (only `user`'s own when given); False if it was already revoked."""
    tokens = AccessToken.objects.filter(token_id=token_id)
    if user is not None:
        tokens = tokens.filter(user=user)
    if not tokens.exists():
        raise NotFound(f"Access token {token_id} does not exist")
    return bool(tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now()))


def accesstokens_of(*, user: Any):
    return AccessToken.objects.filter(user=user).select_related("datastore").order_by("-created_at")
