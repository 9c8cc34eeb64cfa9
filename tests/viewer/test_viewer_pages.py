"""Viewer pages in process: login, study list search, study page, thumbnails, and who may see what."""
from __future__ import annotations

import io

import pytest
from PIL import Image


pytestmark = pytest.mark.django_db(transaction=True)


def test_pages_need_a_login(client, viewer_data):
    for url in ("/", f"/studies/{viewer_data.datastore.id}/{viewer_data.study_uid}/",
                f"/view/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    login = client.get("/accounts/login/")
    assert b'name="username"' in login.content and b'name="password"' in login.content


def test_study_list_search(client, viewer_data):
    client.force_login(viewer_data.clinician)
    page = client.get("/")
    assert b'type="search"' in page.content and b"DOE^JANE^MARIE" in page.content
    for query, found in [("q=mar", True), ("q=JAN", True), ("q=doe+jan", True), ("q=ane", False),
                         ("patient_id=PID-1", True), ("patient_id=PID-2", False),
                         ("date_from=2024-01-01&date_to=2024-01-31", True), ("date_from=2024-02-01", False),
                         ("modality=CT", True), ("modality=MR", False), ("accession=ACC1", True),
                         (f"datastore={viewer_data.datastore.id}", True), ("sort=name&page=1", True)]:
        content = client.get(f"/?{query}").content
        assert (b"DOE^JANE^MARIE" in content) is found, query


def test_study_page_lists_series_and_instances_in_order(client, viewer_data):
    client.force_login(viewer_data.clinician)
    page = client.get(f"/studies/{viewer_data.datastore.id}/{viewer_data.study_uid}/").content.decode()
    assert page.index("Instance 1") < page.index("Instance 2") < page.index("Instance 3")
    assert "Series 3 · CT" in page and "3 instances" in page
    thumb = client.get(f"/thumbnails/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/{viewer_data.ct_series}.jpg")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.content)).size == (64, 64)
    viewer = client.get(f"/view/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/?series={viewer_data.ct_series}")
    assert viewer.status_code == 200 and b"<canvas" in viewer.content


def test_outsider_sees_nothing(client, viewer_data):
    client.force_login(viewer_data.outsider)
    assert b"DOE^JANE" not in client.get("/").content
    assert client.get(f"/studies/{viewer_data.datastore.id}/{viewer_data.study_uid}/").status_code == 404
    assert client.get(f"/view/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/").status_code == 404
    assert client.get(f"/thumbnails/{viewer_data.datastore.id}/{viewer_data.ct_image_set.id}/"
                      f"{viewer_data.ct_series}.jpg").status_code == 404
