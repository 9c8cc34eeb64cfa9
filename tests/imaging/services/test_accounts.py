"""People and the records they leave: login throttling that nobody can turn against someone else, users who can be
deleted or deactivated while their audit trail stays, and an audit table that only the retention command prunes."""
from __future__ import annotations

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from imaging.models import AccessKey, AuditEvent
from imaging.services.accesskeys import accesskey_create, accesskey_for_signing
from tests import personas
from tests.servers import free_port

pytestmark = pytest.mark.django_db(transaction=True)

ATTACKER, ADMIN_DESK, PROXY = "203.0.113.66", "198.51.100.10", "10.0.0.254"


@pytest.fixture
def admin_user():
    return personas.admin("chief", password=personas.PASSWORD)


def sign_in(username: str, password: str, *, path: str = "/accounts/login/", **client_kwargs):
    client = Client(**client_kwargs)
    return client, client.post(path, {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


class TestLoginThrottle:
    def test_wrong_passwords_lock_the_name_only_from_that_address(self, admin_user):
        for _ in range(4):
            _, response = sign_in("chief", "guess", REMOTE_ADDR=ATTACKER)
            assert response.status_code == 200 and b"did not match" in response.content
        _, fifth = sign_in("chief", "guess", REMOTE_ADDR=ATTACKER)
        assert fifth.status_code == 429 and b"Sign-in paused" in fifth.content
        attacker, refused = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=ATTACKER)
        assert refused.status_code == 429 and not signed_in(attacker)
        owner, accepted = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=ADMIN_DESK)
        assert accepted.status_code == 302 and signed_in(owner)
        # Other names from the attacker's address are not locked by the failures on this one.
        personas.user("colleague", password=personas.PASSWORD)
        colleague, response = sign_in("colleague", personas.PASSWORD, REMOTE_ADDR=ATTACKER)
        assert response.status_code == 302 and signed_in(colleague)

    def test_hammering_a_locked_form_writes_nothing(self, admin_user):
        from axes.models import AccessAttempt

        for _ in range(5):
            sign_in("chief", "guess", REMOTE_ADDR=ATTACKER)
        recorded = list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time"))
        for _ in range(20):
            assert sign_in("chief", "guess", REMOTE_ADDR=ATTACKER)[1].status_code == 429
        assert list(AccessAttempt.objects.values_list("failures_since_start", "attempt_time")) == recorded

    def test_an_address_that_sprays_many_names_is_locked(self, settings, admin_user):
        settings.APERTURE_LOGIN_MAX_FAILURES_PER_ADDRESS = 6
        for n in range(6):
            sign_in(f"someone-{n}", "guess", REMOTE_ADDR=ATTACKER)
        attacker, refused = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=ATTACKER)
        assert refused.status_code == 429 and not signed_in(attacker)
        owner, accepted = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=ADMIN_DESK)
        assert accepted.status_code == 302 and signed_in(owner)

    def test_the_admin_login_is_throttled_the_same_way(self, admin_user):
        for _ in range(5):
            _, response = sign_in("chief", "guess", path="/admin/login/", REMOTE_ADDR=ATTACKER)
        assert response.status_code == 429 and b"Sign-in paused" in response.content
        owner, accepted = sign_in("chief", personas.PASSWORD, path="/admin/login/", REMOTE_ADDR=ADMIN_DESK)
        assert accepted.status_code == 302 and signed_in(owner)

    def test_forwarded_for_counts_only_from_a_trusted_proxy(self, settings, admin_user):
        settings.APERTURE_TRUSTED_PROXIES = [PROXY]
        for _ in range(5):
            sign_in("chief", "guess", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ATTACKER)
        _, refused = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ATTACKER)
        assert refused.status_code == 429
        # The admin behind the same proxy is another client.
        owner, accepted = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=ADMIN_DESK)
        assert accepted.status_code == 302 and signed_in(owner)
        # A client that writes the header itself cannot choose the address it is counted under: not directly ...
        direct, response = sign_in("chief", personas.PASSWORD, REMOTE_ADDR="192.0.2.5", HTTP_X_FORWARDED_FOR=ATTACKER)
        assert response.status_code == 302 and signed_in(direct)
        # ... nor through the proxy, which appends the address it saw after whatever the client sent.
        spoofed, response = sign_in("chief", personas.PASSWORD, REMOTE_ADDR=PROXY,
                                    HTTP_X_FORWARDED_FOR=f"{ATTACKER}, 192.0.2.6")
        assert response.status_code == 302 and signed_in(spoofed)


