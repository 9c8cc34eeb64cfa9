"""Personas against the live API and in a real browser: an admin, a clinician with one data store, an outsider;
custom IAM-style policies; the audit trail of API calls; a share link framed by an allowed and a refused origin."""
from __future__ import annotations

import http.server
import json
import threading
import pytest
from botocore.exceptions import ClientError
from pydicom.uid import generate_uid

from tests import personas
from tests.clients import imaging_client, wait_for
from tests.dicomgen import ct_bytes
from tests.e2e.browser import chromium
from tests.importing import run_import
from tests.servers import ApertureServer, free_port

pytestmark = pytest.mark.live


def user_key(server, username: str, *, grant: str | None = None, policy_file=None) -> dict:
    """A full-access key (or one under `policy_file`) for a new API user granted `grant`, or no data store at all."""
    personas.live_user(server, username, grants=[grant] if grant else [])
    return personas.live_key(server, username=username, policy_file=policy_file)


@pytest.fixture(scope="module")
def stores(mi, s3):
    ids = []
    for name in ("ward-a", "ward-b"):
        datastore_id = mi.create_datastore(datastoreName=name)["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
        ids.append(datastore_id)
    study = generate_uid()
    outcome = run_import(mi, s3, ids[0], {"a.dcm": ct_bytes(study_uid=study, series_uid=generate_uid(),
                                                            patient_id="PERSONA-1")})
    return {"a": ids[0], "b": ids[1], "study": study,
            "image_set": outcome.line_for("a.dcm")["importResponse"]["imageSetId"]}


def code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_personas_on_the_api(server, mi, stores):
    clinician = imaging_client(server.url, user_key(server, "clin-api", grant=stores["a"]))
    outsider = imaging_client(server.url, user_key(server, "outsider-api"))
    assert clinician.get_datastore(datastoreId=stores["a"])["datastoreProperties"]["datastoreId"] == stores["a"]
    assert clinician.search_image_sets(datastoreId=stores["a"], searchCriteria={})["imageSetsMetadataSummaries"]
    assert {d["datastoreId"] for d in clinician.list_datastores()["datastoreSummaries"]} == {stores["a"]}
    for call in (lambda c: c.get_datastore(datastoreId=stores["b"]),
                 lambda c: c.search_image_sets(datastoreId=stores["b"], searchCriteria={}),
                 lambda c: c.create_datastore(datastoreName="not-mine")):
        with pytest.raises(ClientError) as excinfo:
            call(clinician)
        assert code(excinfo) == "AccessDeniedException"
    with pytest.raises(ClientError) as excinfo:
        outsider.get_image_set(datastoreId=stores["a"], imageSetId=stores["image_set"])
    assert code(excinfo) == "AccessDeniedException"
    assert outsider.list_datastores()["datastoreSummaries"] == []
    every = {d["datastoreId"] for page in mi.get_paginator("list_datastores").paginate()
             for d in page["datastoreSummaries"]}
    assert {stores["a"], stores["b"]} <= every


def test_custom_policy_explicit_deny_wins(server, stores, tmp_path):
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "medical-imaging:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["medical-imaging:GetImage*"], "Resource": f"arn:aws:medical-imaging:*:*:datastore/{stores['a']}*"},
    ]}))
    client = imaging_client(server.url, user_key(server, "integration", grant=stores["a"], policy_file=policy))
    assert client.search_image_sets(datastoreId=stores["a"], searchCriteria={})["imageSetsMetadataSummaries"]
    with pytest.raises(ClientError) as excinfo:
        client.get_image_set(datastoreId=stores["a"], imageSetId=stores["image_set"])
    assert code(excinfo) == "AccessDeniedException"


def test_api_calls_are_audited_with_user_study_and_redaction(server, mi, stores):
    mi.search_image_sets(datastoreId=stores["a"], searchCriteria={"filters": [
        {"operator": "EQUAL", "values": [{"DICOMPatientId": "PERSONA-1"}]}]})
    mi.get_image_set(datastoreId=stores["a"], imageSetId=stores["image_set"])
    with pytest.raises(ClientError):
        imaging_client(server.url, {"AccessKeyId": "AKIA" + "Z" * 16, "SecretAccessKey": "x" * 40}).list_datastores()
    rows = json.loads(server.manage("shell", "-c", (
        "import json; from imaging.models import AuditEvent;"
        "print(json.dumps(list(AuditEvent.objects.order_by('event_time').values("
        "'event_name','username','patient_id','study_instance_uid','request_parameters','error_code','access_key_id'))))"
    )).stdout.strip().splitlines()[-1])
    search = [r for r in rows if r["event_name"] == "SearchImageSets"][-1]
    assert search["request_parameters"]["searchCriteria"] == "HIDDEN_DUE_TO_SECURITY_REASONS"
    assert "PERSONA-1" not in json.dumps(search)
    get = [r for r in rows if r["event_name"] == "GetImageSet"][-1]
    assert get["patient_id"] == "PERSONA-1" and get["study_instance_uid"] == stores["study"]
    assert get["username"] == "admin"
    refused = [r for r in rows if r["error_code"] == "UnrecognizedClientException"][-1]
    assert refused["access_key_id"] == "AKIA" + "Z" * 16 and refused["username"] == ""


