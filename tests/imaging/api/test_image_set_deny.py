"""A policy that denies one image set is honoured by every route that reads or writes it (SPEC 12.4, issue 11
item 4): the runtime operations, the tag operations on its ARN, and DICOMweb's GetDICOMInstance, which used to check
only the data store and returned the whole file."""
from __future__ import annotations

import io
import json

import pydicom
import pytest
from botocore.exceptions import ClientError
from pydicom.uid import generate_uid

from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_bytes
from tests.dicomweb import instance_url, signed_get
from tests.importing import run_import

pytestmark = pytest.mark.live


def get_instance(server, key, datastore_id, study, series, sop, image_set_id=None):
    return signed_get(instance_url(server.url, datastore_id, study, series, sop, image_set_id), key)


@pytest.fixture(scope="module")
def two_image_sets(mi, s3):
    datastore_id = mi.create_datastore(datastoreName="deny-one")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    study = generate_uid()
    files = {name: ct_bytes(study_uid=study, series_uid=generate_uid(), patient_id="DENY-1") for name in ("x.dcm", "y.dcm")}
    outcome = run_import(mi, s3, datastore_id, files)
    sets = {}
    for name, data in files.items():
        dataset = pydicom.dcmread(io.BytesIO(data))
        sets[name[0]] = {"id": outcome.line_for(name)["importResponse"]["imageSetId"], "study": study,
                         "series": str(dataset.SeriesInstanceUID), "sop": str(dataset.SOPInstanceUID)}
    return datastore_id, sets


@pytest.fixture(scope="module")
def denied_key(server, two_image_sets, tmp_path_factory):
    datastore_id, sets = two_image_sets
    policy = tmp_path_factory.mktemp("policy") / "deny-x.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "medical-imaging:*",
         "Resource": f"arn:aws:medical-imaging:*:*:datastore/{datastore_id}/imageset/{sets['x']['id']}"},
    ]}))
    created = server.manage("accesskey", "create", "--json", "--policy-file", str(policy))
    return json.loads(created.stdout.strip().splitlines()[-1])


def calls_on(datastore_id: str, image_set_id: str, other_id: str):
    """Every API call that names the image set, each with otherwise valid parameters."""
    arn = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{datastore_id}/imageset/{image_set_id}"
    updates = {"DICOMUpdates": {"updatableAttributes": b'{"SchemaVersion": 1.1, "Study": {"DICOM": {"StudyID": "7"}}}'}}
    return {
        "GetImageSet": lambda c: c.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id),
        "GetImageSetMetadata": lambda c: c.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id),
        "GetImageFrame": lambda c: c.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                                     imageFrameInformation={"imageFrameId": "0" * 32}),
        "ListImageSetVersions": lambda c: c.list_image_set_versions(datastoreId=datastore_id, imageSetId=image_set_id),
        "UpdateImageSetMetadata": lambda c: c.update_image_set_metadata(
            datastoreId=datastore_id, imageSetId=image_set_id, latestVersionId="1",
            updateImageSetMetadataUpdates=updates),
        "CopyImageSet(source)": lambda c: c.copy_image_set(
            datastoreId=datastore_id, sourceImageSetId=image_set_id,
            copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}}),
        "CopyImageSet(destination)": lambda c: c.copy_image_set(
            datastoreId=datastore_id, sourceImageSetId=other_id,
            copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"},
                                     "destinationImageSet": {"imageSetId": image_set_id, "latestVersionId": "1"}}),
        "DeleteImageSet": lambda c: c.delete_image_set(datastoreId=datastore_id, imageSetId=image_set_id),
        "TagResource": lambda c: c.tag_resource(resourceArn=arn, tags={"k": "v"}),
        "UntagResource": lambda c: c.untag_resource(resourceArn=arn, tagKeys=["k"]),
        "ListTagsForResource": lambda c: c.list_tags_for_resource(resourceArn=arn),
    }


@pytest.mark.parametrize("operation", sorted(calls_on("0" * 32, "0" * 32, "1" * 32)))
def test_every_api_route_honours_an_image_set_deny(server, two_image_sets, denied_key, operation):
    datastore_id, sets = two_image_sets
    client = imaging_client(server.url, denied_key)
    with pytest.raises(ClientError) as excinfo:
        calls_on(datastore_id, sets["x"]["id"], sets["y"]["id"])[operation](client)
    assert excinfo.value.response["Error"]["Code"] == "AccessDeniedException", operation
    assert sets["x"]["id"] in excinfo.value.response["Error"]["Message"]


def test_get_dicom_instance_honours_an_image_set_deny(server, two_image_sets, denied_key):
    datastore_id, sets = two_image_sets
    x, y = sets["x"], sets["y"]
    for image_set_id in (x["id"], None):  # named, or found as the series' primary image set
        status, headers, body = get_instance(server, denied_key, datastore_id, x["study"], x["series"], x["sop"],
                                             image_set_id)
        assert status == 403, body[:200]
        assert headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert b"DICM" not in body
    status, _, body = get_instance(server, denied_key, datastore_id, y["study"], y["series"], y["sop"], y["id"])
    assert status == 200 and body[128:132] == b"DICM"  # the rest of the data store is still readable


def test_the_other_image_set_stays_readable(server, two_image_sets, denied_key):
    datastore_id, sets = two_image_sets
    client = imaging_client(server.url, denied_key)
    assert client.get_image_set(datastoreId=datastore_id, imageSetId=sets["y"]["id"])["imageSetId"] == sets["y"]["id"]
    summaries = client.search_image_sets(datastoreId=datastore_id, searchCriteria={})["imageSetsMetadataSummaries"]
    assert {s["imageSetId"] for s in summaries} >= {sets["y"]["id"]}