class TestUsersWithAuditHistory:
    @pytest.fixture
    def clinician(self):
        user = personas.clinician(username="leaving-clinician", password=personas.PASSWORD)
        AuditEvent.objects.create(event_name="ViewStudy", event_type="ViewerEvent", user=user, username=user.username,
                                  principal_arn="arn:aws:iam::000000000000:user/leaving-clinician")
        return user

    def test_the_delete_page_says_the_trail_stays_and_offers_deactivation(self, admin_client, clinician):
        confirm = admin_client.get(f"/admin/auth/user/{clinician.pk}/delete/")
        assert confirm.status_code == 200
        assert b"has 1 audit event(s)" in confirm.content and b"Deactivating" in confirm.content

    def test_deleting_a_user_keeps_their_audit_events(self, admin_client, clinician):
        deleted = admin_client.post(f"/admin/auth/user/{clinician.pk}/delete/", {"post": "yes"})
        assert deleted.status_code == 302
        assert not get_user_model().objects.filter(pk=clinician.pk).exists()
        event = AuditEvent.objects.get(event_name="ViewStudy")
        assert event.username == "leaving-clinician" and event.user_id == clinician.pk
        assert event.principal_arn.endswith("user/leaving-clinician")
        assert admin_client.get(f"/admin/imaging/auditevent/{event.pk}/change/").status_code == 200
        listing = admin_client.get("/admin/imaging/auditevent/?q=leaving-clinician")
        assert listing.status_code == 200 and b"ViewStudy" in listing.content

    def test_deactivating_a_user_refuses_sign_in_and_keys(self, admin_client, clinician):
        issued = accesskey_create(user=clinician, name="pacs", policy="AWSHealthImagingReadOnlyAccess")
        response = admin_client.post("/admin/auth/user/", {"action": "deactivate_users",
                                                           "_selected_action": [clinician.pk]}, follow=True)
        assert b"Deactivated 1 user(s)" in response.content
        assert get_user_model().objects.get(pk=clinician.pk).is_active is False
        assert accesskey_for_signing(access_key_id=issued.access_key_id) is None
        assert AccessKey.objects.filter(user=clinician).exists()
        client, _ = sign_in("leaving-clinician", personas.PASSWORD, REMOTE_ADDR=ADMIN_DESK)
        assert not signed_in(client)
        assert AuditEvent.objects.filter(user_id=clinician.pk).count() == 1


def _event_logged_at(when, name: str) -> AuditEvent:
    with mock.patch("django.utils.timezone.now", return_value=when):
        return AuditEvent.objects.create(event_name=name)


class TestAppendOnlyAudit:
    def test_rows_cannot_be_deleted_in_sql(self):
        _event_logged_at(timezone.now(), "Probe")
        for delete in (lambda: AuditEvent.objects.all().delete(),
                       lambda: connection.cursor().execute("DELETE FROM imaging_auditevent")):
            with pytest.raises(DatabaseError):
                with transaction.atomic():
                    delete()
        assert AuditEvent.objects.count() == 1

    def test_only_the_prune_command_removes_rows_past_retention(self, settings, capsys):
        settings.APERTURE_AUDIT_RETENTION_DAYS = 30
        now = timezone.now()
        _event_logged_at(now - timedelta(days=31), "Expired")
        _event_logged_at(now - timedelta(days=29), "Kept")
        call_command("audit_prune", "--dry-run")
        assert "1 audit event(s)" in capsys.readouterr().out and AuditEvent.objects.count() == 2
        call_command("audit_prune")
        assert "1 audit event(s)" in capsys.readouterr().out
        assert list(AuditEvent.objects.values_list("event_name", flat=True)) == ["Kept"]
        # The window the command opened is closed again: the remaining row is as protected as before.
        with pytest.raises(DatabaseError):
            with transaction.atomic():
                AuditEvent.objects.all().delete()


class TestAnonymousAuditBudget:
    """The bound on what unsigned requests can write to the audit table, on Redis as several web processes share it
    (the window itself: tests/imaging/sharedstate; the live test drives it end to end)."""

    def test_per_address_and_total_budgets(self, settings):
        from imaging.services.audit import anonymous_refusal_admit

        settings.APERTURE_SHARED_STATE_BACKEND = "imaging.sharedstate.backends.redis.RedisSharedState"
        settings.REDIS_URL = "redis://127.0.0.1:6379/13"
        settings.APERTURE_SHARED_STATE_PREFIX = f"test-{uuid.uuid4().hex}"

        def admitted(address: str, times: int) -> int:
            return sum(anonymous_refusal_admit(address=address, per_address=3, total=5) for _ in range(times))

        assert admitted("192.0.2.1", 10) == 3
        assert admitted("192.0.2.2", 10) == 2  # the total is spent
        assert admitted("192.0.2.3", 1) == 0

    def test_rows_are_written_while_the_shared_state_is_unreachable(self, settings):
        from imaging.services.audit import anonymous_refusal_admit

        settings.APERTURE_SHARED_STATE_BACKEND = "imaging.sharedstate.backends.redis.RedisSharedState"
        settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
        assert all(anonymous_refusal_admit(address="192.0.2.1", per_address=1, total=1) for _ in range(3))
