"""Personal access tokens and the viewer's session cookie on the DICOMweb routes (issue: DICOMweb authentication
for real clients), in process: what each accepts, what each refuses and how the audit trail names the caller; a
bearer token on the HealthImaging API is refused as any non-SigV4 Authorization header is."""
from __future__ import annotations

import json
import shutil
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone

from imaging.aws.signed import signed_call
from imaging.models import AccessToken, AuditEvent
from imaging.services.accesstokens import accesstoken_create, accesstoken_revoke
from imaging.services.imports import import_job_start_local
from tests import personas
from tests.local_store import local_datastore_create
from tests.paths import DICOM_DIR

pytestmark = pytest.mark.django_db(transaction=True)

PATIENT_ID = "00100020"


class Store:
    def __init__(self, datastore, other, clinician, outsider, admin, patient_id):
        self.datastore, self.other = datastore, other
        self.clinician, self.outsider, self.admin = clinician, outsider, admin
        self.patient_id = patient_id

    def studies(self) -> str:
        return f"/datastore/{self.datastore.id}/studies"


@pytest.fixture
def store(store_settings, tmp_path) -> Store:
    """One imported CT in a data store the clinician is granted; a second data store granted too; an outsider."""
    datastore, other = local_datastore_create(name="main"), local_datastore_create(name="other")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DICOM_DIR / "ELE__CT_small.dcm", folder / "ct.dcm")
    import_job_start_local(datastore_id=datastore.id, paths=[str(folder)])
    import pydicom
    patient_id = str(pydicom.dcmread(folder / "ct.dcm", stop_before_pixels=True).PatientID)
    return Store(datastore, other, personas.clinician(datastore, other, username="pat-clinician"),
                 personas.outsider("pat-outsider"), personas.admin("pat-admin"), patient_id)


def bearer_get(client, path: str, token: str, **headers):
    return client.get(path, HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_ACCEPT="application/dicom+json", **headers)


def _latest(event_name: str) -> AuditEvent:
    return AuditEvent.objects.filter(event_name=event_name).order_by("-event_time").first()


def _assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response["x-amzn-ErrorType"] == "UnauthorizedException"
    assert json.loads(response.content)["__type"] == "UnauthorizedException"


# Personal access tokens


def test_token_searches_as_its_user_and_is_audited_as_bearer(client, store):
    issued = accesstoken_create(user=store.clinician, name="pacs")
    response = bearer_get(client, store.studies(), issued.token)
    assert response.status_code == 200, response.content
    assert [study[PATIENT_ID]["Value"][0] for study in json.loads(response.content)] == [store.patient_id]

    event = _latest("SearchDICOMStudies")
    assert (event.identity_type, event.access_key_id, event.username) == ("Bearer", issued.token_id, "pat-clinician")
    assert event.principal_arn.endswith(":user/pat-clinician")
    assert event.event_category == "Data" and event.status_code == 200
    # The token's secret is in no audit row, and only its hash is stored.
    secret = issued.token.rsplit("_", 1)[1]
    assert not AuditEvent.objects.filter(request_parameters__icontains=secret).exists()
    row = AccessToken.objects.get(pk=issued.token_id)
    assert secret not in row.secret_sha256 and row.last_used_at is not None