class _Parent(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        return


def serve_parent(iframe_url: str) -> tuple[http.server.HTTPServer, str]:
    handler = type("Parent", (_Parent,), {"page": f'<html><body><iframe id="v" src="{iframe_url}" width="900" '
                                                   f'height="700"></iframe></body></html>'.encode()})
    httpd = http.server.HTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def test_share_link_in_an_iframe_on_allowed_and_refused_origins(seaweed, s3):
    allowed_port = free_port()
    embed_server = ApertureServer(extra_env={**seaweed.env(),
                                             "APERTURE_EMBED_ORIGINS": f"http://127.0.0.1:{allowed_port}"}).start()
    try:
        client = imaging_client(embed_server.url, embed_server.create_key())
        datastore_id = client.create_datastore(datastoreName="embed")["datastoreId"]
        wait_for(lambda: client.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
        study = generate_uid()
        run_import(client, s3, datastore_id, {"a.dcm": ct_bytes(study_uid=study, series_uid=generate_uid())})
        token = embed_server.manage("shell", "-c", (
            "from datetime import timedelta; from imaging.services.sharing import share_link_create;"
            f"print(share_link_create(created_by=None, datastore_id='{datastore_id}', study_uid='{study}',"
            "expires_in=timedelta(hours=1))[1])")).stdout.split()[-1]
        share_url = f"{embed_server.url}/share/{token}/"

        allowed = http.server.HTTPServer(("127.0.0.1", allowed_port), type("P", (_Parent,), {
            "page": f'<iframe id="v" src="{share_url}" width="900" height="700"></iframe>'.encode()}))
        threading.Thread(target=allowed.serve_forever, daemon=True).start()
        refused, refused_url = serve_parent(share_url)
        with chromium() as browser:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{allowed_port}/")
            frame = page.frame_locator("#v")
            frame.locator("canvas#viewport").wait_for()
            inner = next(f for f in page.frames if f.url.startswith(share_url))
            inner.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
            page.goto(refused_url)
            page.wait_for_timeout(1500)
            blocked = [f for f in page.frames if f.url.startswith(share_url)]
            assert not blocked or blocked[0].evaluate("typeof window.apertureViewer") == "undefined"
        allowed.shutdown()
        refused.shutdown()
        assert token not in embed_server.log()  # the token never reaches the server log
    finally:
        embed_server.stop()


def every_scoped_call(datastore_id: str, image_set_id: str):
    """One call of every operation that names a data store, with valid parameters."""
    arn = f"arn:aws:medical-imaging:us-east-1:000000000000:datastore/{datastore_id}"
    frame = {"imageFrameId": "0" * 32}
    updates = {"DICOMUpdates": {"updatableAttributes": b'{"SchemaVersion": 1.1}'}}
    return {
        "GetDatastore": lambda c: c.get_datastore(datastoreId=datastore_id),
        "DeleteDatastore": lambda c: c.delete_datastore(datastoreId=datastore_id),
        "StartDICOMImportJob": lambda c: c.start_dicom_import_job(
            datastoreId=datastore_id, dataAccessRoleArn="arn:aws:iam::123456789012:role/r",
            inputS3Uri="s3://input/x/", outputS3Uri="s3://output/x/"),
        "GetDICOMImportJob": lambda c: c.get_dicom_import_job(datastoreId=datastore_id, jobId="0" * 32),
        "ListDICOMImportJobs": lambda c: c.list_dicom_import_jobs(datastoreId=datastore_id),
        "SearchImageSets": lambda c: c.search_image_sets(datastoreId=datastore_id, searchCriteria={}),
        "GetImageSet": lambda c: c.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id),
        "GetImageSetMetadata": lambda c: c.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id),
        "GetImageFrame": lambda c: c.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                                     imageFrameInformation=frame),
        "ListImageSetVersions": lambda c: c.list_image_set_versions(datastoreId=datastore_id, imageSetId=image_set_id),
        "UpdateImageSetMetadata": lambda c: c.update_image_set_metadata(
            datastoreId=datastore_id, imageSetId=image_set_id, latestVersionId="1",
            updateImageSetMetadataUpdates=updates),
        "CopyImageSet": lambda c: c.copy_image_set(datastoreId=datastore_id, sourceImageSetId=image_set_id,
                                                   copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}}),
        "DeleteImageSet": lambda c: c.delete_image_set(datastoreId=datastore_id, imageSetId=image_set_id),
        "TagResource": lambda c: c.tag_resource(resourceArn=arn, tags={"k": "v"}),
        "UntagResource": lambda c: c.untag_resource(resourceArn=arn, tagKeys=["k"]),
        "ListTagsForResource": lambda c: c.list_tags_for_resource(resourceArn=arn),
    }


@pytest.fixture(scope="module")
def strangers(server, stores):
    """An outsider (no grants) and a clinician of the other data store, both with full-access keys."""
    return [imaging_client(server.url, user_key(server, "outsider-all")),
            imaging_client(server.url, user_key(server, "clin-b-only", grant=stores["b"]))]


@pytest.mark.parametrize("operation", sorted(every_scoped_call("0" * 32, "0" * 32)))
def test_outsider_and_other_clinicians_are_refused_on_every_route(strangers, stores, operation):
    call = every_scoped_call(stores["a"], stores["image_set"])[operation]
    for client in strangers:
        with pytest.raises(ClientError) as excinfo:
            call(client)
        assert code(excinfo) == "AccessDeniedException", operation


def test_throttling_when_enabled(seaweed):
    throttled = ApertureServer(extra_env={**seaweed.env(), "APERTURE_THROTTLING_ENABLED": "true",
                                          "APERTURE_THROTTLE_ListDatastores": "0.5/3"}).start()
    try:
        client = imaging_client(throttled.url, throttled.create_key())
        for _ in range(3):
            client.list_datastores()
        with pytest.raises(ClientError) as excinfo:
            client.list_datastores()
        assert code(excinfo) == "ThrottlingException"
        assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert client.create_datastore(datastoreName="own-bucket")["datastoreId"]  # other operations: own buckets
    finally:
        throttled.stop()
