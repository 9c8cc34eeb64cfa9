"""Signing in, in process: the login form locks a name after repeated failures from one address, and sessions are
short-lived with HTTP-only cookies (tests/imaging/services/test_accounts.py has the rest of the lockout)."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.personas import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_is_throttled_after_repeated_failures(settings, viewer_data):
    settings.APERTURE_LOGIN_MAX_FAILURES = 3
    client = Client()
    for expected in (200, 200, 429):  # the third failure is the one that locks
        assert client.post("/accounts/login/", {"username": "clinician", "password": "wrong"}).status_code == expected
    refused = client.post("/accounts/login/", {"username": "clinician", "password": PASSWORD})
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    other = Client(REMOTE_ADDR="10.9.9.9")
    assert other.post("/accounts/login/", {"username": "outsider", "password": PASSWORD}).status_code == 302
    # The lock is on the name from that address only (tests/imaging/services/test_accounts.py has the rest).
    owner = Client(REMOTE_ADDR="10.9.9.10")
    correct = {"username": "clinician", "password": PASSWORD}
    assert owner.post("/accounts/login/", correct).status_code == 302


def test_sessions_expire_when_idle_and_cookies_are_http_only(settings):
    assert settings.SESSION_SAVE_EVERY_REQUEST is True and settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.PASSWORD_HASHERS[0].endswith("PBKDF2PasswordHasher")
