"""Helpers for import tests: upload files to SeaweedFS, run a job through the API, read its manifests."""
from __future__ import annotations

import gzip
import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from tests.clients import wait_for

ROLE = "arn:aws:iam::123456789012:role/ImportRole"


@dataclass
class ImportOutcome:
    job: dict
    summary: dict
    success: list[dict]
    warning: list[dict]
    failure: list[dict]

    def line_for(self, name: str) -> dict:
        for line in self.success + self.warning + self.failure:
            if line["inputFile"].endswith(name):
                return line
        raise KeyError(name)


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except Exception as e:  # SeaweedFS answers BucketAlreadyExists for our own bucket
        if "BucketAlreadyExists" not in str(e):
            raise


def read_ndjson(s3, bucket: str, key: str) -> list[dict]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def run_import(mi, s3, datastore_id: str, files: dict[str, bytes | Path], *, bucket: str = "imports",
               timeout: float = 300.0, **start_options) -> ImportOutcome:
    ensure_bucket(s3, bucket)
    prefix = f"in-{secrets.token_hex(4)}/"
    for name, content in files.items():
        body = content.read_bytes() if isinstance(content, Path) else content
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
    started = mi.start_dicom_import_job(
        datastoreId=datastore_id, dataAccessRoleArn=ROLE, inputS3Uri=f"s3://{bucket}/{prefix}",
        outputS3Uri=f"s3://{bucket}/out-{prefix}", **start_options,
    )
    assert started["jobStatus"] == "SUBMITTED"
    job_id = started["jobId"]
    job = wait_for(
        lambda: (p := mi.get_dicom_import_job(datastoreId=datastore_id, jobId=job_id)["jobProperties"])["jobStatus"]
        in ("COMPLETED", "FAILED") and p,
        timeout=timeout, interval=0.2,
    )
    if job["jobStatus"] == "FAILED":
        return ImportOutcome(job=job, summary={}, success=[], warning=[], failure=[])
    out = f"out-{prefix}{datastore_id}-DicomImport-{job_id}/"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=out + "job-output-manifest.json")["Body"].read())
    return ImportOutcome(
        job=job,
        summary=manifest["jobSummary"],
        success=read_ndjson(s3, bucket, out + "SUCCESS/success.ndjson"),
        warning=read_ndjson(s3, bucket, out + "WARNING/warning.ndjson"),
        failure=read_ndjson(s3, bucket, out + "FAILURE/failure.ndjson"),
    )


def metadata(mi, datastore_id: str, image_set_id: str, version: str | None = None) -> dict:
    kwargs = {"versionId": version} if version else {}
    response = mi.get_image_set_metadata(datastoreId=datastore_id, imageSetId=image_set_id, **kwargs)
    return json.loads(gzip.decompress(response["imageSetMetadataBlob"].read()))


def find_instance(document: dict, sop_uid: str) -> dict:
    for series in document["Study"]["Series"].values():
        if sop_uid in series["Instances"]:
            return series["Instances"][sop_uid]
    raise KeyError(sop_uid)
