"""The viewer's read side in process (viewer.selectors, imaging.render.imagemeta): who may open what, which image set a share
link opens on, and an image set's view read once per content version."""
from __future__ import annotations

from datetime import timedelta

import pytest

from imaging.errors import AccessDenied
from imaging.models import DatastoreGrant, ImageSet, ShareLink
from imaging.services.sharing import share_link_create
from imaging.render import imagemeta
from viewer import selectors

pytestmark = pytest.mark.django_db(transaction=True)


def _link(data, **kwargs) -> tuple[ShareLink, str]:
    return share_link_create(created_by=None, datastore_id=data.datastore.id, study_uid=data.study_uid,
                             expires_in=timedelta(hours=1), **kwargs)


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


def test_a_share_link_opens_on_its_image_set_its_initial_series_or_the_oldest(viewer_data):
    data = viewer_data
    rgb = ImageSet.objects.exclude(pk=data.ct_image_set.pk).get(datastore=data.datastore)
    oldest = ImageSet.objects.filter(datastore=data.datastore, study_instance_uid=data.study_uid).earliest("created_at")
    assert selectors.shared_image_set_id(link=_link(data)[0]) == oldest.id
    assert selectors.shared_image_set_id(link=_link(data, initial_series=data.ct_series)[0]) == data.ct_image_set.id
    assert selectors.shared_image_set_id(link=_link(data, image_set_id=rgb.id)[0]) == rgb.id
    link = _link(data)[0]
    ImageSet.objects.filter(datastore=data.datastore).update(state="DELETED")
    assert selectors.shared_image_set_id(link=link) is None


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
