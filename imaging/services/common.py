"""Helpers shared by the write-side services: idempotency and opaque page tokens."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from imaging.errors import Conflict, ValidationFailed
from imaging.models import IdempotencyRecord

_PAGE_TOKEN_SALT = "aperture.page-token"
_PAGE_TOKEN_MAX_AGE = 24 * 3600


def canonical_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def idempotent(
    *, operation: str, client_token: str, params: dict[str, Any], create: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run `create` once per (operation, clientToken); a retry with the same parameters gets the first answer.

    The record and the resource are written in one transaction, and the unique constraint on (operation, token)
    decides races: the loser rolls back and reads the winner's answer.
    """
    request_hash = canonical_hash(params)
    horizon = timezone.now() - timedelta(hours=settings.APERTURE_IDEMPOTENCY_HOURS)
    IdempotencyRecord.objects.filter(created_at__lt=horizon).delete()

    def replay(record: IdempotencyRecord) -> dict[str, Any]:
        if record.request_hash != request_hash:
            raise Conflict("clientToken was already used with different parameters")
        return record.response

    existing = IdempotencyRecord.objects.filter(operation=operation, client_token=client_token).first()
    if existing is not None:
        return replay(existing)
    try:
        with transaction.atomic():
            response = create()
            IdempotencyRecord.objects.create(
                operation=operation, client_token=client_token, request_hash=request_hash, response=response
            )
            return response
    except IntegrityError:
        existing = IdempotencyRecord.objects.filter(operation=operation, client_token=client_token).first()
        if existing is None:
            raise
        return replay(existing)


def page_token_encode(*, scope: str, offset: int) -> str:
    return signing.dumps({"s": scope, "o": offset}, salt=_PAGE_TOKEN_SALT, compress=True)


def page_token_decode(token: str | None, *, scope: str) -> int:
    """The offset a nextToken stands for; tokens are HMAC-signed, tied to one listing and expire after 24 h."""
    if token is None:
        return 0
    try:
        payload = signing.loads(token, salt=_PAGE_TOKEN_SALT, max_age=_PAGE_TOKEN_MAX_AGE)
    except signing.SignatureExpired as e:
        raise ValidationFailed("The nextToken has expired") from e
    except signing.BadSignature as e:
        raise ValidationFailed("The nextToken is not valid") from e
    if not isinstance(payload, dict) or payload.get("s") != scope or not isinstance(payload.get("o"), int):
        raise ValidationFailed("The nextToken does not belong to this request")
    return payload["o"]


def paginate(queryset, *, scope: str, next_token: str | None, max_results: int | None, default: int = 50):
    """One page of `queryset` and the token for the next page (None on the last page)."""
    offset = page_token_decode(next_token, scope=scope)
    limit = max_results or default
    rows = list(queryset[offset : offset + limit + 1])
    token = page_token_encode(scope=scope, offset=offset + limit) if len(rows) > limit else None
    return rows[:limit], token
