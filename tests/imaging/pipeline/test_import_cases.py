"""Import jobs through boto3 with generated files: bad-file kinds, grouping, merging, job-level failures."""
from __future__ import annotations

import io

import pytest
from botocore.exceptions import ClientError
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGLSLossless, generate_uid

from tests.dicomgen import ct_bytes, ct_dataset, to_bytes
from tests.importing import ROLE, ensure_bucket, metadata, run_import

pytestmark = pytest.mark.live


def without(keyword: str) -> bytes:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    delattr(ds, keyword)
    return to_bytes(ds)


def no_transfer_syntax() -> bytes:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    del ds.file_meta.TransferSyntaxUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=False, little_endian=True)
    data = buffer.getvalue()
    return data if data[128:132] == b"DICM" else b"\0" * 128 + b"DICM" + data


def no_file_meta() -> bytes:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    buffer = io.BytesIO()
    del ds.file_meta
    ds.save_as(buffer, enforce_file_format=False, implicit_vr=True, little_endian=True)
    return b"\0" * 128 + b"DICM" + buffer.getvalue()


def too_long_patient_id() -> bytes:
    return ct_bytes(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="P" * 65)


def short_pixel_data() -> bytes:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    return to_bytes(ds)


def undecodable_stream() -> bytes:
    ds = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8" + b"not a jpeg-ls stream" * 20])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


BAD_FILES = {
    "not-dicom.txt": (b"This is not DICOM at all.\n" * 20, "DICM prefix are missing"),
    "no-file-meta.dcm": (no_file_meta(), "Not a valid DICOM P10 file"),
    "no-transfer-syntax.dcm": (no_transfer_syntax(), "TransferSyntaxUID does not exist"),
    "no-sop-uid.dcm": (without("SOPInstanceUID"), "SOPInstanceUID does not exist"),
    "no-series-uid.dcm": (without("SeriesInstanceUID"), "SeriesInstanceUID does not exist"),
    "no-study-uid.dcm": (without("StudyInstanceUID"), "StudyInstanceUID does not exist"),
    "long-patient-id.dcm": (too_long_patient_id(), "PatientID has length 65, more than the allowed 64"),
    "short-pixels.dcm": (short_pixel_data(), "Pixel data is shorter than declared"),
    "undecodable.dcm": (undecodable_stream(), "cannot be decoded"),
    "truncated.dcm": (ct_bytes(study_uid=generate_uid(), series_uid=generate_uid())[:200], "Not a valid DICOM P10 file"),
}


def test_bad_files_fail_one_by_one_and_the_job_goes_on(mi, s3, active_datastore):
    good = ct_bytes(study_uid=generate_uid(), series_uid=generate_uid())
    files = {name: content for name, (content, _) in BAD_FILES.items()}
    files["nested/deeper/good.dcm"] = good
    files["empty.dcm"] = b""  # zero-byte objects are skipped, not counted
    outcome = run_import(mi, s3, active_datastore, files)
    assert outcome.job["jobStatus"] == "COMPLETED"
    assert outcome.summary["numberOfScannedFiles"] == len(BAD_FILES) + 1
    assert outcome.summary["numberOfImportedFiles"] == 1
    assert outcome.summary["numberOfFilesWithCustomerError"] == len(BAD_FILES)
    assert outcome.summary["numberOfFilesWithServerError"] == 0
    for name, (_, reason) in BAD_FILES.items():
        line = outcome.line_for(name)
        assert line["exception"]["exceptionType"] == "ValidationException", name
        assert reason in line["exception"]["message"], (name, line)
    good_line = outcome.line_for("nested/deeper/good.dcm")
    assert good_line["inputFile"].endswith("nested/deeper/good.dcm")
    # Nothing of the failed files was stored: the data store holds exactly the one good instance.
    response = good_line["importResponse"]
    assert response == {"imageSetId": response["imageSetId"], "imageSetVersion": 1, "isPrimary": True}
    assert outcome.summary["numberOfGeneratedImageSets"] == 1


