"""OIDC JWTs from one configured issuer (APERTURE_OIDC_ISSUER), as bearer credentials for DICOMweb.

A token is accepted only with a valid RS256 or ES256 signature by a key of the issuer's JWKS, the configured `iss`
and `aud`, an `exp` in the future and an `nbf` (if any) in the past, 60 s of leeway either way. `none` and the HMAC
algorithms are refused before any key is looked at: with HS256 a public key would become a shared secret.

The JWKS comes from APERTURE_OIDC_JWKS_FILE when set, otherwise from the issuer's discovery document
(`{issuer}/.well-known/openid-configuration` → `jwks_uri`). It is cached for APERTURE_OIDC_JWKS_TTL_SECONDS; a
token whose `kid` is not in the cache fetches it again (the issuer rotated its keys), at most once every
APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS so that a stream of made-up kids cannot make us hammer the issuer.

The user is the active local account whose username is the claim APERTURE_OIDC_USER_CLAIM (default
`preferred_username`); an unknown or inactive user is refused like a bad token. Tokens are never logged.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.contrib.auth import get_user_model

from imaging.errors import InvalidToken

logger = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
LEEWAY_SECONDS = 60
FETCH_TIMEOUT_SECONDS = 5
MAX_DOCUMENT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class OidcIdentity:
    user: Any
    subject: str
    token_id: str


def oidc_enabled() -> bool:
    return bool(settings.APERTURE_OIDC_ISSUER)


class _Jwks:
    """The issuer's keys by kid, fetched lazily and kept for the TTL; shared by every request of the process.

    One fetch at a time (the lock), and tries are spaced by APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS, failed ones
    too: an unknown kid or an issuer that is down costs one fetch per interval, not one per request. When a refresh
    of keys that have gone stale fails, the keys already fetched from that source are kept and served: an issuer
    outage does not refuse tokens signed with keys it published before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._source = ""
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")

    def clear(self) -> None:
        with self._lock:
            self._keys, self._source = {}, ""
            self._fetched_at = self._tried_at = float("-inf")

    def key(self, kid: str) -> jwt.PyJWK:
        source = settings.APERTURE_OIDC_JWKS_FILE or settings.APERTURE_OIDC_ISSUER
        with self._lock:
            now = time.monotonic()
            same_source = source == self._source
            stale = now - self._fetched_at > settings.APERTURE_OIDC_JWKS_TTL_SECONDS
            may_try = now - self._tried_at >= settings.APERTURE_OIDC_JWKS_MIN_REFRESH_SECONDS
            last_try_failed = self._tried_at > self._fetched_at
            due = (not same_source or (stale and (may_try or not last_try_failed))
                   or (kid not in self._keys and may_try))
            if due:
                self._tried_at = now
                try:
                    keys = _keys_by_kid(_jwks_document())
                except InvalidToken:
                    if not same_source or not self._keys:
                        raise
                    logger.warning("the OIDC keys could not be refreshed; the %d fetched before are kept",
                                   len(self._keys))
                else:
                    self._keys, self._source, self._fetched_at = keys, source, now
            found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("The token is signed with a key the issuer does not publish")
        return found


_jwks = _Jwks()


def jwks_cache_clear() -> None:
    _jwks.clear()


def _fetch_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as response:
            return json.loads(response.read(MAX_DOCUMENT_BYTES))
    except (OSError, ValueError) as e:
        logger.warning("could not fetch the OIDC document %s: %s", url, e)
        raise InvalidToken("The token issuer's keys cannot be fetched") from e


def _jwks_document() -> Any:
    if settings.APERTURE_OIDC_JWKS_FILE:
        try:
            with open(settings.APERTURE_OIDC_JWKS_FILE, "rb") as handle:
                return json.loads(handle.read(MAX_DOCUMENT_BYTES))
        except (OSError, ValueError) as e:
            logger.warning("could not read APERTURE_OIDC_JWKS_FILE: %s", e)
            raise InvalidToken("The token issuer's keys cannot be read") from e
    discovery = _fetch_json(settings.APERTURE_OIDC_ISSUER.rstrip("/") + "/.well-known/openid-configuration")
    jwks_uri = discovery.get("jwks_uri") if isinstance(discovery, dict) else None
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise InvalidToken("The token issuer publishes no jwks_uri")
    return _fetch_json(jwks_uri)


def _keys_by_kid(document: Any) -> dict[str, jwt.PyJWK]:
    """The usable signing keys of a JWKS; keys we cannot use (other types, encryption keys) are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document.get("keys", []) if isinstance(document, dict) else []:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") not in (
                *ALGORITHMS, None):
            continue
        try:
            keys[str(entry.get("kid", ""))] = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
    return keys


def oidc_identity(*, bearer: str) -> OidcIdentity:
    """The local user a valid JWT of the configured issuer names, or InvalidToken."""
    try:
        header = jwt.get_unverified_header(bearer)
    except jwt.PyJWTError as e:
        raise InvalidToken("The bearer token is not a JWT") from e
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise InvalidToken(f"The token algorithm must be one of {', '.join(ALGORITHMS)}")
    key = _jwks.key(str(header.get("kid", "")))
    if key.algorithm_name != algorithm:
        raise InvalidToken("The token algorithm does not match its key")
    try:
        claims = jwt.decode(
            bearer, key=key.key, algorithms=[algorithm], audience=settings.APERTURE_OIDC_AUDIENCE,
            issuer=settings.APERTURE_OIDC_ISSUER, leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise InvalidToken("The token has expired") from e
    except jwt.ImmatureSignatureError as e:
        raise InvalidToken("The token is not valid yet") from e
    except jwt.InvalidAudienceError as e:
        raise InvalidToken("The token is not meant for this audience") from e
    except jwt.InvalidIssuerError as e:
        raise InvalidToken("The token comes from another issuer") from e
    except jwt.InvalidSignatureError as e:
        raise InvalidToken("The token signature is not valid") from e
    except jwt.PyJWTError as e:
        raise InvalidToken(f"The token is not valid: {type(e).__name__}") from e
    username = claims.get(settings.APERTURE_OIDC_USER_CLAIM)
    if not isinstance(username, str) or not username:
        raise InvalidToken(f"The token has no {settings.APERTURE_OIDC_USER_CLAIM} claim")
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise InvalidToken("The token names no active user here")
    return OidcIdentity(user=user, subject=str(claims.get("sub", "")), token_id=str(claims.get("jti", ""))[:20])
