"""Share links in process: the viewer opened without a login and framed only by allowed origins, links that are
tampered, expired, revoked or bound to a user, the websocket a link opens, and one token per link."""
from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.utils import timezone

from imaging.models import ShareLink
from imaging.services.sharing import (
    ShareLinkInvalid,
    ShareLinkProblem,
    share_link_create,
    share_link_resolve,
    share_link_revoke,
)
from tests.viewer_study import share_link_token
from viewer.consumers import RenderConsumer

pytestmark = pytest.mark.django_db(transaction=True)


def test_share_link_opens_the_viewer_without_login_and_may_be_framed(settings, viewer_data):
    settings.APERTURE_EMBED_ORIGINS = ["https://portal.example.org"]
    token = share_link_token(viewer_data, window_preset="2")
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
    token = share_link_token(viewer_data)
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
    token = share_link_token(viewer_data, bound_user=viewer_data.clinician)
    assert Client().get(f"/share/{token}/").status_code == 302  # to the login page
    other = Client()
    other.force_login(viewer_data.outsider)
    assert other.get(f"/share/{token}/").status_code == 403
    owner = Client()
    owner.force_login(viewer_data.clinician)
    assert owner.get(f"/share/{token}/").status_code == 200


def test_share_token_opens_only_its_study_on_the_websocket(viewer_data):
    data = viewer_data
    token = share_link_token(data)
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


def test_a_share_link_has_one_token_and_older_timestamped_tokens_still_open(viewer_data):
    from django.core import signing

    from imaging.services.sharing import ShareLinkInvalid, share_link_resolve, share_token

    link = share_link_resolve(share_link_token(viewer_data))
    assert share_token(link) == share_token(link)
    assert share_link_resolve(signing.dumps(str(link.id), salt="aperture.share-link")).pk == link.pk
    with pytest.raises(ShareLinkInvalid):
        share_link_resolve(share_token(link)[:-2] + "xx")


def _problem(token: str, user=None) -> ShareLinkInvalid:
    with pytest.raises(ShareLinkInvalid) as raised:
        share_link_resolve(token, user=user)
    return raised.value


def _link(data, **kwargs) -> tuple[ShareLink, str]:
    return share_link_create(created_by=None, datastore_id=data.datastore.id, study_uid=data.study_uid,
                             expires_in=timedelta(hours=1), **kwargs)


def test_a_share_link_that_does_not_open_says_why_as_a_member_not_a_sentence(viewer_data):
    link, token = _link(viewer_data)
    assert _problem(token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")).problem is ShareLinkProblem.ALTERED
    ShareLink.objects.filter(pk=link.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _problem(token).problem is ShareLinkProblem.EXPIRED
    revoked, revoked_token = _link(viewer_data)
    share_link_revoke(link_id=revoked.pk)
    assert _problem(revoked_token).problem is ShareLinkProblem.REVOKED
    _, bound_token = _link(viewer_data, bound_user=viewer_data.clinician)
    bound = _problem(bound_token)
    assert bound.problem is ShareLinkProblem.OTHER_USER and bound.needs_login
    assert bound.reason == str(bound) == ShareLinkProblem.OTHER_USER.value
    assert _problem(bound_token, user=viewer_data.outsider).problem is ShareLinkProblem.OTHER_USER
    ShareLink.objects.all().delete()
    unknown = _problem(token)
    assert unknown.problem is ShareLinkProblem.UNKNOWN and not unknown.needs_login
