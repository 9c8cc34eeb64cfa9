"""The shared pieces of the two SigV4 transports (issue 12 item 4): one access rule, and transports that do not
import each other."""
from __future__ import annotations

import ast
import uuid
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from imaging.models import Datastore, DatastoreGrant, DatastoreStatus
from imaging.selectors import datastore_readable, datastores_readable
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT
TRANSPORTS = {"imaging.api": ROOT / "imaging" / "api", "imaging.dicomweb": ROOT / "imaging" / "dicomweb",
              "viewer": ROOT / "viewer", "imaging.aws": ROOT / "imaging" / "aws"}


def _imported_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for source in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(TRANSPORTS))
def test_transports_never_import_each_other(package):
    """api/, dicomweb/ and viewer/ share only what sits below them (imaging/aws among it), which imports none."""
    others = [other for other in TRANSPORTS if other != package and other != "imaging.aws"]
    crossing = sorted(name for name in _imported_modules(TRANSPORTS[package])
                      if any(name == other or name.startswith(other + ".") for other in others))
    assert crossing == [], f"{package} imports {crossing}"


def _datastore(status: str) -> Datastore:
    return Datastore.objects.create(id=uuid.uuid4().hex, name=status.lower(), status=status)


@pytest.mark.django_db
def test_one_rule_with_the_transport_choosing_non_active_stores():
    User = get_user_model()
    clinician = User.objects.create_user("clinician-access")
    admin = User.objects.create_superuser("admin-access")
    active, creating, deleting = (_datastore(s) for s in (DatastoreStatus.ACTIVE, DatastoreStatus.CREATING,
                                                          DatastoreStatus.DELETING))
    other = _datastore(DatastoreStatus.ACTIVE)
    for datastore in (active, creating, deleting):
        DatastoreGrant.objects.create(user=clinician, datastore=datastore)

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
    from imaging.models import AuditEvent

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
