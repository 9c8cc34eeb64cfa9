"""Opaque page tokens for listings (nextToken): HMAC-signed, tied to one listing, expiring after 24 hours.

Used by the read side (selectors) and the API views alike; it knows nothing of what is listed and writes nothing.
"""
from __future__ import annotations

from typing import Any

from django.core import signing
from django.db.models import QuerySet

from imaging.errors import ValidationFailed

_PAGE_TOKEN_SALT = "aperture.page-token"
_PAGE_TOKEN_MAX_AGE = 24 * 3600


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


def paginate(
    queryset: QuerySet, *, scope: str, next_token: str | None, max_results: int | None, default: int = 50
) -> tuple[list[Any], str | None]:
    """One page of `queryset` and the token for the next page (None on the last page)."""
    offset = page_token_decode(next_token, scope=scope)
    limit = max_results or default
    rows = list(queryset[offset : offset + limit + 1])
    token = page_token_encode(scope=scope, offset=offset + limit) if len(rows) > limit else None
    return rows[:limit], token
