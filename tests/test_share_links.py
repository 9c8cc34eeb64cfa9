"""Roles, share links, embedding headers, the audit trail, login throttling and metrics, in process."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from imaging.models import AppendOnlyError, AuditEvent, ShareLink
from imaging.services.sharing import share_link_create, share_link_revoke
from viewer.consumers import RenderConsumer

pytestmark = pytest.mark.django_db(transaction=True)


def make_link(data, **kwargs) -> str:
    _, token = share_link_create(created_by=None, datastore_id=data.datastore.id, study_uid=data.study_uid,
                                 expires_in=kwargs.pop("expires_in", timedelta(hours=1)), **kwargs)
    return token


def test_share_link_opens_the_viewer_without_login_and_may_be_framed(settings, viewer_data):
    settings.APERTURE_EMBED_ORIGINS = ["https://portal.example.org"]
    token = make_link(viewer_data, window_preset="2")
    response = Client().get(f"/share/{token}/")
    assert response.status_code == 200 and b"<canvas" in response.content
    assert "X-Frame-Options" not in response
    assert response["Content-Security-Policy"] == "frame-ancestors 'self' https://portal.example.org"
    assert b'data-initial-preset="2"' in response.content and b"series-strip" not in response.content  # browser hidden
    shown = Client().get(f"/share/{token}/?browser=1")
    assert b"series-strip" in shown.content
    # Every other page refuses to be framed.
    assert Client().get("/accounts/login/")["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("breakage", ["tampered", "expired", "revoked", "unknown"])
def test_broken_share_links_show_a_clear_error(viewer_data, breakage):
    token = make_link(viewer_data)
    link = ShareLink.objects.get()
    if breakage == "tampered":
        token = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    elif breakage == "expired":
        ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    elif breakage == "revoked":
        share_link_revoke(link_id=link.pk)
    else:
        ShareLink.objects.all().delete()
    response = Client().get(f"/share/{token}/")
    assert response.status_code == 403
    assert b"This link cannot be opened" in response.content


def test_link_bound_to_a_user_needs_that_user(viewer_data):
    token = make_link(viewer_data, bound_user=viewer_data.clinician)
    assert Client().get(f"/share/{token}/").status_code == 302  # to the login page
    other = Client()
    other.force_login(viewer_data.outsider)
    assert other.get(f"/share/{token}/").status_code == 403
    owner = Client()
    owner.force_login(viewer_data.clinician)
    assert owner.get(f"/share/{token}/").status_code == 200


def test_share_token_opens_only_its_study_on_the_websocket(viewer_data):
    data = viewer_data
    token = make_link(data)
    rgb_set = data.ct_image_set.__class__.objects.exclude(pk=data.ct_image_set.pk).get(datastore=data.datastore)

    async def scenario():
        comm = WebsocketCommunicator(RenderConsumer.as_asgi(), f"/ws/render/?share={token}")
        comm.scope["user"] = AnonymousUser()
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
        assert (await comm.receive_json_from(timeout=10))["type"] == "opened"
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": rgb_set.id})
        assert (await comm.receive_json_from(timeout=10))["type"] == "error"  # another study
        await comm.disconnect()
        forged = WebsocketCommunicator(RenderConsumer.as_asgi(), "/ws/render/?share=forged")
        forged.scope["user"] = AnonymousUser()
        assert await forged.connect() == (False, 4401)  # refused at the handshake
        await forged.disconnect()
    async_to_sync(scenario)()


def test_page_views_and_stream_starts_are_audited(viewer_data):
    data = viewer_data
    client = Client()
    client.force_login(data.clinician)
    client.get(f"/studies/{data.datastore.id}/{data.study_uid}/")
    event = AuditEvent.objects.get(event_name="ViewStudy")
    assert event.username == "clinician" and event.study_instance_uid == data.study_uid
    assert event.patient_id == "PID-1" and event.event_category == "Data"
    token = make_link(data)
    Client().get(f"/share/{token}/")
    shared = AuditEvent.objects.get(event_name="ViewSharedImageSet")
    assert shared.study_instance_uid == data.study_uid and shared.username == ""

    async def scenario():
        comm = WebsocketCommunicator(RenderConsumer.as_asgi(), "/ws/render/")
        comm.scope["user"] = data.clinician
        await comm.connect()
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
        await comm.receive_json_from(timeout=10)
        await comm.disconnect()
    async_to_sync(scenario)()
    stream = AuditEvent.objects.get(event_name="StartFrameStream")
    assert stream.username == "clinician" and stream.image_set_id == data.ct_image_set.id
    assert stream.study_instance_uid == data.study_uid
    # No token ever lands in the audit parameters either.
    assert token not in json.dumps(list(AuditEvent.objects.values_list("request_parameters", flat=True)))


def test_audit_events_are_append_only(viewer_data):
    Client().get("/accounts/login/")
    event = AuditEvent.objects.create(event_name="Probe")
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(Exception):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE imaging_auditevent SET event_name = 'Changed'")


def test_audit_search_and_json_lines_export(admin_client, viewer_data):
    client = Client()
    client.force_login(viewer_data.clinician)
    client.get(f"/studies/{viewer_data.datastore.id}/{viewer_data.study_uid}/")
    listing = admin_client.get("/admin/imaging/auditevent/?q=PID-1")
    assert listing.status_code == 200 and b"ViewStudy" in listing.content
    export = admin_client.get("/admin/imaging/auditevent/export.jsonl?q=clinician")
    lines = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
    assert lines and all(line["userIdentity"]["principalId"] == "clinician" for line in lines)
    assert {"eventVersion", "eventID", "eventTime", "eventName", "sourceIPAddress"} <= set(lines[0])


def test_login_is_throttled_after_repeated_failures(settings, viewer_data):
    settings.APERTURE_LOGIN_MAX_FAILURES = 3
    client = Client()
    for expected in (200, 200, 429):  # the third failure is the one that locks
        assert client.post("/accounts/login/", {"username": "clinician", "password": "wrong"}).status_code == expected
    refused = client.post("/accounts/login/", {"username": "clinician", "password": "correct horse battery"})
    assert refused.status_code == 429 and "_auth_user_id" not in client.session
    other = Client(REMOTE_ADDR="10.9.9.9")
    assert other.post("/accounts/login/", {"username": "outsider", "password": "correct horse battery"}).status_code == 302
    # The lock is on the name from that address only (tests/test_accounts.py has the rest).
    owner = Client(REMOTE_ADDR="10.9.9.10")
    correct = {"username": "clinician", "password": "correct horse battery"}
    assert owner.post("/accounts/login/", correct).status_code == 302


def test_sessions_expire_when_idle_and_cookies_are_http_only(settings):
    assert settings.SESSION_SAVE_EVERY_REQUEST is True and settings.SESSION_COOKIE_AGE == 30 * 60
    assert settings.SESSION_COOKIE_HTTPONLY is True
    assert settings.PASSWORD_HASHERS[0].endswith("PBKDF2PasswordHasher")


def test_metrics_need_the_token(settings, admin_client, viewer_data):
    settings.APERTURE_METRICS_TOKEN = "s3cret-metrics"
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    Client().get("/datastore")  # one refused API call to count
    body = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics").content.decode()
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(body) for sample in family.samples}
    refused = (("datastore_id", ""), ("datastore_type", "DICOM"), ("operation", "ListDatastores"),
               ("status_code", "403"))
    assert samples[("aperture_imaging_call_count_total", refused)] >= 1
    tier = (("datastore_id", viewer_data.datastore.id), ("storage_tier", "FREQUENT_ACCESS"))
    assert samples[("aperture_imaging_image_sets", tier)] == 2


def test_a_share_link_has_one_token_and_older_timestamped_tokens_still_open(viewer_data):
    from django.core import signing

    from imaging.services.sharing import ShareLinkInvalid, share_link_resolve, share_token

    link = share_link_resolve(make_link(viewer_data))
    assert share_token(link) == share_token(link)
    assert share_link_resolve(signing.dumps(str(link.id), salt="aperture.share-link")).pk == link.pk
    with pytest.raises(ShareLinkInvalid):
        share_link_resolve(share_token(link)[:-2] + "xx")
