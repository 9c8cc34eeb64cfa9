"""Who is calling, however they proved it, and what they may do: the one authorization rule of the signed routes.

A Caller is what authentication produced: a SigV4 access key (IAMUser), a personal access token or OIDC JWT of a
user (Bearer), a data store authorizer's role (AssumedRole), or the viewer's session cookie (Session). Each carries
the policy document that applies, the principal ARN that AccessDenied messages and the audit trail name, the user
whose grants bind it (none for a role) and, for tokens and roles, the one data store it is limited to.

`caller_authorize` is SPEC 12.3 plus the archive's grants: the policy must allow the action on every resource,
the user (if any) must be granted each data store named, and a caller limited to one data store may name no other.

Bearer credentials and the session are DICOMweb-only; which routes accept them is imaging/aws/signed.py's business
(`bearer=True`). Nothing here logs or keeps a token's value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest

from imaging import errors
from imaging.models import AccessKey, Datastore
from imaging.origins import same_origin
from imaging.policies import is_allowed
from imaging.services import accesstokens, authorizers, oidc
from imaging.services.accesskeys import accesskey_policy_document, principal_arn, user_datastore_readable

IAM_USER, ASSUMED_ROLE, BEARER, SESSION = "IAMUser", "AssumedRole", "Bearer", "Session"
SAFE_METHODS = ("GET", "HEAD")
_DATASTORE_IN_ARN = re.compile(r":datastore/([0-9a-z]{32})")


@dataclass(frozen=True)
class Caller:
    identity_type: str
    principal_arn: str
    policy: dict[str, Any]
    user: Any = None
    credential_id: str = ""
    datastore_id: str | None = None
    key: AccessKey | None = None


def user_arn(user: Any) -> str:
    return f"arn:aws:iam::{settings.APERTURE_ACCOUNT_ID}:user/{user.get_username()}"


def caller_for_key(key: AccessKey) -> Caller:
    return Caller(identity_type=IAM_USER, principal_arn=principal_arn(key), policy=accesskey_policy_document(key),
                  user=key.user, credential_id=key.access_key_id, key=key)


def _caller_for_user(user: Any, *, identity_type: str, credential_id: str = "",
                     datastore_id: str | None = None) -> Caller:
    return Caller(identity_type=identity_type, principal_arn=user_arn(user),
                  policy=accesstokens.bearer_policy_document(user), user=user, credential_id=credential_id,
                  datastore_id=datastore_id)


def session_caller(request: HttpRequest) -> Caller | None:
    """The viewer's signed-in user, for a same-origin read: a safe method, no Authorization header (credentials
    sent are the ones that count), an Origin that is absent or the server's own, and no Sec-Fetch-Site that says
    another site made the request. None when any of that does not hold."""
    user = getattr(request, "user", None)
    if not (user is not None and user.is_authenticated and user.is_active):
        return None
    if request.method not in SAFE_METHODS or "Authorization" in request.headers:
        return None
    origin = request.headers.get("Origin")
    if origin is not None:
        try:
            host = request.get_host()
        except DisallowedHost:
            return None
        if not same_origin(origin, host):
            return None
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return None
    return _caller_for_user(user, identity_type=SESSION)


def bearer_caller(bearer: str, *, datastore_id: str, operation_name: str) -> Caller:
    """The caller a bearer credential names, or InvalidToken. Our own tokens are known by their prefix; a JWT goes
    to the data store's authorizer when it has one, else to the OIDC issuer when one is configured."""
    if accesstokens.is_access_token(bearer):
        token = accesstokens.accesstoken_for_bearer(bearer=bearer)
        if token is None:
            raise errors.InvalidToken("The access token is not valid (unknown, revoked or expired)")
        return _caller_for_user(token.user, identity_type=BEARER, credential_id=token.token_id,
                                datastore_id=token.datastore_id)
    datastore = Datastore.objects.filter(pk=datastore_id).first() if datastore_id else None
    if authorizers.authorizer_configured(datastore):
        role = authorizers.authorizer_role(datastore=datastore, bearer=bearer, operation_name=operation_name)
        return Caller(identity_type=ASSUMED_ROLE, principal_arn=authorizers.role_arn(role.name),
                      policy=authorizers.role_policy_document(role), datastore_id=datastore.id)
    if oidc.oidc_enabled():
        identity = oidc.oidc_identity(bearer=bearer)
        return _caller_for_user(identity.user, identity_type=BEARER, credential_id=identity.token_id)
    raise errors.InvalidToken("Bearer tokens are not accepted for this data store")


def _bounds_cover(caller: Caller, *, operation_name: str, resource: str, granted: dict[str, bool]) -> bool:
    """Grants bind the API as they bind the viewer: a data store named must be one the caller's user may read (in
    any state: see imaging.selectors.datastores_readable), one the caller is limited to if it is, and only a
    superuser may create one. `granted` keeps the grant answers by data store for the rest of the call."""
    match = _DATASTORE_IN_ARN.search(resource)
    if match is None:
        return operation_name != "CreateDatastore" or bool(caller.user and caller.user.is_superuser)
    datastore_id = match.group(1)
    if caller.datastore_id is not None and datastore_id != caller.datastore_id:
        return False
    if caller.user is None:
        return caller.datastore_id is not None
    if datastore_id not in granted:
        granted[datastore_id] = user_datastore_readable(user=caller.user, datastore_id=datastore_id)
    return granted[datastore_id]


def caller_authorize(caller: Caller, *, operation_name: str, resources: list[str],
                     granted: dict[str, bool] | None = None) -> str:
    """The caller's policy must allow the action on every resource, within the caller's bounds. Returns the
    principal's ARN; raises AccessDenied naming the first resource refused."""
    action = f"medical-imaging:{operation_name}"
    granted = {} if granted is None else granted
    for resource in resources:
        if not (is_allowed(caller.policy, action=action, resources=[resource])
                and _bounds_cover(caller, operation_name=operation_name, resource=resource, granted=granted)):
            raise errors.AccessDenied(
                f"User: {caller.principal_arn} is not authorized to perform: {action} on resource: {resource}")
    return caller.principal_arn
