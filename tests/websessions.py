"""Signing in to a live server the way a browser does (login form, CSRF token, session cookie), for tests that need
a session outside Chromium: raw HTTP requests and websocket clients."""
from __future__ import annotations

import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request

_CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Browserless:
    """A cookie-keeping HTTP client for one live server."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    def request(self, path: str, *, data: dict | None = None, method: str | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if data is not None:
            request.add_header("Referer", self.base_url + path)
            request.add_header("X-CSRFToken", self.cookie("csrftoken") or "")
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def form_token(self, path: str) -> str:
        status, page = self.request(path)
        match = _CSRF_INPUT.search(page)
        assert match, f"no CSRF token on {path} ({status})"
        return match.group(1)

    def log_in(self, username: str, password: str, path: str = "/accounts/login/") -> "Browserless":
        token = self.form_token(path)
        status, _ = self.request(path, data={"csrfmiddlewaretoken": token, "username": username, "password": password})
        assert status == 302 and self.cookie("sessionid"), f"login as {username} failed ({status})"
        return self

    def log_out(self) -> int:
        status, _ = self.request("/accounts/logout/", data={"csrfmiddlewaretoken": self.cookie("csrftoken") or ""})
        return status