def test_two_patient_names_in_one_series_make_two_image_sets(mi, s3, active_datastore):
    study, series = generate_uid(), generate_uid()
    files = {
        f"i{n}.dcm": ct_bytes(study_uid=study, series_uid=series, instance_number=n,
                              patient_name="DOE^JANE" if n <= 2 else "DOE^JOHN", seed=n)
        for n in range(1, 5)
    }
    outcome = run_import(mi, s3, active_datastore, files)
    assert outcome.summary["numberOfGeneratedImageSets"] == 2
    jane = outcome.line_for("i1.dcm")["importResponse"]
    john = outcome.line_for("i3.dcm")["importResponse"]
    assert outcome.line_for("i2.dcm")["importResponse"]["imageSetId"] == jane["imageSetId"]
    assert outcome.line_for("i4.dcm")["importResponse"]["imageSetId"] == john["imageSetId"]
    assert jane["imageSetId"] != john["imageSetId"]
    assert jane["isPrimary"] is True and john["isPrimary"] is False
    assert mi.get_image_set(datastoreId=active_datastore, imageSetId=john["imageSetId"])["isPrimary"] is False
    document = metadata(mi, active_datastore, jane["imageSetId"])
    assert document["Patient"]["DICOM"]["PatientName"] == "DOE^JANE"
    assert len(document["Study"]["Series"][series]["Instances"]) == 2

    # A later import of the same series and patient merges into the primary image set as a new version.
    later = run_import(mi, s3, active_datastore, {
        "i5.dcm": ct_bytes(study_uid=study, series_uid=series, instance_number=5, seed=5)
    })
    merged = later.line_for("i5.dcm")["importResponse"]
    assert merged == {"imageSetId": jane["imageSetId"], "imageSetVersion": 2, "isPrimary": True}
    image_set = mi.get_image_set(datastoreId=active_datastore, imageSetId=jane["imageSetId"])
    assert image_set["versionId"] == "2" and image_set["imageSetWorkflowStatus"] == "IMPORTED"
    assert len(metadata(mi, active_datastore, jane["imageSetId"])["Study"]["Series"][series]["Instances"]) == 3
    assert len(metadata(mi, active_datastore, jane["imageSetId"], "1")["Study"]["Series"][series]["Instances"]) == 2


