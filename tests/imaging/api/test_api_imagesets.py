"""The runtime operations through boto3 against a live server, on image sets made by real imports."""
from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError
from pydicom.uid import generate_uid

from tests.clients import wait_for
from tests.dicomgen import ct_bytes
from tests.importing import metadata, run_import

pytestmark = pytest.mark.live


def code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def settled(mi, datastore_id: str, image_set_id: str) -> dict:
    return wait_for(lambda: (p := mi.get_image_set(datastoreId=datastore_id, imageSetId=image_set_id))[
        "imageSetState"] != "LOCKED" and p)


@pytest.fixture
def study(mi, s3, active_datastore):
    """Two primary series of one study (3 + 2 instances) and a non-primary set for a conflicting patient name."""
    study_uid, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    files = {f"a{n}.dcm": ct_bytes(study_uid=study_uid, series_uid=series_a, instance_number=n, seed=n)
             for n in range(1, 4)}
    files.update({f"b{n}.dcm": ct_bytes(study_uid=study_uid, series_uid=series_b, instance_number=n, seed=10 + n)
                  for n in range(1, 3)})
    outcome = run_import(mi, s3, active_datastore, files)
    conflict = run_import(mi, s3, active_datastore, {"c1.dcm": ct_bytes(
        study_uid=study_uid, series_uid=series_a, instance_number=9, patient_name="OTHER^NAME", seed=99)})
    return {
        "datastore": active_datastore, "study": study_uid, "series_a": series_a, "series_b": series_b,
        "a": outcome.line_for("a1.dcm")["importResponse"]["imageSetId"],
        "b": outcome.line_for("b1.dcm")["importResponse"]["imageSetId"],
        "c": conflict.line_for("c1.dcm")["importResponse"]["imageSetId"],
    }


def search(mi, datastore_id, **criteria):
    return mi.search_image_sets(datastoreId=datastore_id, searchCriteria=criteria)


