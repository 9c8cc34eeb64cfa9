"""Websockets open only from the server's own pages and the portals allowed to embed them (issue 11 item 3).

A browser sends the user's session cookie with a websocket handshake to any origin, so without this check a page on
another site could open /ws/render/ in a signed-in user's browser and read PatientName and PatientID
(cross-site websocket hijacking). The handshake is refused, before it is accepted, unless its Origin is

  * the server's own: the same host and port as the Host header the browser sent (and that host is in
    ALLOWED_HOSTS, so a spoofed Host cannot make any origin "own"); or
  * one of APERTURE_EMBED_ORIGINS or DJANGO_CSRF_TRUSTED_ORIGINS (exact scheme://host[:port]).

A handshake without an Origin header is refused too: every browser sends one.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings

from imaging.origins import normalized_origin, same_origin


def _header(scope, name: bytes) -> str | None:
    for header, value in scope.get("headers", ()):
        if header == name:
            return value.decode("latin-1")
    return None


def origin_allowed(origin: str | None, host_header: str | None) -> bool:
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin.lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    trusted = {normalized_origin(o) for o in (*settings.APERTURE_EMBED_ORIGINS, *settings.CSRF_TRUSTED_ORIGINS)}
    return normalized_origin(origin) in trusted or same_origin(origin, host_header)


class SameOriginValidator:
    """ASGI middleware for websocket routes: refuses a handshake whose Origin is not allowed (close code 403)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(_header(scope, b"origin"), _header(scope, b"host")):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.application(scope, receive, send)
