"""The per-data-store bearer-token authorizer (SPEC 12.6, HealthImaging's Lambda model) and the local roles it
names.

A data store created with `lambdaAuthorizerArn` hands every JWT sent to its DICOMweb routes to that authorizer. The
ARN is looked up in APERTURE_AUTHORIZERS, which maps it to a Python callable (`module:function`) or an HTTPS URL
(plain HTTP only on a loopback address, for tests and sidecars). Before the call the JWT's times are checked without
its signature, which is the authorizer's job: `exp` in the future, `nbf` (if any) not in the future, `iat` not in
the future and at most 12 hours old, 60 s of leeway. The authorizer gets
`{"bearerToken", "operation", "datastoreId", "datastoreArn"}` and must answer within 1 s with
`{"isTokenValid": bool, "roleArn": "arn:aws:iam::{account}:role/{name}"}`; the call is then evaluated as that local
role (imaging.models.Role). Anything else (a failed pre-check, isTokenValid false, a timeout, an error, a malformed
answer, a role that does not exist here) is InvalidToken.
"""
from __future__ import annotations

import concurrent.futures
import importlib
import json
import logging
import re
import time
import urllib.parse
import urllib.request
from typing import Any, Callable

import jwt
from django.conf import settings

from imaging.errors import InvalidToken
from imaging.models import Datastore, ManagedPolicy, Role
from imaging.policies import MANAGED_POLICIES

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 1.0
LEEWAY_SECONDS = 60
MAX_TOKEN_AGE_SECONDS = 12 * 3600
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# Callables run on a few threads of their own so that a slow one is abandoned after the timeout; its thread finishes
# in the background, and the pool's size bounds how many can pile up.
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="authorizer")


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:role/{name}"


def role_policy_document(role: Role) -> dict[str, Any]:
    if role.policy == ManagedPolicy.CUSTOM:
        return role.policy_document or {"Statement": []}
    return MANAGED_POLICIES[role.policy]


def authorizer_configured(datastore: Datastore | None) -> bool:
    return bool(datastore and datastore.lambda_authorizer_arn)


def token_times_check(bearer: str, *, now: float | None = None) -> None:
    """SPEC 12.6's pre-checks, on the unverified claims."""
    try:
        claims = jwt.decode(bearer, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise InvalidToken("The bearer token is not a JWT") from e
    now = time.time() if now is None else now
    times = {name: claims.get(name) for name in ("exp", "nbf", "iat")}
    for name, value in times.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidToken(f"The token's {name} is not a number")
    if times["exp"] is None or times["exp"] <= now - LEEWAY_SECONDS:
        raise InvalidToken("The token has expired")
    if times["nbf"] is not None and times["nbf"] > now + LEEWAY_SECONDS:
        raise InvalidToken("The token is not valid yet")
    if times["iat"] is None or times["iat"] > now + LEEWAY_SECONDS:
        raise InvalidToken("The token's issue time is missing or in the future")
    if now - times["iat"] > MAX_TOKEN_AGE_SECONDS + LEEWAY_SECONDS:
        raise InvalidToken("The token was issued more than 12 hours ago")


def _callable(target: str) -> Callable[[dict[str, Any]], Any]:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _post(url: str, event: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return json.loads(response.read(64 * 1024))


def _invoke(target: str, event: dict[str, Any]) -> Any:
    if target.startswith(("https://", "http://")):
        return _pool.submit(_post, target, event).result(timeout=TIMEOUT_SECONDS)
    return _pool.submit(_callable(target), event).result(timeout=TIMEOUT_SECONDS)


def authorizer_target_valid(target: str) -> bool:
    """What APERTURE_AUTHORIZERS may map an ARN to: HTTPS, HTTP to a loopback host, or `module:function`."""
    if target.startswith("https://"):
        return True
    if target.startswith("http://"):
        return (urllib.parse.urlsplit(target).hostname or "") in LOOPBACK_HOSTS
    return re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", target) is not None


def authorizer_role(*, datastore: Datastore, bearer: str, operation_name: str) -> Role:
    """The local role the data store's authorizer grants this token for this operation, or InvalidToken."""
    token_times_check(bearer)
    target = settings.APERTURE_AUTHORIZERS.get(datastore.lambda_authorizer_arn)
    if not target or not authorizer_target_valid(target):
        logger.warning("data store %s names an authorizer that APERTURE_AUTHORIZERS does not map", datastore.id)
        raise InvalidToken("The data store's authorizer is not available")
    event = {"bearerToken": bearer, "operation": operation_name, "datastoreId": datastore.id,
             "datastoreArn": datastore.arn}
    try:
        result = _invoke(target, event)
    except concurrent.futures.TimeoutError as e:
        raise InvalidToken("The authorizer did not answer in time") from e
    except Exception as e:
        # The authorizer is somebody else's code: its failure is logged (never with the token) and refuses the call.
        logger.warning("the authorizer of data store %s failed: %s", datastore.id, type(e).__name__)
        raise InvalidToken("The authorizer failed") from e
    if not isinstance(result, dict) or not isinstance(result.get("isTokenValid"), bool):
        raise InvalidToken("The authorizer's answer is malformed")
    if not result["isTokenValid"]:
        raise InvalidToken("The authorizer refused the token")
    match = re.fullmatch(rf"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:role/([\w+=,.@-]{{1,64}})",
                         str(result.get("roleArn", "")))
    role = Role.objects.filter(pk=match.group(1)).first() if match else None
    if role is None:
        raise InvalidToken("The authorizer names no local role")
    return role
