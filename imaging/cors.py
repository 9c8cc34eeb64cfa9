"""CORS for the DICOMweb routes (issue 14 item 3), so a viewer served from another origin (OHIF in a portal) can
call them from the browser.

Only the DICOMweb paths take part (`/datastore/{id}/studies…`, `/series…`, `/instances…`): the HealthImaging API,
the viewer's pages and everything else are left exactly as they are. With `APERTURE_CORS_ORIGINS` empty (the
default) this layer does nothing at all.

  * A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here, before authentication,
    which a browser never sends with it: 204 with the methods and request headers a DICOMweb client signs or sends,
    for an allowed origin; 403 in the AWS error envelope, with no CORS headers, for any other origin. Preflights are
    not operations, so they are neither counted nor audited; the call that follows is.
  * Every other response on a DICOMweb path from an allowed origin gets Access-Control-Allow-Origin (the origin
    itself, never `*`) and the headers a client may read; an unknown origin gets none. `Vary: Origin` is sent on
    all of them, so a cache never hands one origin's answer to another.

No Access-Control-Allow-Credentials: a cross-origin page authenticates with its own Authorization header (SigV4),
never with the user's session cookie, so another site cannot ride a signed-in user's session.

Why an ASGI middleware, outside the body limits, rather than Django middleware or the signed-route wrapper: it is the
one place every response of a DICOMweb path passes, including the 413 that imaging/body_limits.py sends before Django
runs, the error envelope of the signed wrapper and the catch-all 404 of a path not served yet. (Django's test client
does not run the ASGI stack, which is why the tests drive the ASGI application itself or a live server.)
"""
from __future__ import annotations

import re
from typing import Any, Awaitable, Callable

from django.conf import settings

from imaging import errors
from imaging.aws.envelope import domain_error_response

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DICOMWEB_PATH = re.compile(r"^/datastore/[^/]+/(studies|series|instances)(/|$)")
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Accept, Content-Type, X-Amz-Date, X-Amz-Content-Sha256, X-Amz-Security-Token"
# WWW-Authenticate: a page told its bearer token was refused can read why (error="invalid_token").
EXPOSE_HEADERS = (
    "Content-Type, Content-Length, Warning, x-amzn-RequestId, x-amzn-ErrorType, Content-Disposition, WWW-Authenticate")
MAX_AGE_SECONDS = 600


def _header(scope: Scope, name: bytes) -> bytes | None:
    for header, value in scope.get("headers", ()):
        if header == name:
            return value
    return None


def allowed_origin(origin: str | None) -> bool:
    """Whether `origin` (the Origin header as sent) is one of APERTURE_CORS_ORIGINS; "null" never is."""
    return bool(origin) and str(origin).rstrip("/").lower() in settings.APERTURE_CORS_ORIGINS


def _with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """`headers` with Origin added to Vary (merged into an existing Vary header)."""
    out, merged = [], False
    for name, value in headers:
        if name.lower() == b"vary":
            fields = [part.strip() for part in value.split(b",") if part.strip()]
            if b"*" not in fields and b"origin" not in [f.lower() for f in fields]:
                value = b", ".join([*fields, b"Origin"])
            merged = True
        out.append((name, value))
    if not merged:
        out.append((b"vary", b"Origin"))
    return out


def response_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """The CORS headers of an actual response to an allowed `origin`."""
    return [(b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]


def preflight_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOW_METHODS.encode()),
            (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(MAX_AGE_SECONDS).encode()),
            (b"vary", b"Origin"), (b"content-length", b"0")]


async def _refuse_preflight(send: Send, origin: str) -> None:
    response = domain_error_response(errors.AccessDenied(f"Origin {origin} may not call DICOMweb routes"), "")
    del response["x-amzn-RequestId"]
    body = response.content
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.items()]
    headers += [(b"content-length", str(len(body)).encode()), (b"vary", b"Origin")]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class CorsMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or not settings.APERTURE_CORS_ORIGINS
                or not DICOMWEB_PATH.match(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        raw_origin = _header(scope, b"origin")
        origin = raw_origin.decode("latin-1") if raw_origin is not None else None
        allowed = allowed_origin(origin)
        if (scope.get("method") == "OPTIONS" and origin is not None
                and _header(scope, b"access-control-request-method") is not None):
            if allowed:
                await send({"type": "http.response.start", "status": 204, "headers": preflight_headers(origin)})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await _refuse_preflight(send, origin)
            return

        extra = response_headers(origin) if allowed and origin else []

        async def cors_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ())
                           if not n.lower().startswith(b"access-control-")]
                message = {**message, "headers": _with_vary(headers + extra)}
            await send(message)

        await self.app(scope, receive, cors_send)