def test_revoked_expired_malformed_and_forged_tokens_are_401(client, store):
    revoked = accesstoken_create(user=store.clinician)
    assert bearer_get(client, store.studies(), revoked.token).status_code == 200
    assert accesstoken_revoke(token_id=revoked.token_id, user=store.clinician)
    _assert_invalid_token(bearer_get(client, store.studies(), revoked.token))
    assert _latest("SearchDICOMStudies").access_key_id == revoked.token_id  # the claimed id, never the secret

    expired = accesstoken_create(user=store.clinician, days=1)
    AccessToken.objects.filter(pk=expired.token_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    _assert_invalid_token(bearer_get(client, store.studies(), expired.token))

    good = accesstoken_create(user=store.clinician)
    forged = good.token[:-4] + ("AAAA" if not good.token.endswith("AAAA") else "BBBB")
    _assert_invalid_token(bearer_get(client, store.studies(), forged))
    _assert_invalid_token(bearer_get(client, store.studies(), "apt_nonsense"))
    # No issuer and no authorizer: a JWT-looking bearer has nobody to vouch for it.
    _assert_invalid_token(bearer_get(client, store.studies(), "eyJhbGciOiJub25lIn0.e30."))


def test_inactive_user_token_is_401(client, store):
    issued = accesstoken_create(user=store.clinician)
    store.clinician.is_active = False
    store.clinician.save()
    _assert_invalid_token(bearer_get(client, store.studies(), issued.token))


def test_token_limited_to_one_data_store_and_to_its_users_grants(client, store):
    scoped = accesstoken_create(user=store.clinician, datastore_id=store.other.id)
    assert bearer_get(client, f"/datastore/{store.other.id}/studies", scoped.token).status_code == 200
    refused = bearer_get(client, store.studies(), scoped.token)
    assert refused.status_code == 403
    assert json.loads(refused.content)["message"] == (
        f"User: {_latest('SearchDICOMStudies').principal_arn} is not authorized to perform: "
        f"medical-imaging:SearchDICOMStudies on resource: {store.datastore.arn}")

    outsiders = accesstoken_create(user=store.outsider)
    assert bearer_get(client, store.studies(), outsiders.token).status_code == 403
    # A grant taken away binds the token at once.
    store.clinician.datastore_grants.filter(datastore=store.other).delete()
    assert bearer_get(client, f"/datastore/{store.other.id}/studies", scoped.token).status_code == 403


def test_a_token_cannot_be_made_for_a_data_store_the_user_may_not_read(store):
    from imaging.errors import ValidationFailed
    with pytest.raises(ValidationFailed):
        accesstoken_create(user=store.outsider, datastore_id=store.datastore.id)
    with pytest.raises(ValidationFailed):
        accesstoken_create(user=store.clinician, days=0)


def test_tokens_store_only_for_a_superuser(store):
    """The policy of a user's bearer credentials: DICOMweb reads, and StoreDICOM only where the user may write (a
    superuser: grants are read rights)."""
    factory = RequestFactory()
    answers = {}
    for who in (store.clinician, store.admin):
        issued = accesstoken_create(user=who)
        request = factory.post(store.studies(), data=b"", content_type="application/dicom",
                               HTTP_AUTHORIZATION=f"Bearer {issued.token}")

        def step(call):
            call.authorize([store.datastore.arn])
            from django.http import HttpResponse
            return HttpResponse(status=200)

        answers[who.username] = signed_call(request, operation_name="StoreDICOM", step=step,
                                            parameters={"datastoreId": store.datastore.id},
                                            labels={"datastoreId": store.datastore.id}, bearer=True).status_code
    assert answers == {"pat-clinician": 403, "pat-admin": 200}


def test_bearer_token_is_refused_on_the_healthimaging_api(client, store):
    issued = accesstoken_create(user=store.admin)
    for path in ("/datastore", f"/datastore/{store.datastore.id}"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {issued.token}")
        assert response.status_code in (400, 403), response.content
        assert response["x-amzn-ErrorType"] in ("IncompleteSignatureException", "MissingAuthenticationTokenException")
        assert "WWW-Authenticate" not in response
    assert AccessToken.objects.get(pk=issued.token_id).last_used_at is None


# The management command


def test_accesstoken_command_creates_a_token_that_works_and_revokes_it(client, store):
    out = StringIO()
    call_command("accesstoken", "create", "--json", "--user", "pat-clinician", "--datastore", store.datastore.id,
                 "--days", "7", stdout=out)
    printed = json.loads(out.getvalue().strip())
    assert printed["token"].startswith(printed["tokenId"] + "_")
    assert bearer_get(client, store.studies(), printed["token"]).status_code == 200
    listing = StringIO()
    call_command("accesstoken", "list", stdout=listing)
    assert printed["tokenId"] in listing.getvalue() and printed["token"] not in listing.getvalue()
    call_command("accesstoken", "revoke", printed["tokenId"], stdout=StringIO())
    _assert_invalid_token(bearer_get(client, store.studies(), printed["token"]))


# The viewer's session cookie


def test_session_cookie_reads_same_origin(client, store):
    client.force_login(store.clinician)
    response = client.get(store.studies(), HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200, response.content
    assert len(json.loads(response.content)) == 1
    event = _latest("SearchDICOMStudies")
    assert (event.identity_type, event.username, event.access_key_id) == ("Session", "pat-clinician", "")
    same = client.get(store.studies(), HTTP_ORIGIN="http://testserver", HTTP_SEC_FETCH_SITE="same-origin")
    assert same.status_code == 200


def test_session_cookie_is_refused_cross_origin_and_for_writes(client, store):
    client.force_login(store.clinician)
    for headers in ({"HTTP_ORIGIN": "http://evil.example"}, {"HTTP_ORIGIN": "http://testserver:8080"},
                    {"HTTP_SEC_FETCH_SITE": "cross-site"}, {"HTTP_ORIGIN": "null"}):
        response = client.get(store.studies(), **headers)
        assert response.status_code == 403, headers
        assert response["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"

    # A POST with the cookie is not a session call: it needs a signature (or a token).
    request = RequestFactory().post(store.studies(), data=b"", content_type="application/dicom")
    request.user = store.admin
    response = signed_call(request, operation_name="StoreDICOM", step=lambda call: pytest.fail("not authenticated"),
                           parameters={"datastoreId": store.datastore.id},
                           labels={"datastoreId": store.datastore.id}, bearer=True)
    assert response["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_session_cookie_is_bounded_by_grants_and_not_accepted_by_the_api(client, store):
    client.force_login(store.outsider)
    assert client.get(store.studies()).status_code == 403
    client.force_login(store.admin)
    response = client.get("/datastore")
    assert response.status_code == 403
    assert response["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


# The API tokens page


def test_api_tokens_page_creates_shows_once_lists_and_revokes(client, store):
    assert client.get("/account/tokens/").status_code == 302  # login required
    client.force_login(store.clinician)
    page = client.post("/account/tokens/", {"name": "my pacs", "datastore": store.datastore.id, "days": "30"})
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    token = AccessToken.objects.get(user=store.clinician)
    shown = page.content.decode()
    start = shown.index(token.token_id + "_")
    secret_token = shown[start:shown.index("<", start)].strip()
    assert bearer_get(client, store.studies(), secret_token).status_code == 200
    assert token.datastore_id == store.datastore.id and token.expires_at is not None

    listing = client.get("/account/tokens/").content.decode()
    assert token.token_id in listing and secret_token not in listing

    other = accesstoken_create(user=store.outsider)
    client.post(f"/account/tokens/{other.token_id}/revoke/")
    assert AccessToken.objects.get(pk=other.token_id).revoked_at is None  # not theirs to revoke
    client.post(f"/account/tokens/{token.token_id}/revoke/")
    assert AccessToken.objects.get(pk=token.token_id).revoked_at is not None
    client.logout()
    _assert_invalid_token(bearer_get(client, store.studies(), secret_token))


def test_api_tokens_page_refuses_a_data_store_not_granted(client, store):
    client.force_login(store.outsider)
    page = client.post("/account/tokens/", {"name": "x", "datastore": store.datastore.id})
    assert page.status_code == 200
    assert not AccessToken.objects.filter(user=store.outsider).exists()
