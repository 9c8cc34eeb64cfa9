"""Login throttling through django-axes, for the viewer's and the admin's login forms alike.

Failures are counted per (username, client address) and per client address, never per username alone: a stranger
who types the admin's name wrong five times locks only the admin-from-that-address pair, and the admin still signs
in from anywhere else. The client address is the one the audit trail records (`client_ip`, which believes
X-Forwarded-For only from `APERTURE_TRUSTED_PROXIES`), so a client cannot pick the address it is counted under.

Axes compares one number with one limit (`AXES_FAILURE_LIMIT`, our APERTURE_LOGIN_MAX_FAILURES), while an address
shared by many people (a hospital's NAT) deserves a higher limit of its own (APERTURE_LOGIN_MAX_FAILURES_PER_ADDRESS).
`ApertureAxesHandler.get_failures` folds the two counts into the one number axes compares. A locked-out attempt
gets the page `registration/locked_out.html` with status 429 (the admin's login too); passwords are never checked
while locked, and attempts while locked are not written (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False).
"""
from __future__ import annotations

from datetime import timedelta

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from imaging.services.audit import client_ip


def client_address(request: HttpRequest) -> str | None:
    """AXES_CLIENT_IP_CALLABLE: the address failures are counted under."""
    return client_ip(request.META)


def failure_limit(request: HttpRequest, credentials: dict | None = None) -> int:
    """AXES_FAILURE_LIMIT: failures of one username from one address before that pair is locked."""
    return settings.APERTURE_LOGIN_MAX_FAILURES


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """AXES_COOLOFF_TIME: how long failures count, and so how long a lock lasts after the last one."""
    return timedelta(seconds=settings.APERTURE_LOGIN_LOCK_SECONDS)


def lockout_parameters(request: HttpRequest, credentials: dict | None = None) -> list[list[str] | str]:
    """AXES_LOCKOUT_PARAMETERS: the pair first, then the address alone (the order `get_failures` relies on)."""
    return [["username", "ip_address"], "ip_address"]


def lockout_response(request: HttpRequest, original_response=None, credentials: dict | None = None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a page that says what happened and for how long, with status 429."""
    context = {"username": (credentials or {}).get("username") or request.POST.get("username", ""),
               "minutes": max(1, -(-settings.APERTURE_LOGIN_LOCK_SECONDS // 60))}
    return render(request, "registration/locked_out.html", context, status=429)


class ApertureAxesHandler(AxesDatabaseHandler):
    """Axes' database handler (counts shared by every web process) with a separate per-address limit."""

    def get_failures(self, request: HttpRequest, credentials: dict | None = None) -> int:
        pair_attempts, address_attempts = self.get_user_attempts(request, credentials)
        pair = pair_attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
        address = address_attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0
        if address >= settings.APERTURE_LOGIN_MAX_FAILURES_PER_ADDRESS:
            return max(pair, settings.APERTURE_LOGIN_MAX_FAILURES)
        return pair