def test_metadata_document_is_normalized(mi, s3, active_datastore):
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    outcome = run_import(mi, s3, active_datastore, {"a.dcm": ct_bytes(study_uid=study, series_uid=series, sop_uid=sop)})
    response = outcome.line_for("a.dcm")["importResponse"]
    document = metadata(mi, active_datastore, response["imageSetId"])
    assert document["SchemaVersion"] == "1.1"
    assert document["DatastoreID"] == active_datastore and document["ImageSetID"] == response["imageSetId"]
    assert document["Patient"]["DICOM"] == {"PatientName": "DOE^JANE", "PatientID": "PID-1",
                                            "PatientBirthDate": "19700101", "PatientSex": "F"}
    assert document["Study"]["DICOM"]["StudyInstanceUID"] == study
    series_node = document["Study"]["Series"][series]
    assert series_node["DICOM"]["Modality"] == "CT" and series_node["DICOM"]["SeriesNumber"] == "3"
    instance = series_node["Instances"][sop]
    dicom = instance["DICOM"]
    assert dicom["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert dicom["SliceThickness"] == "1.0" and dicom["InstanceNumber"] == "1"
    assert dicom["Rows"] == 64 and dicom["BitsStored"] == 12
    assert dicom["PixelData"] is None
    assert dicom["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"
    assert dicom["00091010"] == "private value" and instance["DICOMVRs"]["00091010"] == "LO"
    assert instance["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.202"
    frame = instance["ImageFrames"][0]
    assert frame["FrameSizeInBytes"] == 64 * 64 * 2
    # 64x64 calls for 0 decomposition levels; the encoder's smallest is 1 (see imaging/codecs/htj2k.py).
    assert [level["Width"] for level in frame["PixelDataChecksumFromBaseToFullResolution"]] == [32, 64]


def test_start_is_idempotent_and_jobs_are_listed(mi, s3, active_datastore):
    ensure_bucket(s3, "imports")
    s3.put_object(Bucket="imports", Key="idem/a.dcm", Body=ct_bytes(study_uid=generate_uid(), series_uid=generate_uid()))
    kwargs = dict(datastoreId=active_datastore, dataAccessRoleArn=ROLE, inputS3Uri="s3://imports/idem/",
                  outputS3Uri="s3://imports/idem-out", clientToken="same-token", jobName="nightly")
    first = mi.start_dicom_import_job(**kwargs)
    again = mi.start_dicom_import_job(**kwargs)
    assert again["jobId"] == first["jobId"]
    with pytest.raises(ClientError) as excinfo:
        mi.start_dicom_import_job(**{**kwargs, "jobName": "other"})
    assert excinfo.value.response["Error"]["Code"] == "ConflictException"
    jobs = mi.list_dicom_import_jobs(datastoreId=active_datastore)["jobSummaries"]
    assert first["jobId"] in [job["jobId"] for job in jobs]
    summary = next(job for job in jobs if job["jobId"] == first["jobId"])
    assert summary["jobName"] == "nightly" and summary["dataAccessRoleArn"] == ROLE
    pages = list(mi.get_paginator("list_dicom_import_jobs").paginate(datastoreId=active_datastore,
                                                                       PaginationConfig={"PageSize": 1}))
    assert all(len(page["jobSummaries"]) <= 1 for page in pages)


def test_unlistable_input_fails_the_job(mi, s3, active_datastore):
    input_uri, output_uri = "s3://no-such-bucket-here/x/", "s3://imports/out/"
    started = mi.start_dicom_import_job(datastoreId=active_datastore, dataAccessRoleArn=ROLE, inputS3Uri=input_uri,
                                        outputS3Uri=output_uri)
    from tests.clients import wait_for

    job = wait_for(lambda: (p := mi.get_dicom_import_job(datastoreId=active_datastore, jobId=started["jobId"])[
        "jobProperties"])["jobStatus"] in ("COMPLETED", "FAILED") and p)
    assert job["jobStatus"] == "FAILED"
    assert job["message"] and "endedAt" in job


def test_input_owner_account_must_own_the_input_bucket(mi, s3, active_datastore):
    files = {"a.dcm": ct_bytes(study_uid=generate_uid(), series_uid=generate_uid())}
    outcome = run_import(mi, s3, active_datastore, files, inputOwnerAccountId="111122223333")
    assert outcome.job["jobStatus"] == "FAILED"
    assert "not owned by account 111122223333" in outcome.job["message"]
    # The buckets of this server belong to its own account (APERTURE_ACCOUNT_ID, 000000000000 by default).
    outcome = run_import(mi, s3, active_datastore, files, inputOwnerAccountId="000000000000")
    assert outcome.job["jobStatus"] == "COMPLETED" and outcome.summary["numberOfImportedFiles"] == 1


def test_start_errors(mi, mi_raw, mi_readonly, active_datastore):
    good = dict(dataAccessRoleArn=ROLE, inputS3Uri="s3://imports/in/", outputS3Uri="s3://imports/out/")
    with pytest.raises(ClientError) as excinfo:
        mi.start_dicom_import_job(datastoreId="0" * 32, **good)
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    for bad in ({"inputS3Uri": "http://x/"}, {"dataAccessRoleArn": "arn:aws:iam::1:user/x"},
                {"inputOwnerAccountId": "12"}):
        with pytest.raises(ClientError) as excinfo:
            mi_raw.start_dicom_import_job(datastoreId=active_datastore, **{**good, **bad})
        assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as excinfo:
        mi_readonly.start_dicom_import_job(datastoreId=active_datastore, **good)
    assert excinfo.value.response["Error"]["Code"] == "AccessDeniedException"
    with pytest.raises(ClientError) as excinfo:
        mi.get_dicom_import_job(datastoreId=active_datastore, jobId="nosuchjob")
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_import_into_datastore_with_image_sets_blocks_delete(mi, s3):
    datastore_id = mi.create_datastore(datastoreName="busy")["datastoreId"]
    from tests.clients import wait_for

    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    run_import(mi, s3, datastore_id, {"a.dcm": ct_bytes(study_uid=generate_uid(), series_uid=generate_uid())})
    with pytest.raises(ClientError) as excinfo:
        mi.delete_datastore(datastoreId=datastore_id)
    assert excinfo.value.response["Error"]["Code"] == "ConflictException"


def test_json_metadata_files_override_and_add_attributes_before_grouping(mi, s3, active_datastore):
    import json

    study, series = generate_uid(), generate_uid()
    files = {
        f"dicom/i{n}.dcm": ct_bytes(study_uid=study, series_uid=series, instance_number=n,
                                    patient_name="DOE^JANE" if n == 1 else "DOE^JNAE", seed=n)
        for n in (1, 2)
    }
    files["meta/study.json"] = json.dumps({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE^MARIE"}]},  # corrects the typo in i2
        "00081030": {"vr": "LO", "Value": ["Head CT, corrected"]},
        "0020000D": {"vr": "UI", "Value": [study]},
    }).encode()
    files["meta/series.json"] = json.dumps({
        "0008103E": {"vr": "LO", "Value": ["Axial 1 mm"]},
        "00189305": {"vr": "FD", "Value": [1.25]},
        "00091010": {"vr": "LO", "Value": ["ACME"]},
        "00400275": {"vr": "SQ", "Value": [{"00321060": {"vr": "LO", "Value": ["CT HEAD"]}}]},
    }).encode()
    configuration = {"dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": [
        {"studyInstanceUID": study, "seriesInstanceUID": series, "metadataFilePath": "meta/series.json"},
        {"studyInstanceUID": study, "metadataFilePath": "meta/study.json"},
    ]}}
    outcome = run_import(mi, s3, active_datastore, files, importConfiguration=configuration)
    assert outcome.job["jobStatus"] == "COMPLETED", outcome.job
    assert outcome.job["importConfiguration"] == configuration  # echoed
    # The metadata files are configuration, not instances; the corrected name puts both files in one image set.
    assert outcome.summary["numberOfScannedFiles"] == 2 and outcome.failure == []
    assert outcome.summary["numberOfGeneratedImageSets"] == 1
    image_set_id = outcome.line_for("i1.dcm")["importResponse"]["imageSetId"]
    document = metadata(mi, active_datastore, image_set_id)
    assert document["Patient"]["DICOM"]["PatientName"] == "DOE^JANE^MARIE"
    assert document["Study"]["DICOM"]["StudyDescription"] == "Head CT, corrected"
    serie = document["Study"]["Series"][series]
    assert serie["DICOM"]["SeriesDescription"] == "Axial 1 mm"
    instance = next(iter(serie["Instances"].values()))
    assert instance["DICOM"]["00091010"] == "ACME" and instance["DICOMVRs"]["00091010"] == "LO"
    assert instance["DICOM"]["RevolutionTime"] == 1.25
    assert serie["DICOM"]["RequestAttributesSequence"] == [{"RequestedProcedureDescription": "CT HEAD"}]


def test_search_key_limits_apply_to_the_values_as_stored(mi, s3, active_datastore):
    """SPEC 4.6, one rule: a search key over its limit fails the file, checked after the JSON metadata mapping, so a
    mapping corrects the over-long StudyID of a JPEG70__bad_sequence-style file, and cannot store one itself; any
    other over-long value is kept with warning 0xB202."""
    import json

    from tests.paths import DICOM_DIR

    hashed_study, mapped_study = generate_uid(), generate_uid()
    hashed = ct_dataset(study_uid=hashed_study, series_uid=generate_uid())
    hashed.StudyID = "d6e895774587360288a394441a225639d97f7ae4374153c9e1ff53dc3bafa128"  # as in JPEG70__bad_sequence
    long_description = ct_dataset(study_uid=generate_uid(), series_uid=generate_uid())
    long_description.SeriesDescription = "S" * 80  # LO allows 64; not a search key
    files = {
        "bad-sequence.dcm": DICOM_DIR / "JPEG70__bad_sequence.dcm",  # its StudyInstanceUID is no UID: no mapping
        "hashed-study-id.dcm": to_bytes(hashed),
        "mapped.dcm": ct_bytes(study_uid=mapped_study, series_uid=generate_uid()),
        "long-series-description.dcm": to_bytes(long_description),
        "corrected.json": json.dumps({"00200010": {"vr": "SH", "Value": ["S1"]}}).encode(),
        "too-long.json": json.dumps({"00200010": {"vr": "SH", "Value": ["Y" * 20]}}).encode(),
    }
    configuration = {"dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": [
        {"studyInstanceUID": hashed_study, "metadataFilePath": "corrected.json"},
        {"studyInstanceUID": mapped_study, "metadataFilePath": "too-long.json"},
    ]}}
    outcome = run_import(mi, s3, active_datastore, files, importConfiguration=configuration)
    assert outcome.job["jobStatus"] == "COMPLETED", outcome.job
    corrected = outcome.line_for("hashed-study-id.dcm")
    assert "importResponse" in corrected, corrected
    document = metadata(mi, active_datastore, corrected["importResponse"]["imageSetId"])
    assert document["Study"]["DICOM"]["StudyID"] == "S1"
    for name, length in (("bad-sequence.dcm", 64), ("mapped.dcm", 20)):
        line = outcome.line_for(name)
        assert line["exception"]["exceptionType"] == "ValidationException", line
        assert f"StudyID has length {length}, more than the allowed 16" in line["exception"]["message"]
        assert "JSON metadata mapping" in line["exception"]["message"]  # says how to fix it
    kept = outcome.line_for("long-series-description.dcm")["importResponse"]
    assert [warning["warning_reason_code"] for warning in kept["warnings"]] == [0xB202], kept
    assert outcome.summary["numberOfImportedFiles"] == 2
    assert outcome.summary["numberOfFilesWithCustomerError"] == 2
    found = mi.search_image_sets(datastoreId=active_datastore, searchCriteria={"filters": [
        {"values": [{"DICOMStudyInstanceUID": mapped_study}], "operator": "EQUAL"}]})
    assert found["imageSetsMetadataSummaries"] == []


@pytest.mark.parametrize("content, mapping_path, message", [
    (b"{not json", "meta.json", "is not JSON"),
    (b'{"00100010": {"Value": ["x"]}}', "meta.json", "unknown or missing vr"),
    (b'{"00080018": {"vr": "UI", "Value": ["1.2.3"]}}', "meta.json", "SOPInstanceUID cannot be set"),
    (b'{"0020000D": {"vr": "UI", "Value": ["9.9.9"]}}', "meta.json", "cannot change StudyInstanceUID"),
    (b"{}", "missing.json", "is not under the input location"),
    (b"{}", "../outside.json", "must be a path inside the input location"),
])
def test_a_bad_metadata_configuration_fails_the_job_before_anything_is_stored(mi, s3, active_datastore, content,
                                                                             mapping_path, message):
    study = generate_uid()
    files = {"i.dcm": ct_bytes(study_uid=study, series_uid=generate_uid()), "meta.json": content}
    configuration = {"dicomJsonMetadataImportConfiguration": {"dicomMetadataMappings": [
        {"studyInstanceUID": study, "metadataFilePath": mapping_path}]}}
    outcome = run_import(mi, s3, active_datastore, files, importConfiguration=configuration)
    assert outcome.job["jobStatus"] == "FAILED"
    assert message in outcome.job["message"]
    assert mi.search_image_sets(datastoreId=active_datastore, searchCriteria={"filters": [
        {"values": [{"DICOMStudyInstanceUID": study}], "operator": "EQUAL"}]})["imageSetsMetadataSummaries"] == []


def test_a_jpeg_2000_lossless_data_store_stores_verified_j2k_frames(mi, s3):
    import zlib

    import imagecodecs
    import numpy as np

    datastore_id = mi.create_datastore(datastoreName="j2k", losslessStorageFormat="JPEG_2000_LOSSLESS")["datastoreId"]
    from tests.clients import wait_for

    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    ds = ct_dataset(study_uid=study, series_uid=series, sop_uid=sop, rows=300, columns=200, seed=4)
    outcome = run_import(mi, s3, datastore_id, {"a.dcm": to_bytes(ds)})
    image_set_id = outcome.line_for("a.dcm")["importResponse"]["imageSetId"]
    instance = metadata(mi, datastore_id, image_set_id)["Study"]["Series"][series]["Instances"][sop]
    assert instance["StoredTransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    frame = instance["ImageFrames"][0]
    answer = mi.get_image_frame(datastoreId=datastore_id, imageSetId=image_set_id,
                                imageFrameInformation={"imageFrameId": frame["ID"]})
    assert answer["contentType"] == "image/j2c"
    codestream = answer["imageFrameBlob"].read()
    assert codestream[:4] == b"\xff\x4f\xff\x51"  # a J2K codestream, not HTJ2K (no CAP marker needed)
    decoded = imagecodecs.jpeg2k_decode(codestream)
    assert np.array_equal(decoded, ds.pixel_array)
    checksums = frame["PixelDataChecksumFromBaseToFullResolution"]
    assert checksums[-1] == {"Width": 200, "Height": 300,
                             "Checksum": zlib.crc32(ds.pixel_array.astype("<u2").tobytes())}
    from tests.dicomgen import reduced_resolution

    assert len(checksums) == 3  # 300 x 200: two decomposition levels
    for skip, entry in zip((2, 1), checksums):
        band = np.clip(reduced_resolution(ds.pixel_array, skip), 0, 4095).astype("<u2")
        assert entry == {"Width": band.shape[1], "Height": band.shape[0], "Checksum": zlib.crc32(band.tobytes())}
