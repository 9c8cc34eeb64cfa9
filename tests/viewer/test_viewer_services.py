"""The viewer's selectors and render orchestration in process (viewer.selectors, viewer.frames, viewer.imagemeta):
who may open what, what is cached and by which key, and why a share link does not open (a typed problem)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from imaging.errors import AccessDenied
from imaging.models import DatastoreGrant, ShareLink
from imaging.services.sharing import (
    ShareLinkInvalid,
    ShareLinkProblem,
    share_link_create,
    share_link_resolve,
    share_link_revoke,
)
from viewer import frames, imagemeta, selectors

pytestmark = pytest.mark.django_db(transaction=True)


def _link(data, **kwargs) -> tuple[ShareLink, str]:
    return share_link_create(created_by=None, datastore_id=data.datastore.id, study_uid=data.study_uid,
                             expires_in=timedelta(hours=1), **kwargs)


def _problem(token: str, user=None) -> ShareLinkInvalid:
    with pytest.raises(ShareLinkInvalid) as raised:
        share_link_resolve(token, user=user)
    return raised.value


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


def test_an_image_set_opens_for_a_grant_or_a_covering_share_link_and_closes_with_the_grant(viewer_data):
    data = viewer_data
    ids = {"datastore_id": data.datastore.id, "image_set_id": data.ct_image_set.id}
    view = selectors.viewable_image_set(user=data.clinician, **ids)
    with pytest.raises(AccessDenied):
        selectors.viewable_image_set(user=data.outsider, **ids)
    _, token = _link(data)
    assert selectors.viewable_image_set(user=data.outsider, share_token=token, **ids).image_set_id == view.image_set_id
    assert selectors.can_still_view(user=data.clinician, share_token=None, view=view)
    DatastoreGrant.objects.filter(user=data.clinician).delete()
    assert not selectors.can_still_view(user=data.clinician, share_token=None, view=view)
    assert selectors.can_still_view(user=data.clinician, share_token=token, view=view)


def test_an_image_set_view_is_read_once_per_content_version(viewer_data, monkeypatch):
    data = viewer_data
    first = imagemeta.image_set_view(datastore_id=data.datastore.id, image_set_id=data.ct_image_set.id)
    built = []
    monkeypatch.setattr(imagemeta, "build_view", lambda *args: built.append(args) or first)
    again = imagemeta.image_set_view(datastore_id=data.datastore.id, image_set_id=data.ct_image_set.id)
    assert again is first and not built
    data.ct_image_set.__class__.objects.filter(pk=data.ct_image_set.pk).update(
        content_version=data.ct_image_set.content_version + 1)
    with pytest.raises(Exception):  # a new version is a new key: it is read (and here has no version row)
        imagemeta.image_set_view(datastore_id=data.datastore.id, image_set_id=data.ct_image_set.id)


def test_thumbnails_and_lut_pipelines_are_kept_per_version(viewer_data, monkeypatch):
    data = viewer_data
    view = selectors.viewable_image_set(user=data.clinician, datastore_id=data.datastore.id,
                                        image_set_id=data.ct_image_set.id)
    body = frames.series_thumbnail(view=view, series_uid=data.ct_series)
    assert body[:2] == b"\xff\xd8"
    assert frames._thumbnails[(view.image_set_id, view.version, data.ct_series)] is body
    assert frames._thumbnails.currsize >= len(body) and frames._thumbnails.maxsize == frames.THUMBNAIL_CACHE_BYTES
    monkeypatch.setattr(frames, "frame_render", lambda **kwargs: pytest.fail("rendered again"))
    assert frames.series_thumbnail(view=view, series_uid=data.ct_series) is body
    series_frames = view.frames(data.ct_series)
    instance = series_frames[len(series_frames) // 2][0]
    assert frames._pipelines[(view.image_set_id, view.version, instance.sop_uid)] is not None
