"""Request bodies are bounded before they are held (issue 11 item 1).

An ASGI middleware in front of Django: each request gets the limit of its route class before a byte of its body is
read. A declared `Content-Length` over the limit is refused at once, without reading the body; a body that streams
past the limit (chunked, or longer than it claimed) is cut off where it crosses it. The refusal is a 413 in the
protocol's own format: the AWS JSON envelope on API routes, plain text on pages. It asks the client to close the
connection, so the server stops reading the rest. Before answering, up to LINGER_BYTES more of the body are read and
thrown away (nothing is kept): a client that is still sending when the connection closes gets a reset instead of the
answer, so a body moderately over the limit is drained and its sender reads a clean 413, while one far over it
(or one sent with `Expect: 100-continue`, which waits for our answer) is refused at once.

Route classes:
  * api     everything the HealthImaging API answers (the default: unknown paths are API 404s) -
            `APERTURE_MAX_REQUEST_BYTES`;
  * form    the viewer's pages, login and the admin - `APERTURE_MAX_FORM_BYTES`;
  * upload  the admin's DICOM upload form, for a signed-in staff session only - `APERTURE_MAX_UPLOAD_BYTES`;
            anyone else gets the form limit there, so nobody can make the server spool gigabytes without a login.
  * stow    STOW-RS POSTs (`/datastore/{id}/studies[/{study}]`) whose credentials hold up before the body is read
            - `APERTURE_MAX_STOW_BYTES`: a bearer token is checked in full (our own tokens, a JWT of the OIDC issuer
            or of the data store's authorizer); a SigV4 request must name an active access key, and its signature is
            verified at once when it declares the payload hash (`X-Amz-Content-SHA256`, a hash or UNSIGNED-PAYLOAD);
            without that header the signature covers a hash of the body, so it can only be verified once the body
            is in. Either way the data store must be ACTIVE and the caller allowed StoreDICOM(Study) on it.
            Anyone else gets the API limit there.
  * stow    STOW-RS, a POST to /datastore/{id}/studies or /datastore/{id}/studies/{study} - `APERTURE_MAX_STOW_BYTES`
            (1 GiB); the view spools the body to disk as it hashes it (imaging/aws/signed.py `spool_body`). Its
            refusal is the AWS envelope, as on every DICOMweb route.

This only holds behind a server with flow control, which hands the body over as the application reads it (uvicorn,
started by `manage.py serve`). Django then spools what it reads to a temporary file past
FILE_UPLOAD_MAX_MEMORY_SIZE, so no request holds more than that in memory.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from importlib import import_module
from typing import Any, Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings

from imaging import errors
from imaging.aws.envelope import domain_error_response

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PAGE_PREFIXES = ("/admin/", "/accounts/", "/account/", "/studies/", "/view/", "/share/", "/thumbnails/", "/static/")
PAGE_PATHS = ("/", "/metrics")
UPLOAD_PATH = re.compile(r"^/admin/imaging/datastore/[^/]+/import-folder/$")
STOW_PATH = re.compile(r"^/datastore/(?P<datastore>[^/]+)/studies(/(?P<study>[^/]+))?$")
LINGER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BodyRule:
    route_class: str
    limit: int

    @property
    def aws_envelope(self) -> bool:
        return self.route_class in ("api", "stow")


def _cookie(scope: Scope, name: str) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == b"cookie":
            try:
                morsel = SimpleCookie(value.decode("latin-1")).get(name)
            except CookieError:
                return None
            if morsel is not None:
                return morsel.value
    return None


def staff_session(session_key: str | None) -> bool:
    """Whether the session cookie belongs to a signed-in, active staff user (who may upload)."""
    if not session_key:
        return False
    from django.contrib.auth import SESSION_KEY, get_user_model

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id = store.get(SESSION_KEY)
    if user_id is None:
        return False
    return get_user_model().objects.filter(pk=user_id, is_active=True, is_staff=True).exists()


# The scope key under which a STOW request's bearer caller, checked before its body, is handed to the view.
BEARER_CHECKED = "aperture.bearer_checked"


@dataclass(frozen=True)
class BearerChecked:
    token: str
    datastore_id: str
    operation_name: str
    caller: Any


def stow_credentials_hold(scope: Scope, datastore_id: str, operation_name: str) -> bool:
    """Whether a STOW request's credentials hold up as far as they can be checked before its body is read (see
    the module docstring): what lets it send a body of STOW's size rather than the API's."""
    from django.conf import settings as current

    from imaging.aws import sigv4
    from imaging.aws.callers import bearer_caller, caller_authorize, caller_for_key
    from imaging.models import Datastore, DatastoreStatus, datastore_arn
    from imaging.services.accesskeys import accesskey_for_signing

    if not Datastore.objects.filter(pk=datastore_id[:32], status=DatastoreStatus.ACTIVE).exists():
        return False

    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", ())}
    authorization = headers.get("authorization", "")
    scheme, _, credential = authorization.partition(" ")
    try:
        if scheme.lower() == "bearer":
            caller = bearer_caller(credential.strip(), datastore_id=datastore_id[:32], operation_name=operation_name)
            # The view takes this caller rather than asking the token's issuer or authorizer a second time.
            scope[BEARER_CHECKED] = BearerChecked(token=credential.strip(), datastore_id=datastore_id[:32],
                                                  operation_name=operation_name, caller=caller)
        else:
            claimed = sigv4.parse_authorization(headers)
            found = accesskey_for_signing(access_key_id=claimed.access_key_id)
            if found is None:
                return False
            key, secret = found
            declared = headers.get("x-amz-content-sha256")
            if declared is not None:
                # The signature covers the declared payload hash: it is verified now, and the body against the
                # hash once it is in (sigv4.payload_hash).
                signed = sigv4.SignedRequest(
                    method=scope.get("method", "POST"), raw_path=scope.get("raw_path", b"").decode("latin-1"),
                    query_string=scope.get("query_string", b"").decode("latin-1"), headers=headers, body=b"",
                    body_sha256=None if declared == sigv4.UNSIGNED_PAYLOAD else declared)
                sigv4.verify(signed, claimed, secret, regions=[current.APERTURE_REGION,
                                                                *current.APERTURE_ACCEPTED_REGIONS],
                             max_skew=current.APERTURE_SIGV4_MAX_SKEW, allow_unsigned_payload=True)
            caller = caller_for_key(key)
        caller_authorize(caller, operation_name=operation_name, resources=[datastore_arn(datastore_id[:32])])
    except (errors.ApertureError, sigv4.SignatureError):
        return False
    return True


async def rule_for(scope: Scope) -> BodyRule:
    path = scope.get("path", "")
    if UPLOAD_PATH.match(path) and scope.get("method") == "POST":
        session_key = _cookie(scope, settings.SESSION_COOKIE_NAME)
        if await database_sync_to_async(staff_session)(session_key):
            return BodyRule("upload", settings.APERTURE_MAX_UPLOAD_BYTES)
    stow = STOW_PATH.match(path)
    if stow and scope.get("method") == "POST":
        operation_name = "StoreDICOMStudy" if stow.group("study") else "StoreDICOM"
        try:
            holds = await database_sync_to_async(stow_credentials_hold)(scope, stow.group("datastore"), operation_name)
        except Exception:  # the database is unreachable, say: the smaller limit, and the view answers the rest
            logger.warning("STOW-RS credentials could not be checked before the body", exc_info=True)
            holds = False
        if holds:
            return BodyRule("stow", settings.APERTURE_MAX_STOW_BYTES)
    if path in PAGE_PATHS or path.startswith(PAGE_PREFIXES):
        return BodyRule("form", settings.APERTURE_MAX_FORM_BYTES)
    return BodyRule("api", settings.APERTURE_MAX_REQUEST_BYTES)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for header, value in scope.get("headers", ()):
        if header == name:
            return value
    return None


def declared_length(scope: Scope) -> int | None:
    try:
        return int(_header(scope, b"content-length") or b"")
    except ValueError:
        return None


async def drain(receive: Receive, budget: int) -> None:
    """Read and discard the rest of a refused body, up to `budget` bytes (see the module docstring)."""
    discarded = 0
    while discarded <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def refuse(send: Send, rule: BodyRule) -> None:
    """Send the 413 of the route's protocol, asking the client to close the connection."""
    message = f"The request body exceeds the limit of {rule.limit} bytes for this route"
    if rule.aws_envelope:
        response = domain_error_response(errors.PayloadTooLarge(message), "")
        del response["x-amzn-RequestId"]
        headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
        body = response.content
    else:
        body = (message + "\n").encode()
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimitMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = await rule_for(scope)
        declared = declared_length(scope)
        if declared is not None and declared > rule.limit:
            waits_for_answer = (_header(scope, b"expect") or b"").lower() == b"100-continue"
            if not waits_for_answer and declared - rule.limit <= LINGER_BYTES:
                await drain(receive, LINGER_BYTES + rule.limit)
            await refuse(send, rule)
            return
        received = 0
        exceeded = False
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > rule.limit:
                    # Django's ASGI handler treats a disconnect while it reads the body as an aborted request and
                    # answers nothing; the 413 is sent below.
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, bounded_receive, tracking_send)
        if exceeded and not response_started:
            await drain(receive, LINGER_BYTES)
            await refuse(send, rule)
