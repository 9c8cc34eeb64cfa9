"""Control-plane operations through boto3 against a live server: data stores and their lifecycle."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.clients import wait_for

pytestmark = pytest.mark.live


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_create_get_delete_lifecycle(mi):
    created = mi.create_datastore(datastoreName="lifecycle")
    datastore_id = created["datastoreId"]
    assert created["datastoreStatus"] == "CREATING"
    assert len(datastore_id) == 32

    props = wait_for(
        lambda: (p := mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"])["datastoreStatus"] == "ACTIVE"
        and p
    )
    assert props["datastoreName"] == "lifecycle"
    assert props["losslessStorageFormat"] == "HTJ2K"
    assert props["datastoreArn"] == f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{datastore_id}"
    assert props["createdAt"] <= props["updatedAt"]

    deleted = mi.delete_datastore(datastoreId=datastore_id)
    assert deleted == {**deleted, "datastoreId": datastore_id, "datastoreStatus": "DELETING"}
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "DELETED")

    # A DELETED data store is still visible to GetDatastore but to nothing else.
    with pytest.raises(ClientError) as excinfo:
        mi.delete_datastore(datastoreId=datastore_id)
    assert error_code(excinfo) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as excinfo:
        mi.list_tags_for_resource(resourceArn=props["datastoreArn"])
    assert error_code(excinfo) == "ResourceNotFoundException"


def test_optional_members_are_recorded_and_returned(mi):
    kms = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"
    lam = "arn:aws:lambda:us-east-1:123456789012:function:authorizer"
    created = mi.create_datastore(
        datastoreName="opts", kmsKeyArn=kms, lambdaAuthorizerArn=lam, losslessStorageFormat="JPEG_2000_LOSSLESS"
    )
    props = mi.get_datastore(datastoreId=created["datastoreId"])["datastoreProperties"]
    assert props["kmsKeyArn"] == kms
    assert props["lambdaAuthorizerArn"] == lam
    assert props["losslessStorageFormat"] == "JPEG_2000_LOSSLESS"
    summary = next(
        s for s in mi.list_datastores()["datastoreSummaries"] if s["datastoreId"] == created["datastoreId"]
    )
    assert "kmsKeyArn" not in summary and "lambdaAuthorizerArn" not in summary


def test_client_token_makes_create_idempotent(mi):
    first = mi.create_datastore(datastoreName="idem", clientToken="token-123")
    again = mi.create_datastore(datastoreName="idem", clientToken="token-123")
    assert again["datastoreId"] == first["datastoreId"]
    with pytest.raises(ClientError) as excinfo:
        mi.create_datastore(datastoreName="other-name", clientToken="token-123")
    assert error_code(excinfo) == "ConflictException"


def test_list_datastores_paginates_with_opaque_tokens(mi):
    ids = {mi.create_datastore(datastoreName=f"page-{i}")["datastoreId"] for i in range(5)}
    seen: list[str] = []
    paginator = mi.get_paginator("list_datastores")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    for page in pages:
        assert len(page["datastoreSummaries"]) <= 2
        seen += [s["datastoreId"] for s in page["datastoreSummaries"]]
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))
    assert len(pages) >= 3

    active = mi.list_datastores(datastoreStatus="DELETED")["datastoreSummaries"]
    assert all(s["datastoreStatus"] == "DELETED" for s in active)


@pytest.mark.parametrize(
    "call, rule",
    [
        (lambda c: c.list_datastores(maxResults=0), "greater than or equal to 1"),
        (lambda c: c.list_datastores(maxResults=51), "less than or equal to 50"),
        (lambda c: c.list_datastores(nextToken="forged"), "nextToken"),
        (lambda c: c.list_datastores(datastoreStatus="SLEEPING"), "enum value set"),
        (lambda c: c.get_datastore(datastoreId="NOT-AN-ID"), "regular expression pattern: [0-9a-z]{32}"),
        (lambda c: c.create_datastore(datastoreName="bad name!", clientToken="t1"), "datastoreName"),
        (lambda c: c.create_datastore(datastoreName="x", clientToken="t2", losslessStorageFormat="PNG"), "enum"),
        (lambda c: c.create_datastore(datastoreName="x", clientToken="t3", kmsKeyArn="arn:nope"), "kmsKeyArn"),
        (lambda c: c.create_datastore(datastoreName="x" * 257, clientToken="t4"), "length less than or equal to 256"),
        (lambda c: c.create_datastore(datastoreName="x", clientToken="bad token!"), "clientToken"),
    ],
    ids=["max0", "max51", "forged-token", "bad-enum", "bad-id", "bad-name", "bad-format", "bad-kms", "long-name",
         "bad-client-token"],
)
def test_model_constraints_are_validation_errors(mi_raw, call, rule):
    with pytest.raises(ClientError) as excinfo:
        call(mi_raw)
    assert error_code(excinfo) == "ValidationException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert rule in excinfo.value.response["Error"]["Message"]


def test_unknown_datastore_is_not_found(mi):
    with pytest.raises(ClientError) as excinfo:
        mi.get_datastore(datastoreId="0" * 32)
    assert error_code(excinfo) == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_readonly_key_cannot_write(mi, mi_readonly, active_datastore):
    assert mi_readonly.get_datastore(datastoreId=active_datastore)["datastoreProperties"]["datastoreId"]
    assert "datastoreSummaries" in mi_readonly.list_datastores()
    arn = mi.get_datastore(datastoreId=active_datastore)["datastoreProperties"]["datastoreArn"]
    assert mi_readonly.list_tags_for_resource(resourceArn=arn)["tags"] == {}
    for call in (
        lambda: mi_readonly.create_datastore(datastoreName="nope"),
        lambda: mi_readonly.delete_datastore(datastoreId=active_datastore),
        lambda: mi_readonly.tag_resource(resourceArn=arn, tags={"k": "v"}),
        lambda: mi_readonly.untag_resource(resourceArn=arn, tagKeys=["k"]),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert error_code(excinfo) == "AccessDeniedException"
        assert "is not authorized to perform: medical-imaging:" in excinfo.value.response["Error"]["Message"]
    assert mi.get_datastore(datastoreId=active_datastore)["datastoreProperties"]["datastoreStatus"] == "ACTIVE"
