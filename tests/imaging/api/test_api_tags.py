"""TagResource / UntagResource / ListTagsForResource through boto3 (the ARN travels double-encoded)."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.live


def arn_of(mi, datastore_id: str) -> str:
    return mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreArn"]


def test_tags_round_trip(mi, active_datastore):
    arn = arn_of(mi, active_datastore)
    mi.tag_resource(resourceArn=arn, tags={"project": "lung/2024", "owner": "radiology", "empty": ""})
    assert mi.list_tags_for_resource(resourceArn=arn)["tags"] == {
        "project": "lung/2024", "owner": "radiology", "empty": ""
    }
    mi.tag_resource(resourceArn=arn, tags={"owner": "cardiology"})
    mi.untag_resource(resourceArn=arn, tagKeys=["project", "never-set"])
    assert mi.list_tags_for_resource(resourceArn=arn)["tags"] == {"owner": "cardiology", "empty": ""}


def test_create_with_tags_applies_them(mi):
    created = mi.create_datastore(datastoreName="tagged", tags={"team": "mri"})
    assert mi.list_tags_for_resource(resourceArn=arn_of(mi, created["datastoreId"]))["tags"] == {"team": "mri"}


def test_tag_limits(mi, mi_raw, active_datastore):
    arn = arn_of(mi, active_datastore)
    mi.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(ClientError) as excinfo:
        mi.tag_resource(resourceArn=arn, tags={"one-too-many": "v"})
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert len(mi.list_tags_for_resource(resourceArn=arn)["tags"]) == 50

    with pytest.raises(ClientError) as excinfo:
        mi_raw.tag_resource(resourceArn=arn, tags={"aws:reserved": "v"})
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        mi_raw.create_datastore(datastoreName="too-many", tags={f"k{i}": "v" for i in range(51)})
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"


@pytest.mark.parametrize(
    "arn, code",
    [
        ("arn:aws:medical-imaging:us-east-1:000000000000:datastore/" + "0" * 32, "ResourceNotFoundException"),
        ("arn:aws:medical-imaging:eu-west-1:000000000000:datastore/" + "0" * 32, "ResourceNotFoundException"),
        ("arn:aws:medical-imaging:us-east-1:999999999999:datastore/" + "0" * 32, "ResourceNotFoundException"),
        ("not-an-arn", "ValidationException"),
    ],
    ids=["unknown", "other-region", "other-account", "malformed"],
)
def test_tagging_unknown_or_malformed_arns(mi_raw, arn, code):
    with pytest.raises(ClientError) as excinfo:
        mi_raw.list_tags_for_resource(resourceArn=arn)
    assert excinfo.value.response["Error"]["Code"] == code


def test_image_set_arn_that_does_not_exist(mi, active_datastore):
    arn = arn_of(mi, active_datastore) + "/imageset/" + "1" * 32
    with pytest.raises(ClientError) as excinfo:
        mi.tag_resource(resourceArn=arn, tags={"a": "b"})
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