def test_search_filters_sorts_and_pages(mi, mi_raw, study):
    ds = study["datastore"]
    everything = search(mi, ds)
    assert {s["imageSetId"] for s in everything["imageSetsMetadataSummaries"]} == {study["a"], study["b"], study["c"]}
    assert everything["sort"] == {"sortField": "updatedAt", "sortOrder": "DESC"}
    updated = [s["updatedAt"] for s in everything["imageSetsMetadataSummaries"]]
    assert updated == sorted(updated, reverse=True)

    by_uid = search(mi, ds, filters=[{"operator": "EQUAL", "values": [{"DICOMStudyInstanceUID": study["study"]}]},
                                     {"operator": "EQUAL", "values": [{"isPrimary": True}]}])
    summaries = by_uid["imageSetsMetadataSummaries"]
    assert {s["imageSetId"] for s in summaries} == {study["a"], study["b"]}
    tags = next(s for s in summaries if s["imageSetId"] == study["a"])["DICOMTags"]
    assert tags["DICOMPatientId"] == "PID-1" and tags["DICOMPatientName"] == "DOE^JANE"
    assert tags["DICOMSeriesModality"] == "CT" and tags["DICOMSeriesNumber"] == 3
    assert tags["DICOMNumberOfStudyRelatedSeries"] == 2 and tags["DICOMNumberOfStudyRelatedInstances"] == 5
    assert tags["DICOMStudyDate"] == "20240102"

    series = search(mi, ds, filters=[{"operator": "EQUAL", "values": [{"DICOMSeriesInstanceUID": study["series_b"]}]}])
    assert [s["imageSetId"] for s in series["imageSetsMetadataSummaries"]] == [study["b"]]
    assert search(mi, ds, filters=[{"operator": "EQUAL", "values": [{"DICOMPatientId": "nobody"}]}])[
        "imageSetsMetadataSummaries"] == []
    assert len(search(mi, ds, filters=[{"operator": "EQUAL", "values": [{"DICOMAccessionNumber": "ACC1"}]}])[
        "imageSetsMetadataSummaries"]) == 3

    now = datetime.now(timezone.utc)
    window = search(mi, ds, filters=[{"operator": "BETWEEN", "values": [
        {"createdAt": now - timedelta(minutes=10)}, {"createdAt": now + timedelta(minutes=1)}]}],
        sort={"sortField": "createdAt", "sortOrder": "ASC"})
    created = [s["createdAt"] for s in window["imageSetsMetadataSummaries"]]
    assert len(created) == 3 and created == sorted(created)
    on_date = search(mi, ds, filters=[{"operator": "BETWEEN", "values": [
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20240102", "DICOMStudyTime": "101500"}},
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20240102", "DICOMStudyTime": "101500.5"}}]}],
        sort={"sortField": "DICOMStudyDateAndTime", "sortOrder": "ASC"})
    assert len(on_date["imageSetsMetadataSummaries"]) == 3
    assert search(mi, ds, filters=[{"operator": "EQUAL", "values": [
        {"DICOMStudyDateAndTime": {"DICOMStudyDate": "20240103"}}]}])["imageSetsMetadataSummaries"] == []

    first = mi.search_image_sets(datastoreId=ds, maxResults=1, searchCriteria={})
    second = mi.search_image_sets(datastoreId=ds, maxResults=1, nextToken=first["nextToken"], searchCriteria={})
    assert first["imageSetsMetadataSummaries"][0]["imageSetId"] != second["imageSetsMetadataSummaries"][0]["imageSetId"]
    with pytest.raises(ClientError) as excinfo:
        mi.search_image_sets(datastoreId=ds, nextToken=first["nextToken"], searchCriteria={
            "filters": [{"operator": "EQUAL", "values": [{"isPrimary": True}]}]})
    assert code(excinfo) == "ValidationException"


@pytest.mark.parametrize("criteria", [
    {"filters": [{"operator": "BETWEEN", "values": [{"createdAt": datetime(2024, 1, 1)}]}]},
    {"filters": [{"operator": "BETWEEN", "values": [{"createdAt": datetime(2024, 2, 1)},
                                                    {"createdAt": datetime(2024, 1, 1)}]}]},
    {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}]},
    {"filters": [{"operator": "BETWEEN", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}]},
    {"filters": [{"operator": "EQUAL", "values": [{"DICOMStudyDateAndTime": {"DICOMStudyDate": "240102"}}]}]},
    {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": "a", "DICOMStudyId": "b"}]}]},
    {"filters": [{"operator": "LIKE", "values": [{"DICOMPatientId": "a"}]}]},
    {"sort": {"sortField": "patientName", "sortOrder": "ASC"}},
], ids=["between-one-value", "bounds-reversed", "equal-two-values", "between-string", "short-date", "union-two-members",
        "bad-operator", "bad-sort"])
def test_search_misuse_is_a_validation_error(mi_raw, active_datastore, criteria):
    with pytest.raises(ClientError) as excinfo:
        mi_raw.search_image_sets(datastoreId=active_datastore, searchCriteria=criteria)
    assert code(excinfo) == "ValidationException"


def test_reads_versions_and_frames(mi, server, study):
    ds, a = study["datastore"], study["a"]
    image_set = mi.get_image_set(datastoreId=ds, imageSetId=a)
    assert image_set["versionId"] == "1" and image_set["imageSetState"] == "ACTIVE"
    assert image_set["imageSetArn"].endswith(f"datastore/{ds}/imageset/{a}")
    assert image_set["storageTier"] == "FREQUENT_ACCESS" and image_set["isPrimary"] is True
    versions = mi.list_image_set_versions(datastoreId=ds, imageSetId=a)["imageSetPropertiesList"]
    assert versions[0]["versionId"] == "1" and versions[0]["ImageSetWorkflowStatus"] == "CREATED"
    raw = mi.get_image_set_metadata(datastoreId=ds, imageSetId=a)
    assert raw["contentEncoding"] == "gzip" and raw["contentType"] == "application/json"
    body = raw["imageSetMetadataBlob"].read()
    assert body[:2] == b"\x1f\x8b"  # the stored gzip bytes, not compressed twice
    document = json.loads(gzip.decompress(body))
    instance = next(iter(document["Study"]["Series"][study["series_a"]]["Instances"].values()))
    frame_id = instance["ImageFrames"][0]["ID"]
    frame = mi.get_image_frame(datastoreId=ds, imageSetId=a, imageFrameInformation={"imageFrameId": frame_id})
    assert frame["contentType"] == "image/jph" and frame["imageFrameBlob"].read()[:2] == b"\xff\x4f"

    def accept(value):
        def add(request, **_):
            request.headers["Accept"] = value
        return add

    handler = accept("image/jpeg")
    mi.meta.events.register("before-sign.medical-imaging.GetImageFrame", handler)
    try:
        with pytest.raises(ClientError) as excinfo:
            mi.get_image_frame(datastoreId=ds, imageSetId=a, imageFrameInformation={"imageFrameId": frame_id})
        assert code(excinfo) == "NotAcceptableException"
    finally:
        mi.meta.events.unregister("before-sign.medical-imaging.GetImageFrame", handler)
    for missing in (lambda: mi.get_image_set(datastoreId=ds, imageSetId=a, versionId="7"),
                    lambda: mi.get_image_frame(datastoreId=ds, imageSetId=a,
                                               imageFrameInformation={"imageFrameId": "0" * 32})):
        with pytest.raises(ClientError) as excinfo:
            missing()
        assert code(excinfo) == "ResourceNotFoundException"


def update(mi, ds, image_set_id, version, *, updatable=None, removable=None, **flags):
    updates = {}
    if updatable is not None:
        updates["updatableAttributes"] = json.dumps({"SchemaVersion": 1.1, **updatable}).encode()
    if removable is not None:
        updates["removableAttributes"] = json.dumps({"SchemaVersion": 1.1, **removable}).encode()
    return mi.update_image_set_metadata(datastoreId=ds, imageSetId=image_set_id, latestVersionId=version,
                                        updateImageSetMetadataUpdates={"DICOMUpdates": updates}, **flags)


def test_update_revert_and_study_consistency(mi, study):
    ds, a, b = study["datastore"], study["a"], study["b"]
    answer = update(mi, ds, a, "1", updatable={"Study": {"DICOM": {"StudyDescription": "CHEST CT"}}})
    assert answer["latestVersionId"] == "2" and answer["imageSetState"] == "LOCKED"
    assert answer["imageSetWorkflowStatus"] == "UPDATING"
    done = settled(mi, ds, a)
    assert done["imageSetWorkflowStatus"] == "UPDATED" and done["versionId"] == "2"
    assert metadata(mi, ds, a)["Study"]["DICOM"]["StudyDescription"] == "CHEST CT"
    assert "StudyDescription" not in metadata(mi, ds, a, "1")["Study"]["DICOM"]

    # PatientName is a grouping key shared with the other primary series: the whole study must change together.
    with pytest.raises(ClientError) as excinfo:
        update(mi, ds, a, "2", updatable={"Patient": {"DICOM": {"PatientName": "ROE^JANE"}}})
    assert code(excinfo) == "ConflictException" and "includeStudyImageSets" in excinfo.value.response["Error"]["Message"]
    update(mi, ds, a, "2", updatable={"Patient": {"DICOM": {"PatientName": "ROE^JANE"}}}, includeStudyImageSets=True)
    settled(mi, ds, a)
    wait_for(lambda: mi.get_image_set(datastoreId=ds, imageSetId=b)["imageSetState"] == "ACTIVE")
    assert metadata(mi, ds, b)["Patient"]["DICOM"]["PatientName"] == "ROE^JANE"
    b_versions = mi.list_image_set_versions(datastoreId=ds, imageSetId=b)["imageSetPropertiesList"]
    assert b_versions[0]["versionId"] == "2" and b_versions[0]["ImageSetWorkflowStatus"] == "UPDATED"

    # Remove one instance with an empty object, then revert to version 1.
    sop = next(iter(metadata(mi, ds, a)["Study"]["Series"][study["series_a"]]["Instances"]))
    update(mi, ds, a, "3", removable={"Study": {"Series": {study["series_a"]: {"Instances": {sop: {}}}}}})
    settled(mi, ds, a)
    assert sop not in metadata(mi, ds, a)["Study"]["Series"][study["series_a"]]["Instances"]
    mi.update_image_set_metadata(datastoreId=ds, imageSetId=a, latestVersionId="4", includeStudyImageSets=True,
                                 updateImageSetMetadataUpdates={"revertToVersionId": "1"})
    settled(mi, ds, a)
    reverted = metadata(mi, ds, a)
    assert sop in reverted["Study"]["Series"][study["series_a"]]["Instances"]
    assert reverted["Patient"]["DICOM"]["PatientName"] == "DOE^JANE"
    assert mi.get_image_set(datastoreId=ds, imageSetId=a)["versionId"] == "5"


@pytest.mark.parametrize("updatable, removable, expected", [
    ({"SchemaVersion": 1.1, "ImageSetID": "x"}, None, "ValidationException"),
    ({"Study": {"DICOM": {"StudyInstanceUID": "1.2.3"}}}, None, "ValidationException"),
    ({"Patient": {"DICOM": {"StudyDescription": "wrong level"}}}, None, "ValidationException"),
    ({"Study": {"DICOM": {"ProcedureCodeSequence": []}}}, None, "ValidationException"),
    ({"Patient": {"DICOM": {"OtherPatientNames": "A"}}}, None, "ValidationException"),
    ({"Patient": {"DICOM": {"00091010": "private"}}}, None, "ValidationException"),
    ({"Patient": {"DICOM": {"NotAKeyword": "x"}}}, None, "ValidationException"),
    ({"Study": {"DICOM": {"StudyDescription": 5}}}, None, "ValidationException"),
    ({"Study": {"Series": {"1.2.3.4": {"DICOM": {"SeriesDescription": "x"}}}}}, None, "ValidationException"),
    (None, {"Patient": {"DICOM": {"PatientSex": "M"}}}, "ValidationException"),
    ({"Study": {"DICOM": {"StudyDescription": "x" * 11000}}}, None, "ServiceQuotaExceededException"),
], ids=["generated", "uid", "wrong-level", "sequence", "multi-valued", "private", "unknown-keyword", "wrong-type",
        "unknown-series", "remove-wrong-value", "too-large"])
def test_update_rules(mi, study, updatable, removable, expected):
    ds, a = study["datastore"], study["a"]
    with pytest.raises(ClientError) as excinfo:
        update(mi, ds, a, "1", updatable=updatable, removable=removable)
    assert code(excinfo) == expected
    assert mi.get_image_set(datastoreId=ds, imageSetId=a)["versionId"] == "1"  # nothing half-done


def aws_cli_v1(server, *args: str) -> dict:
    """The AWS CLI v1 that `pip install awscli` gives (it passes blobs in JSON input raw), against the server."""
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.admin_key["AccessKeyId"],
           "AWS_SECRET_ACCESS_KEY": server.admin_key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_DISABLE_HOST_PREFIX_INJECTION": "true", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    completed = subprocess.run(
        [sys.executable, "-m", "awscli", "medical-imaging", *args, "--endpoint-url", server.url, "--output", "json"],
        env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout) if completed.stdout.strip() else {}


@pytest.mark.parametrize("form", ["raw JSON (AWS CLI v1 style)", "base64 (the guide's file, AWS CLI v2 style)"])
def test_update_metadata_from_a_file_with_the_aws_cli(mi, s3, server, active_datastore, tmp_path, form):
    import awscli

    assert awscli.__version__.startswith("1.")
    outcome = run_import(mi, s3, active_datastore, {"one.dcm": ct_bytes(study_uid=generate_uid(),
                                                                        series_uid=generate_uid())})
    image_set_id = outcome.line_for("one.dcm")["importResponse"]["imageSetId"]
    document = json.dumps({"SchemaVersion": 1.1, "Patient": {"DICOM": {"PatientName": "MX^MX"}}})
    blob = document if form.startswith("raw") else base64.b64encode(document.encode()).decode()
    updates = tmp_path / "metadata-updates.json"
    updates.write_text(json.dumps({"DICOMUpdates": {"updatableAttributes": blob}}))
    answer = aws_cli_v1(server, "update-image-set-metadata", "--datastore-id", active_datastore,
                        "--image-set-id", image_set_id, "--latest-version-id", "1",
                        "--update-image-set-metadata-updates", f"file://{updates}")
    assert answer["latestVersionId"] == "2"
    settled(mi, active_datastore, image_set_id)
    assert metadata(mi, active_datastore, image_set_id)["Patient"]["DICOM"]["PatientName"] == "MX^MX"


@pytest.mark.parametrize("blob", [b"bm90IGpzb24=", base64.b64encode(b"[1, 2]"), b"\xff\xfe", b"QUJD*"])
def test_update_blob_that_is_neither_json_nor_base64_json_is_refused(mi, study, blob):
    with pytest.raises(ClientError) as excinfo:
        mi.update_image_set_metadata(datastoreId=study["datastore"], imageSetId=study["a"], latestVersionId="1",
                                     updateImageSetMetadataUpdates={"DICOMUpdates": {"updatableAttributes": blob}})
    assert code(excinfo) == "ValidationException"
    assert "updatableAttributes must be" in excinfo.value.response["Error"]["Message"]


def test_update_conflicts(mi, mi_raw, study):
    ds, c = study["datastore"], study["c"]
    with pytest.raises(ClientError) as excinfo:
        update(mi, ds, c, "9", updatable={"Study": {"DICOM": {"StudyDescription": "x"}}})
    assert code(excinfo) == "ConflictException"
    with pytest.raises(ClientError) as excinfo:
        mi_raw.update_image_set_metadata(datastoreId=ds, imageSetId=c, latestVersionId="1",
                                         updateImageSetMetadataUpdates={"DICOMUpdates": {}})
    assert code(excinfo) == "ValidationException"
    # force lets a non-primary set change its UIDs (the way to fix an import conflict).
    update(mi, ds, c, "1", updatable={"Patient": {"DICOM": {"PatientName": "DOE^JANE"}},
                                      "Study": {"DICOM": {"StudyID": "S9"}}}, force=True)
    assert settled(mi, ds, c)["overrides"] == {"forced": True}


def test_twenty_concurrent_updates_one_wins(mi, study):
    ds, b = study["datastore"], study["b"]
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(n: int) -> None:
        try:
            update(mi, ds, b, "1", updatable={"Study": {"DICOM": {"StudyDescription": f"writer {n}"}}})
            result = "ok"
        except ClientError as e:
            result = e.response["Error"]["Code"]
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 1, outcomes
    assert outcomes.count("ConflictException") == 19
    settled(mi, ds, b)
    versions = mi.list_image_set_versions(datastoreId=ds, imageSetId=b)["imageSetPropertiesList"]
    assert [v["versionId"] for v in versions] == ["2", "1"]
    assert metadata(mi, ds, b)["Study"]["DICOM"]["StudyDescription"].startswith("writer ")


def test_copy_subset_merge_and_promote(mi, study):
    ds, a, c = study["datastore"], study["a"], study["c"]
    sops = list(metadata(mi, ds, a)["Study"]["Series"][study["series_a"]]["Instances"])
    subset = json.dumps({"SchemaVersion": "1.1", "Study": {"Series": {study["series_a"]: {"Instances": {sops[0]: {}}}}}})
    copied = mi.copy_image_set(datastoreId=ds, sourceImageSetId=a, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1", "DICOMCopies": {"copiableAttributes": subset}}})
    assert copied["sourceImageSetProperties"]["imageSetWorkflowStatus"] == "COPYING_WITH_READ_ONLY_ACCESS"
    new_id = copied["destinationImageSetProperties"]["imageSetId"]
    assert copied["destinationImageSetProperties"]["latestVersionId"] == "1"
    done = settled(mi, ds, new_id)
    assert done["imageSetWorkflowStatus"] == "COPIED" and done["isPrimary"] is False
    assert settled(mi, ds, a)["imageSetState"] == "ACTIVE"
    copy_doc = metadata(mi, ds, new_id)
    assert list(copy_doc["Study"]["Series"][study["series_a"]]["Instances"]) == [sops[0]]
    assert copy_doc["ImageSetID"] == new_id
    frame_id = copy_doc["Study"]["Series"][study["series_a"]]["Instances"][sops[0]]["ImageFrames"][0]["ID"]
    assert mi.get_image_frame(datastoreId=ds, imageSetId=new_id,
                              imageFrameInformation={"imageFrameId": frame_id})["imageFrameBlob"].read()

    # Merging the same instance into a set that holds it already is a conflict; stale versions too.
    with pytest.raises(ClientError) as excinfo:
        mi.copy_image_set(datastoreId=ds, sourceImageSetId=new_id, copyImageSetInformation={
            "sourceImageSet": {"latestVersionId": "1"}, "destinationImageSet": {"imageSetId": a, "latestVersionId": "1"}})
    assert code(excinfo) == "ConflictException"
    with pytest.raises(ClientError) as excinfo:
        mi.copy_image_set(datastoreId=ds, sourceImageSetId=a, copyImageSetInformation={
            "sourceImageSet": {"latestVersionId": "3"}})
    assert code(excinfo) == "ConflictException"
    # The non-primary set with another patient name merges into series A only with force.
    with pytest.raises(ClientError) as excinfo:
        mi.copy_image_set(datastoreId=ds, sourceImageSetId=c, copyImageSetInformation={
            "sourceImageSet": {"latestVersionId": "1"}, "destinationImageSet": {"imageSetId": a, "latestVersionId": "1"}})
    assert code(excinfo) == "ConflictException"
    merged = mi.copy_image_set(datastoreId=ds, sourceImageSetId=c, force=True, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1"}, "destinationImageSet": {"imageSetId": a, "latestVersionId": "1"}})
    assert merged["destinationImageSetProperties"]["latestVersionId"] == "2"
    settled(mi, ds, a)
    merged_doc = metadata(mi, ds, a)
    assert len(merged_doc["Study"]["Series"][study["series_a"]]["Instances"]) == 4
    assert merged_doc["Patient"]["DICOM"]["PatientName"] == "DOE^JANE"  # the destination keeps its own values


def frame_files(server, datastore_id: str) -> set[str]:
    return {path.name for path in (server.data_dir / "blobs" / "datastores" / datastore_id / "frames").rglob("*")
            if path.is_file()}


def test_deleting_a_copy_source_keeps_shared_frames(mi, server, study):
    ds, a = study["datastore"], study["a"]
    document = metadata(mi, ds, a)
    instances = document["Study"]["Series"][study["series_a"]]["Instances"]
    frame_of = {sop: node["ImageFrames"][0]["ID"] for sop, node in instances.items()}
    kept_sop = next(iter(frame_of))
    subset = json.dumps({"SchemaVersion": "1.1", "Study": {"Series": {study["series_a"]: {"Instances": {kept_sop: {}}}}}})
    copy_id = mi.copy_image_set(datastoreId=ds, sourceImageSetId=a, copyImageSetInformation={
        "sourceImageSet": {"latestVersionId": "1", "DICOMCopies": {"copiableAttributes": subset}}})[
        "destinationImageSetProperties"]["imageSetId"]
    settled(mi, ds, copy_id)
    settled(mi, ds, a)
    assert set(frame_of.values()) <= frame_files(server, ds)
    mi.delete_image_set(datastoreId=ds, imageSetId=a)
    wait_for(lambda: mi.get_image_set(datastoreId=ds, imageSetId=a)["imageSetState"] == "DELETED")
    remaining = frame_files(server, ds)
    assert frame_of[kept_sop] in remaining  # still referenced by the copy
    assert not (set(frame_of.values()) - {frame_of[kept_sop]}) & remaining  # garbage-collected
    frame = mi.get_image_frame(datastoreId=ds, imageSetId=copy_id, imageFrameInformation={"imageFrameId": frame_of[kept_sop]})
    assert frame["imageFrameBlob"].read()


def test_promote_to_primary_after_the_primary_is_deleted(mi, study):
    ds, a, c = study["datastore"], study["a"], study["c"]
    mi.delete_image_set(datastoreId=ds, imageSetId=a)
    wait_for(lambda: mi.get_image_set(datastoreId=ds, imageSetId=a)["imageSetState"] == "DELETED")
    promoted = mi.copy_image_set(datastoreId=ds, sourceImageSetId=c, promoteToPrimary=True,
                                 copyImageSetInformation={"sourceImageSet": {"latestVersionId": "1"}})
    new_primary = promoted["destinationImageSetProperties"]["imageSetId"]
    assert settled(mi, ds, new_primary)["isPrimary"] is True
    assert mi.get_image_set(datastoreId=ds, imageSetId=c)["isPrimary"] is False


def test_delete_image_sets_then_the_datastore(mi, study):
    ds = study["datastore"]
    answer = mi.delete_image_set(datastoreId=ds, imageSetId=study["b"])
    assert answer["imageSetState"] == "LOCKED" and answer["imageSetWorkflowStatus"] == "DELETING"
    deleted = wait_for(lambda: (p := mi.get_image_set(datastoreId=ds, imageSetId=study["b"]))["imageSetState"]
                       == "DELETED" and p)
    assert deleted["imageSetWorkflowStatus"] == "DELETED" and "deletedAt" in deleted
    assert mi.delete_image_set(datastoreId=ds, imageSetId=study["b"])["imageSetState"] == "DELETED"
    with pytest.raises(ClientError) as excinfo:
        mi.get_image_set_metadata(datastoreId=ds, imageSetId=study["b"])
    assert code(excinfo) == "ResourceNotFoundException"
    assert study["b"] not in {s["imageSetId"] for s in search(mi, ds)["imageSetsMetadataSummaries"]}
    with pytest.raises(ClientError) as excinfo:
        mi.delete_datastore(datastoreId=ds)
    assert code(excinfo) == "ConflictException"
    for image_set_id in (study["a"], study["c"]):
        mi.delete_image_set(datastoreId=ds, imageSetId=image_set_id)
        wait_for(lambda: mi.get_image_set(datastoreId=ds, imageSetId=image_set_id)["imageSetState"] == "DELETED")
    assert mi.delete_datastore(datastoreId=ds)["datastoreStatus"] == "DELETING"


def test_image_set_tags(mi, study):
    arn = mi.get_image_set(datastoreId=study["datastore"], imageSetId=study["a"])["imageSetArn"]
    mi.tag_resource(resourceArn=arn, tags={"review": "pending"})
    assert mi.list_tags_for_resource(resourceArn=arn)["tags"] == {"review": "pending"}
    mi.untag_resource(resourceArn=arn, tagKeys=["review"])
    assert mi.list_tags_for_resource(resourceArn=arn)["tags"] == {}


def test_readonly_key_reads_but_cannot_write(mi_readonly, study):
    ds, a = study["datastore"], study["a"]
    assert mi_readonly.get_image_set(datastoreId=ds, imageSetId=a)["imageSetId"] == a
    assert mi_readonly.search_image_sets(datastoreId=ds, searchCriteria={})["imageSetsMetadataSummaries"]
    with pytest.raises(ClientError) as excinfo:
        mi_readonly.delete_image_set(datastoreId=ds, imageSetId=a)
    assert code(excinfo) == "AccessDeniedException"
