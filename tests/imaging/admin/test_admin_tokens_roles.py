"""Admin pages for personal access tokens (listed, revoked, never made or shown there) and for the local roles that
data store authorizers name (SPEC 12.6), driven through Django's test client as an admin."""
from __future__ import annotations

import pytest

from imaging.models import AccessToken, Role
from imaging.services.accesstokens import accesstoken_create
from tests import personas

pytestmark = pytest.mark.django_db(transaction=True)


def test_tokens_are_listed_and_revoked_but_never_shown_or_made(admin_client):
    issued = accesstoken_create(user=personas.user("token-owner"), name="pacs")
    listing = admin_client.get("/admin/imaging/accesstoken/")
    assert listing.status_code == 200 and issued.token_id.encode() in listing.content
    secret = issued.token[len(issued.token_id) + 1:].encode()
    detail = admin_client.get(f"/admin/imaging/accesstoken/{issued.token_id}/change/")
    assert detail.status_code == 200 and secret not in detail.content
    assert AccessToken.objects.get(pk=issued.token_id).secret_sha256.encode() not in detail.content
    assert admin_client.get("/admin/imaging/accesstoken/add/").status_code == 403
    revoked = admin_client.post("/admin/imaging/accesstoken/",
                                {"action": "revoke", "_selected_action": [issued.token_id]})
    assert revoked.status_code == 302
    assert AccessToken.objects.get(pk=issued.token_id).revoked_at is not None


def test_roles_take_a_managed_or_a_valid_custom_policy(admin_client):
    made = admin_client.post("/admin/imaging/role/add/", {"name": "pacs-reader", "description": "",
                                                          "policy": "AWSHealthImagingReadOnlyAccess",
                                                          "policy_document": "null"})
    assert made.status_code == 302, made.content[:500]
    assert Role.objects.get(pk="pacs-reader").policy_document is None
    bad = admin_client.post("/admin/imaging/role/add/", {"name": "broken", "policy": "Custom",
                                                         "policy_document": '{"Statement": [{"Effect": "Maybe"}]}'})
    assert bad.status_code == 200 and b"Invalid policy document" in bad.content
    assert not Role.objects.filter(pk="broken").exists()
