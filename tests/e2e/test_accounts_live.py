"""The login lockout seen from outside: a live server behind a trusted proxy (loopback here, so X-Forwarded-For
names the client), a stranger who types the admin's name with wrong passwords, and the admin signing in anyway."""
from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests import personas
from tests.servers import ApertureServer

pytestmark = pytest.mark.live

STRANGER, ADMIN_DESK = "203.0.113.66", "198.51.100.10"


@pytest.fixture(scope="module")
def server():
    instance = ApertureServer(extra_env={"APERTURE_TRUSTED_PROXIES": "127.0.0.1"}).start()
    personas.live_admin(instance, "chief", password=personas.PASSWORD)
    yield instance
    instance.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def sign_in(server, password: str, *, client_address: str) -> tuple[int, str]:
    """One browser-like sign-in (login page, CSRF token, POST) as seen by the proxy for `client_address`."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect)
    headers = {"X-Forwarded-For": client_address}
    page = opener.open(urllib.request.Request(f"{server.url}/accounts/login/", headers=headers)).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "chief", "password": password}).encode()
    try:
        response = opener.open(urllib.request.Request(f"{server.url}/accounts/login/", data=form, headers=headers))
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    return response.status, response.read().decode()


def test_a_stranger_cannot_lock_the_admin_out(server):
    for _ in range(4):
        assert sign_in(server, "guess", client_address=STRANGER)[0] == 200
    status, page = sign_in(server, "guess", client_address=STRANGER)
    assert status == 429 and "Sign-in paused" in page
    assert sign_in(server, personas.PASSWORD, client_address=STRANGER)[0] == 429
    assert sign_in(server, personas.PASSWORD, client_address=ADMIN_DESK)[0] == 302  # signed in: redirected to the app
