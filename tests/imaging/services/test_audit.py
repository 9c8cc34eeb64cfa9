"""The audit trail in process: page views, shared views and frame streams are recorded without tokens, the table
is append-only, and admins search and export it as JSON lines."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client

from imaging.models import AppendOnlyError, AuditEvent
from tests.viewer_study import share_link_token
from viewer.consumers import RenderConsumer

pytestmark = pytest.mark.django_db(transaction=True)


def test_page_views_and_stream_starts_are_audited(viewer_data):
    data = viewer_data
    client = Client()
    client.force_login(data.clinician)
    client.get(f"/studies/{data.datastore.id}/{data.study_uid}/")
    event = AuditEvent.objects.get(event_name="ViewStudy")
    assert event.username == "clinician" and event.study_instance_uid == data.study_uid
    assert event.patient_id == "PID-1" and event.event_category == "Data"
    token = share_link_token(data)
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
