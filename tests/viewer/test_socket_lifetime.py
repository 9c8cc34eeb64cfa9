"""Open render sockets end with what opened them (issue 11 item 6), in process: logout, deactivation, deletion,
revocation and expiry of a share link, a session that is gone, and a removed grant each close a socket that is
rendering; another user's logout does not."""
from __future__ import annotations

import asyncio
from datetime import timedelta
from importlib import import_module

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from imaging.models import DatastoreGrant
from imaging.services.sharing import share_link_create, share_link_revoke
from viewer.consumers import RenderConsumer

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in(user) -> tuple[Client, WebsocketCommunicator]:
    """A browser session for `user` and a socket opened with it, as AuthMiddlewareStack would build the scope."""
    client = Client()
    client.force_login(user)
    comm = WebsocketCommunicator(RenderConsumer.as_asgi(), "/ws/render/")
    comm.scope["user"] = user
    comm.scope["session"] = import_module(settings.SESSION_ENGINE).SessionStore(client.session.session_key)
    return client, comm


async def open_image_set(comm, data) -> None:
    connected, _ = await comm.connect()
    assert connected
    await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
    assert (await comm.receive_json_from(timeout=10))["type"] == "opened"


async def assert_ended(comm, reason_part: str) -> None:
    message = await comm.receive_json_from(timeout=10)
    assert message["type"] == "ended" and reason_part in message["message"], message
    closed = await comm.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4401}


async def assert_still_renders(comm) -> None:
    await comm.send_json_to({"type": "render", "id": 1, "frame": 0, "size": [64, 64]})
    assert isinstance(await comm.receive_from(timeout=10), bytes)


def test_logout_closes_the_sessions_sockets_only(viewer_data):
    clinician_client, clinician_socket = signed_in(viewer_data.clinician)
    DatastoreGrant.objects.create(user=viewer_data.outsider, datastore=viewer_data.datastore)
    _, other_socket = signed_in(viewer_data.outsider)

    async def scenario():
        await open_image_set(clinician_socket, viewer_data)
        await open_image_set(other_socket, viewer_data)
        response = await sync_to_async(clinician_client.post)("/accounts/logout/")
        assert response.status_code == 302
        await assert_ended(clinician_socket, "signed out")
        await assert_still_renders(other_socket)
        await other_socket.disconnect()

    async_to_sync(scenario)()


@pytest.mark.parametrize("how", ["deactivate", "delete"])
def test_deactivating_or_deleting_the_user_closes_their_sockets(viewer_data, how):
    _, comm = signed_in(viewer_data.clinician)

    def end_user():
        user = viewer_data.clinician
        if how == "deactivate":
            user.is_active = False
            user.save()
        else:
            user.delete()

    async def scenario():
        await open_image_set(comm, viewer_data)
        await sync_to_async(end_user)()
        await assert_ended(comm, "deactivated")

    async_to_sync(scenario)()


def share_socket(viewer_data, expires_in=timedelta(hours=1)):
    link, token = share_link_create(created_by=None, datastore_id=viewer_data.datastore.id,
                                    study_uid=viewer_data.study_uid, expires_in=expires_in)
    comm = WebsocketCommunicator(RenderConsumer.as_asgi(), f"/ws/render/?share={token}")
    comm.scope["user"] = AnonymousUser()
    return link, comm


def test_revoking_a_share_link_closes_its_sockets(viewer_data):
    link, comm = share_socket(viewer_data)
    _, other_link_socket = share_socket(viewer_data)

    async def scenario():
        await open_image_set(comm, viewer_data)
        await open_image_set(other_link_socket, viewer_data)
        await sync_to_async(share_link_revoke)(link_id=link.pk)
        await assert_ended(comm, "revoked")
        await assert_still_renders(other_link_socket)
        await other_link_socket.disconnect()

    async_to_sync(scenario)()


def test_a_share_link_socket_closes_when_the_link_expires(viewer_data):
    _, comm = share_socket(viewer_data, expires_in=timedelta(seconds=2))

    async def scenario():
        await open_image_set(comm, viewer_data)
        await assert_ended(comm, "expired")

    async_to_sync(scenario)()


def test_open_rechecks_the_session(viewer_data):
    client, comm = signed_in(viewer_data.clinician)

    async def scenario():
        await open_image_set(comm, viewer_data)
        await sync_to_async(client.session.delete)()  # gone without a logout: timed out, or cleared by an admin
        await comm.send_json_to({"type": "open", "datastore": viewer_data.datastore.id,
                                 "imageSet": viewer_data.ct_image_set.id})
        await assert_ended(comm, "session has ended")

    async_to_sync(scenario)()


def test_a_removed_grant_closes_the_socket_at_the_next_check(viewer_data, settings):
    settings.APERTURE_WS_RECHECK_SECONDS = 1
    _, comm = signed_in(viewer_data.clinician)

    async def scenario():
        await open_image_set(comm, viewer_data)
        await sync_to_async(DatastoreGrant.objects.filter(user=viewer_data.clinician).delete)()
        await assert_ended(comm, "no longer have access")

    async_to_sync(scenario)()


def test_rendering_keeps_the_session_alive(viewer_data, settings):
    settings.APERTURE_WS_RECHECK_SECONDS = 1
    client, comm = signed_in(viewer_data.clinician)
    session = client.session
    expiry_before = session.get_expiry_date()

    async def scenario():
        await open_image_set(comm, viewer_data)
        await assert_still_renders(comm)
        await comm.receive_nothing(timeout=1.5)
        await comm.disconnect()

    async_to_sync(scenario)()
    store = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
    assert store.get_expiry_date() > expiry_before


def test_several_web_processes_need_a_channel_layer_they_share():
    """Logout and revocation reach sockets through the channel layer: the in-memory one reaches one process."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="Redis channel layer"):
        call_command("serve", "127.0.0.1:1", workers=2)


def test_an_idle_socket_is_pinged_and_its_pongs_are_accepted(viewer_data, settings):
    settings.APERTURE_WS_PING_SECONDS = 1
    _, comm = signed_in(viewer_data.clinician)

    async def scenario():
        await open_image_set(comm, viewer_data)
        for _ in range(2):
            assert await comm.receive_json_from(timeout=10) == {"type": "ping", "interval": 1}
            await comm.send_json_to({"type": "pong"})
        await assert_still_renders(comm)  # no error answered the pongs: the next message is the frame
        await comm.disconnect()

    async_to_sync(scenario)()


def test_the_socket_rejoins_its_groups_at_each_recheck(viewer_data, settings):
    """Group membership expires in channels-redis (a day): a socket kept open longer must still hear a logout."""
    settings.APERTURE_WS_RECHECK_SECONDS = 1
    client, comm = signed_in(viewer_data.clinician)

    async def scenario():
        await open_image_set(comm, viewer_data)
        layer = get_channel_layer()
        for group in list(layer.groups):
            layer.groups[group].clear()  # as if every membership had expired
        deadline = asyncio.get_running_loop().time() + 10
        while not any(layer.groups.values()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        response = await sync_to_async(client.post)("/accounts/logout/")
        assert response.status_code == 302
        await assert_ended(comm, "signed out")

    async_to_sync(scenario)()
