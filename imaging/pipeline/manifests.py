"""The four manifests of an import job, written under the job's output prefix from its recorded outcome.

Manifests are derived data: they are written from `ImportJob.outcome` after the job's transaction has committed,
and a job cut off after that commit only writes them again. A job that fails as a whole (a quota, an unreadable
input, an interrupted job given up) gets its manifests too, from what it had found by then, with the job's status
and message in the summary: the probe's empty `{}` would tell the operator who reads the bucket nothing. This module
reads the job row and writes objects; it changes no row.
"""
from __future__ import annotations

import json
from typing import Any

from imaging.models import ImportJob
from imaging.pipeline.sources import S3Settings, write_object

SUMMARY = "job-output-manifest.json"


def with_slash(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


def job_output_prefix(job: ImportJob) -> str:
    return f"{with_slash(job.output_s3_uri)}{job.datastore_id}-DicomImport-{job.id}/"


def output_probe_write(job: ImportJob, s3: S3Settings) -> None:
    """Prove the output location writable before any data is written (an empty summary, replaced at the end)."""
    write_object(job_output_prefix(job) + SUMMARY, b"{}", s3)


def manifest_summary(job: ImportJob, *, failure: str = "") -> dict[str, Any]:
    """The summary of job-output-manifest.json; with `failure`, the message of a job that failed as a whole."""
    outcome = job.outcome or {}
    lines = outcome.get("lines", [])
    prefix = job_output_prefix(job)
    failures = [line for line in lines if "exception" in line]
    summary = {
        "jobSummary": {
            "jobId": job.id,
            "datastoreId": job.datastore_id,
            "inputS3Uri": job.input_s3_uri,
            "outputS3Uri": prefix,
            "successOutputS3Uri": prefix + "SUCCESS/",
            "failureOutputS3Uri": prefix + "FAILURE/",
            "warningsOutputS3Uri": prefix + "WARNING/",
            "numberOfScannedFiles": outcome.get("scanned", len(lines)),
            "numberOfImportedFiles": len(lines) - len(failures),
            "numberOfFilesWithCustomerError": sum(
                1 for line in failures if line["exception"]["exceptionType"] != "InternalServerException"
            ),
            "numberOfFilesWithServerError": sum(
                1 for line in failures if line["exception"]["exceptionType"] == "InternalServerException"
            ),
            "numberOfGeneratedImageSets": len(outcome.get("imageSetsSummary", [])),
            "imageSetsSummary": outcome.get("imageSetsSummary", []),
        }
    }
    if failure:
        summary["jobSummary"].update({"jobStatus": "FAILED", "message": failure})
    return summary


def manifests_write(job: ImportJob, s3: S3Settings, *, failure: str = "") -> None:
    """All four manifests (SPEC 4.8); `failure` is the message of a job that failed as a whole."""
    lines = (job.outcome or {}).get("lines", [])
    prefix = job_output_prefix(job)
    success = [line for line in lines if "importResponse" in line and not line["importResponse"].get("warnings")]
    warning = [line for line in lines if "importResponse" in line and line["importResponse"].get("warnings")]
    failed = [line for line in lines if "exception" in line]
    write_object(prefix + "SUCCESS/success.ndjson", _ndjson(success), s3, "application/x-ndjson")
    write_object(prefix + "WARNING/warning.ndjson", _ndjson(warning), s3, "application/x-ndjson")
    write_object(prefix + "FAILURE/failure.ndjson", _ndjson(failed), s3, "application/x-ndjson")
    write_object(prefix + SUMMARY, json.dumps(manifest_summary(job, failure=failure), indent=1).encode(), s3)


def _ndjson(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
