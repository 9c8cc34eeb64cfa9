"""Idempotency of create operations on clientToken: one answer per (operation, token), kept for
APERTURE_IDEMPOTENCY_HOURS. Services call `idempotent` around what they create; it knows nothing of what that is."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from imaging.errors import Conflict
from imaging.models import IdempotencyRecord


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
