"""Origins compared the way browsers mean them (scheme, host, port with the scheme's default filled in), for the
viewer's websocket check (viewer/origins.py) and the session-cookie reads of DICOMweb (imaging/aws/callers.py).
Pure functions of a few headers and settings; no Django request objects."""
from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def host_port(netloc: str, scheme: str) -> tuple[str, str]:
    host, port = split_domain_port(netloc.lower())
    return host, port or DEFAULT_PORTS.get(scheme, "")


def normalized_origin(origin: str) -> str:
    parts = urlsplit(origin.strip().lower())
    host, port = host_port(parts.netloc, parts.scheme)
    return f"{parts.scheme}://{host}:{port}"


def same_origin(origin: str | None, host_header: str | None) -> bool:
    """Whether `origin` is the server's own: an http(s) origin with the host and port of the Host header the browser
    sent, that host being one of ALLOWED_HOSTS (so a spoofed Host cannot make any origin "own")."""
    if not origin or origin == "null" or not host_header:
        return False
    parts = urlsplit(origin.lower())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    request_host, request_port = host_port(host_header, parts.scheme)
    if not request_host or not validate_host(request_host, settings.ALLOWED_HOSTS):
        return False
    return host_port(parts.netloc, parts.scheme) == (request_host, request_port)
