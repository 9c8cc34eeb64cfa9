"""The websocket origin rule (viewer.origins), case by case: the server's own origin, embedding portals, and what a
cross-site page can and cannot forge."""
from __future__ import annotations

import pytest

from viewer.origins import origin_allowed


@pytest.fixture(autouse=True)
def origins(settings):
    settings.ALLOWED_HOSTS = ["archive.example.org", "127.0.0.1"]
    settings.APERTURE_EMBED_ORIGINS = ["https://portal.example.org"]
    settings.CSRF_TRUSTED_ORIGINS = []


@pytest.mark.parametrize("origin, host, allowed", [
    ("https://archive.example.org", "archive.example.org", True),  # behind a TLS proxy: default ports match
    ("https://archive.example.org:443", "archive.example.org", True),
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("HTTP://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("https://portal.example.org", "archive.example.org", True),  # an embedding portal
    ("https://portal.example.org:8443", "archive.example.org", False),
    ("http://portal.example.org", "archive.example.org", False),
    ("https://evil.example", "archive.example.org", False),
    ("https://archive.example.org.evil.example", "archive.example.org", False),
    ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port is another origin
    ("https://evil.example", "evil.example", False),  # a Host the server does not answer to proves nothing
    ("null", "archive.example.org", False),  # sandboxed iframes and file:// pages
    ("file://", "archive.example.org", False),
    (None, "archive.example.org", False),
    ("https://archive.example.org", None, False),
])
def test_origin_rule(origin, host, allowed):
    assert origin_allowed(origin, host) is allowed
