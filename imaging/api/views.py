"""One short handler per HealthImaging operation. Each receives validated model members as keyword arguments
and returns plain data with wire names; imaging/api/dispatch.py does everything HTTP."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from imaging.api.dispatch import ApiContext, authorize, dispatch, operation, unknown_operation
from imaging.models import Datastore, ImportJob, datastore_arn
from imaging.services import datastores as datastore_services
from imaging.services import imports as import_services
from imaging.services import tags as tag_services
from imaging.services.common import paginate


def _datastore_resource(params: dict[str, Any]) -> list[str]:
    return [datastore_arn(params["datastoreId"])]


def _any_resource(params: dict[str, Any]) -> list[str]:
    return ["*"]


def _tag_resource(params: dict[str, Any]) -> list[str]:
    return [params["resourceArn"]]


def datastore_summary(datastore: Datastore) -> dict[str, Any]:
    return {
        "datastoreId": datastore.id,
        "datastoreName": datastore.name,
        "datastoreStatus": datastore.status,
        "datastoreArn": datastore.arn,
        "createdAt": datastore.created_at,
        "updatedAt": datastore.updated_at,
    }


@operation("CreateDatastore", resources=_any_resource)
def create_datastore(ctx: ApiContext, *, clientToken: str, **params: Any) -> dict[str, Any]:
    if params.get("tags"):
        # Tagging at creation also needs TagResource (SPEC 12.4).
        authorize(ctx.key, operation_name="TagResource", resources=["*"])
    return datastore_services.datastore_create(
        client_token=clientToken,
        name=params.get("datastoreName"),
        tags=params.get("tags"),
        kms_key_arn=params.get("kmsKeyArn"),
        lambda_authorizer_arn=params.get("lambdaAuthorizerArn"),
        lossless_storage_format=params.get("losslessStorageFormat"),
    )


@operation("GetDatastore", resources=_datastore_resource)
def get_datastore(ctx: ApiContext, *, datastoreId: str) -> dict[str, Any]:
    datastore = datastore_services.datastore_get(datastore_id=datastoreId)
    return {
        "datastoreProperties": {
            **datastore_summary(datastore),
            "losslessStorageFormat": datastore.lossless_storage_format,
            "kmsKeyArn": datastore.kms_key_arn or None,
            "lambdaAuthorizerArn": datastore.lambda_authorizer_arn or None,
        }
    }


@operation("ListDatastores", resources=_any_resource)
def list_datastores(
    ctx: ApiContext, *, datastoreStatus: str | None = None, nextToken: str | None = None, maxResults: int | None = None
) -> dict[str, Any]:
    queryset = datastore_services.datastore_list(status=datastoreStatus)
    page, token = paginate(
        queryset, scope=f"ListDatastores:{datastoreStatus or ''}", next_token=nextToken, max_results=maxResults
    )
    return {"datastoreSummaries": [datastore_summary(d) for d in page], "nextToken": token}


@operation("DeleteDatastore", resources=_datastore_resource)
def delete_datastore(ctx: ApiContext, *, datastoreId: str) -> dict[str, Any]:
    datastore = datastore_services.datastore_delete(datastore_id=datastoreId)
    return {"datastoreId": datastore.id, "datastoreStatus": datastore.status}


@operation("TagResource", resources=_tag_resource)
def tag_resource(ctx: ApiContext, *, resourceArn: str, tags: dict[str, str]) -> dict[str, Any]:
    tag_services.tags_set(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn), tags=tags)
    return {}


@operation("UntagResource", resources=_tag_resource)
def untag_resource(ctx: ApiContext, *, resourceArn: str, tagKeys: list[str]) -> dict[str, Any]:
    tag_services.tags_remove(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn), keys=tagKeys)
    return {}


@operation("ListTagsForResource", resources=_tag_resource)
def list_tags_for_resource(ctx: ApiContext, *, resourceArn: str) -> dict[str, Any]:
    return {"tags": tag_services.tags_get(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn))}


@operation("StartDICOMImportJob", resources=_datastore_resource)
def start_dicom_import_job(ctx: ApiContext, *, datastoreId: str, clientToken: str, **params: Any) -> dict[str, Any]:
    return import_services.import_job_start(
        datastore_id=datastoreId,
        client_token=clientToken,
        data_access_role_arn=params["dataAccessRoleArn"],
        input_s3_uri=params["inputS3Uri"],
        output_s3_uri=params["outputS3Uri"],
        job_name=params.get("jobName"),
        input_owner_account_id=params.get("inputOwnerAccountId"),
        import_configuration=params.get("importConfiguration"),
    )


def job_summary(job: ImportJob) -> dict[str, Any]:
    return {
        "jobId": job.id,
        "jobName": job.name,
        "jobStatus": job.status,
        "datastoreId": job.datastore_id,
        "dataAccessRoleArn": job.data_access_role_arn,
        "endedAt": job.ended_at,
        "submittedAt": job.submitted_at,
        "message": job.message or None,
    }


@operation("GetDICOMImportJob", resources=_datastore_resource)
def get_dicom_import_job(ctx: ApiContext, *, datastoreId: str, jobId: str) -> dict[str, Any]:
    job = import_services.import_job_get(datastore_id=datastoreId, job_id=jobId)
    return {
        "jobProperties": {
            **job_summary(job),
            "inputS3Uri": job.input_s3_uri,
            "outputS3Uri": job.output_s3_uri,
            "importConfiguration": job.import_configuration,
        }
    }


@operation("ListDICOMImportJobs", resources=_datastore_resource)
def list_dicom_import_jobs(
    ctx: ApiContext, *, datastoreId: str, jobStatus: str | None = None, nextToken: str | None = None,
    maxResults: int | None = None,
) -> dict[str, Any]:
    queryset = import_services.import_job_list(datastore_id=datastoreId, status=jobStatus)
    page, token = paginate(
        queryset, scope=f"ListDICOMImportJobs:{datastoreId}:{jobStatus or ''}", next_token=nextToken,
        max_results=maxResults,
    )
    return {"jobSummaries": [job_summary(job) for job in page], "nextToken": token}


def route(routes: dict[str, str]):
    """A Django view for one path shape that dispatches on the HTTP method."""

    @csrf_exempt
    def view(request: HttpRequest, **labels: str) -> HttpResponse:
        return dispatch(request, routes, labels)

    return view


@csrf_exempt
def not_found(request: HttpRequest, **_: str) -> HttpResponse:
    return unknown_operation(request)
