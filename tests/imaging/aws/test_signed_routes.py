"""The shared pieces of the two SigV4 transports (issue 12 item 4): one access rule, and one wrapper that refuses,
audits and throttles alike on both. That transports do not import each other is tests/test_import_graph.py's rule."""
from __future__ import annotations

import uuid

import pytest

from imaging.models import AuditEvent, Datastore, DatastoreStatus
from imaging.selectors import datastore_readable, datastores_readable
from tests import personas


def _datastore(status: str) -> Datastore:
    return Datastore.objects.create(id=uuid.uuid4().hex, name=status.lower(), status=status)


@pytest.mark.django_db
def test_one_rule_with_the_transport_choosing_non_active_stores():
    active, creating, deleting = (_datastore(s) for s in (DatastoreStatus.ACTIVE, DatastoreStatus.CREATING,
                                                          DatastoreStatus.DELETING))
    other = _datastore(DatastoreStatus.ACTIVE)
    clinician = personas.clinician(active, creating, deleting, username="clinician-access")
    admin = personas.admin("admin-access")

    # The viewer: granted and ACTIVE only; a superuser sees every ACTIVE store.
    assert set(datastores_readable(user=clinician)) == {active}
    assert set(datastores_readable(user=admin)) >= {active, other}
    assert creating not in set(datastores_readable(user=admin))
    # The API: granted stores in any state, so GetDatastore/DeleteDatastore reach a CREATING or DELETING one.
    assert set(datastores_readable(user=clinician, include_inactive=True)) == {active, creating, deleting}
    assert datastore_readable(user=clinician, datastore_id=deleting.id, include_inactive=True)
    assert not datastore_readable(user=clinician, datastore_id=deleting.id)
    assert not datastore_readable(user=clinician, datastore_id=other.id, include_inactive=True)
    # Grants do not bind a superuser; whether a store exists is the operation's question, not access control's.
    assert datastore_readable(user=admin, datastore_id="0" * 32, include_inactive=True)
    assert not datastore_readable(user=admin, datastore_id="0" * 32)
    clinician.is_active = False
    assert not datastores_readable(user=clinician, include_inactive=True).exists()


FORGED = ("AWS4-HMAC-SHA256 Credential=AKIANOSUCHKEY0000000/20260101/us-east-1/medical-imaging/aws4_request, "
          "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


@pytest.mark.django_db
@pytest.mark.parametrize("method, path, operation, category", [
    ("GET", f"/datastore/{'a' * 32}", "GetDatastore", "Management"),
    ("GET", f"/datastore/{'a' * 32}/studies/1.2/series/1.2.3/instances/1.2.3.4", "GetDICOMInstance", "Data"),
], ids=["api", "dicomweb"])
def test_both_transports_refuse_alike_and_audit_alike(client, method, path, operation, category):
    """One wrapper: the same envelope, request id header and audit row for a refused call on either transport."""
    response = client.generic(method, path, HTTP_AUTHORIZATION=FORGED, HTTP_X_AMZ_DATE="20260101T000000Z")
    assert response.status_code == 403
    assert response["x-amzn-ErrorType"] == "UnrecognizedClientException"
    assert response.json()["__type"] == "UnrecognizedClientException"
    event = AuditEvent.objects.get(event_name=operation)
    assert event.request_id == response["x-amzn-RequestId"]
    assert (event.event_category, event.access_key_id, event.status_code) == (category, "AKIANOSUCHKEY0000000", 403)
    assert event.error_code == "UnrecognizedClientException" and event.error_message


@pytest.mark.django_db
def test_an_unserved_method_on_a_dicomweb_route_is_an_unknown_operation(client):
    response = client.post(f"/datastore/{'a' * 32}/studies/1.2/series/1.2.3/instances/1.2.3.4")
    assert response.status_code == 404
    assert response["x-amzn-ErrorType"] == "UnknownOperationException"


@pytest.mark.django_db
def test_get_dicom_instance_is_throttled_by_the_shared_wrapper(client, settings, monkeypatch):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from imaging.services.accesskeys import accesskey_create

    settings.APERTURE_THROTTLING_ENABLED = True
    monkeypatch.setenv("APERTURE_THROTTLE_GetDICOMInstance", "0.001/1")  # one call, then none for 1000 s
    settings.APERTURE_SHARED_STATE_PREFIX = f"test-{uuid.uuid4().hex}"  # a fresh bucket, whatever ran before
    issued = accesskey_create(user=personas.admin("throttled-admin"))
    path = f"/datastore/{'a' * 32}/studies/1.2/series/1.2.3/instances/1.2.3.4"

    def signed_get():
        request = AWSRequest(method="GET", url=f"http://testserver{path}")
        credentials = Credentials(issued.access_key_id, issued.secret_access_key)
        SigV4Auth(credentials, "medical-imaging", "us-east-1").add_auth(request)
        return client.get(path, HTTP_HOST="testserver", HTTP_AUTHORIZATION=request.headers["Authorization"],
                          HTTP_X_AMZ_DATE=request.headers["X-Amz-Date"])

    first = signed_get()
    assert first.status_code == 404 and first["x-amzn-ErrorType"] == "ResourceNotFoundException"  # let through
    second = signed_get()
    assert second.status_code == 429
    assert second["x-amzn-ErrorType"] == "ThrottlingException" and second.json()["__type"] == "ThrottlingException"
    event = AuditEvent.objects.filter(event_name="GetDICOMInstance").latest("event_time")
    assert (event.status_code, event.error_code) == (429, "ThrottlingException")
