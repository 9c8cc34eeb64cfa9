"""Login throttling: after APERTURE_LOGIN_MAX_FAILURES failed logins for a username (or from one address) within
APERTURE_LOGIN_LOCK_SECONDS, further attempts are refused without checking the password, for the viewer's and the
admin's login forms alike. Passwords stay hashed with Django's default hasher."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from imaging.models import LoginFailure


def _address(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def login_locked(username: str, address: str | None) -> bool:
    since = timezone.now() - timedelta(seconds=settings.APERTURE_LOGIN_LOCK_SECONDS)
    recent = LoginFailure.objects.filter(at__gte=since)
    match = Q(username=username[:150]) | (Q(source_ip=address) if address else Q(pk__in=[]))
    return recent.filter(match).count() >= settings.APERTURE_LOGIN_MAX_FAILURES


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username and login_locked(username, _address(request)):
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed)
def record_failure(sender, credentials, request=None, **kwargs) -> None:
    horizon = timezone.now() - timedelta(seconds=settings.APERTURE_LOGIN_LOCK_SECONDS)
    LoginFailure.objects.filter(at__lt=horizon).delete()
    LoginFailure.objects.create(username=str(credentials.get("username", ""))[:150], source_ip=_address(request))


@receiver(user_logged_in)
def clear_failures(sender, user, request=None, **kwargs) -> None:
    LoginFailure.objects.filter(username=user.get_username()).delete()
