"""One short handler per HealthImaging operation. Each receives the call (imaging.aws.signed.SignedCall: its request
and authenticated key) and the validated model members as keyword arguments, and returns plain data with wire names.
Everything HTTP is done around them: imaging/aws/signed.py authenticates, throttles, audits and maps errors for every
signed route, and imaging/api/dispatch.py parses the input, authorizes and serializes the result."""
from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from imaging.api.dispatch import BlobResult, dispatch, operation
from imaging.aws.signed import SignedCall, authorize, unknown_operation
from imaging.models import Datastore, ImageSet, ImportJob, datastore_arn, image_set_arn
from imaging.services import datastores as datastore_services
from imaging.services import imageset_writes
from imaging.services import imagesets as imageset_services
from imaging.services import imports as import_services
from imaging.services import tags as tag_services
from imaging import selectors
from imaging.pagination import paginate


def _datastore_resource(params: dict[str, Any]) -> list[str]:
    return [datastore_arn(params["datastoreId"])]


def _image_set_resources(params: dict[str, Any]) -> list[str]:
    return [datastore_arn(params["datastoreId"]), image_set_arn(params["datastoreId"], params["imageSetId"])]


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
def create_datastore(call: SignedCall, *, clientToken: str, **params: Any) -> dict[str, Any]:
    if params.get("tags"):
        # Tagging at creation also needs TagResource (SPEC 12.4).
        authorize(call.key, operation_name="TagResource", resources=["*"])
    return datastore_services.datastore_create(
        client_token=clientToken,
        name=params.get("datastoreName"),
        tags=params.get("tags"),
        kms_key_arn=params.get("kmsKeyArn"),
        lambda_authorizer_arn=params.get("lambdaAuthorizerArn"),
        lossless_storage_format=params.get("losslessStorageFormat"),
    )


@operation("GetDatastore", resources=_datastore_resource)
def get_datastore(call: SignedCall, *, datastoreId: str) -> dict[str, Any]:
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
    call: SignedCall, *, datastoreStatus: str | None = None, nextToken: str | None = None, maxResults: int | None = None
) -> dict[str, Any]:
    # Grants bind listing as they bind every other operation; stores in any state, as HealthImaging lists them.
    readable = selectors.datastores_readable(user=call.key.user, include_inactive=True)
    queryset = datastore_services.datastore_list(status=datastoreStatus).filter(pk__in=readable.values("pk"))
    page, token = paginate(
        queryset, scope=f"ListDatastores:{datastoreStatus or ''}", next_token=nextToken, max_results=maxResults
    )
    return {"datastoreSummaries": [datastore_summary(d) for d in page], "nextToken": token}


@operation("DeleteDatastore", resources=_datastore_resource)
def delete_datastore(call: SignedCall, *, datastoreId: str) -> dict[str, Any]:
    datastore = datastore_services.datastore_delete(datastore_id=datastoreId)
    return {"datastoreId": datastore.id, "datastoreStatus": datastore.status}


@operation("TagResource", resources=_tag_resource)
def tag_resource(call: SignedCall, *, resourceArn: str, tags: dict[str, str]) -> dict[str, Any]:
    tag_services.tags_set(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn), tags=tags)
    return {}


@operation("UntagResource", resources=_tag_resource)
def untag_resource(call: SignedCall, *, resourceArn: str, tagKeys: list[str]) -> dict[str, Any]:
    tag_services.tags_remove(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn), keys=tagKeys)
    return {}


@operation("ListTagsForResource", resources=_tag_resource)
def list_tags_for_resource(call: SignedCall, *, resourceArn: str) -> dict[str, Any]:
    return {"tags": tag_services.tags_get(resource_arn=tag_services.resource_resolve(resource_arn=resourceArn))}


@operation("StartDICOMImportJob", resources=_datastore_resource)
def start_dicom_import_job(call: SignedCall, *, datastoreId: str, clientToken: str, **params: Any) -> dict[str, Any]:
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
def get_dicom_import_job(call: SignedCall, *, datastoreId: str, jobId: str) -> dict[str, Any]:
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
    call: SignedCall, *, datastoreId: str, jobStatus: str | None = None, nextToken: str | None = None,
    maxResults: int | None = None,
) -> dict[str, Any]:
    queryset = import_services.import_job_list(datastore_id=datastoreId, status=jobStatus)
    page, token = paginate(
        queryset, scope=f"ListDICOMImportJobs:{datastoreId}:{jobStatus or ''}", next_token=nextToken,
        max_results=maxResults,
    )
    return {"jobSummaries": [job_summary(job) for job in page], "nextToken": token}


def image_set_properties(image_set: ImageSet, version) -> dict[str, Any]:
    latest = version.version == image_set.latest_version
    return {
        "datastoreId": image_set.datastore_id,
        "imageSetId": image_set.id,
        "versionId": str(version.version),
        "imageSetState": image_set.state if latest else version.state,
        "imageSetWorkflowStatus": image_set.workflow_status if latest else version.workflow_status,
        "createdAt": image_set.created_at,
        "updatedAt": version.updated_at,
        "deletedAt": image_set.deleted_at,
        "message": version.message or None,
        "imageSetArn": image_set.arn,
        "overrides": {"forced": True} if version.forced else None,
        "isPrimary": version.is_primary,
        "lastAccessedAt": image_set.last_accessed_at,
        "storageTier": image_set.storage_tier,
    }


@operation("GetImageSet", resources=_image_set_resources)
def get_image_set(
    call: SignedCall, *, datastoreId: str, imageSetId: str, versionId: str | None = None
) -> dict[str, Any]:
    image_set = imageset_services.imageset_get(datastore_id=datastoreId, image_set_id=imageSetId)
    version = imageset_services.imageset_version(image_set=image_set, version=versionId)
    return image_set_properties(image_set, version)


@operation("SearchImageSets", resources=_datastore_resource)
def search_image_sets(
    call: SignedCall, *, datastoreId: str, searchCriteria: dict | None = None, nextToken: str | None = None,
    maxResults: int | None = None,
) -> dict[str, Any]:
    datastore_services.datastore_get_live(datastore_id=datastoreId)
    summaries, sort, token = selectors.imagesets_search(
        datastore_id=datastoreId, criteria=searchCriteria or {}, next_token=nextToken, max_results=maxResults
    )
    return {"imageSetsMetadataSummaries": summaries, "sort": sort, "nextToken": token}


@operation("ListImageSetVersions", resources=_image_set_resources)
def list_image_set_versions(
    call: SignedCall, *, datastoreId: str, imageSetId: str, nextToken: str | None = None, maxResults: int | None = None
) -> dict[str, Any]:
    image_set = imageset_services.imageset_get(datastore_id=datastoreId, image_set_id=imageSetId)
    page, token = paginate(image_set.versions.order_by("-version"), scope=f"Versions:{image_set.id}",
                           next_token=nextToken, max_results=maxResults)
    items = []
    for version in page:
        properties = image_set_properties(image_set, version)
        items.append({
            "imageSetId": image_set.id,
            "versionId": properties["versionId"],
            "imageSetState": properties["imageSetState"],
            "ImageSetWorkflowStatus": properties["imageSetWorkflowStatus"],  # the model's spelling here
            "createdAt": version.created_at,
            "updatedAt": version.updated_at,
            "deletedAt": version.deleted_at,
            "message": properties["message"],
            "overrides": properties["overrides"],
            "isPrimary": version.is_primary,
        })
    return {"imageSetPropertiesList": items, "nextToken": token}


@operation("GetImageSetMetadata", resources=_image_set_resources)
def get_image_set_metadata(
    call: SignedCall, *, datastoreId: str, imageSetId: str, versionId: str | None = None
) -> BlobResult:
    blob = imageset_services.imageset_metadata_blob(datastore_id=datastoreId, image_set_id=imageSetId, version=versionId)
    return BlobResult(blob, {"Content-Type": "application/json", "Content-Encoding": "gzip"})


@operation("GetImageFrame", resources=_image_set_resources)
def get_image_frame(call: SignedCall, *, datastoreId: str, imageSetId: str, imageFrameInformation: dict) -> BlobResult:
    data, content_type = imageset_services.imageset_frame(
        datastore_id=datastoreId,
        image_set_id=imageSetId,
        frame_id=imageFrameInformation["imageFrameId"],
        accept=call.request.headers.get("Accept"),
    )
    return BlobResult(data, {"Content-Type": content_type})


@operation("UpdateImageSetMetadata", resources=_image_set_resources)
def update_image_set_metadata(
    call: SignedCall, *, datastoreId: str, imageSetId: str, latestVersionId: str,
    updateImageSetMetadataUpdates: dict, force: bool = False, includeStudyImageSets: bool = False,
) -> dict[str, Any]:
    return imageset_writes.imageset_update(
        datastore_id=datastoreId, image_set_id=imageSetId, latest_version_id=latestVersionId,
        updates=updateImageSetMetadataUpdates, force=force, include_study_image_sets=includeStudyImageSets,
    )


def _copy_resources(params: dict[str, Any]) -> list[str]:
    resources = [datastore_arn(params["datastoreId"]), image_set_arn(params["datastoreId"], params["sourceImageSetId"])]
    destination = (params.get("copyImageSetInformation") or {}).get("destinationImageSet")
    if destination:
        resources.append(image_set_arn(params["datastoreId"], destination["imageSetId"]))
    return resources


@operation("CopyImageSet", resources=_copy_resources)
def copy_image_set(
    call: SignedCall, *, datastoreId: str, sourceImageSetId: str, copyImageSetInformation: dict,
    force: bool = False, promoteToPrimary: bool = False,
) -> dict[str, Any]:
    return imageset_writes.imageset_copy(
        datastore_id=datastoreId, source_image_set_id=sourceImageSetId, copy_information=copyImageSetInformation,
        force=force, promote_to_primary=promoteToPrimary,
    )


@operation("DeleteImageSet", resources=_image_set_resources)
def delete_image_set(call: SignedCall, *, datastoreId: str, imageSetId: str) -> dict[str, Any]:
    datastore_services.datastore_get_live(datastore_id=datastoreId)
    return imageset_writes.imageset_delete(datastore_id=datastoreId, image_set_id=imageSetId)


def route(routes: dict[str, str]):
    """A Django view for one path shape that dispatches on the HTTP method."""

    @csrf_exempt
    def view(request: HttpRequest, **labels: str) -> HttpResponse:
        return dispatch(request, routes, labels)

    return view


@csrf_exempt
def not_found(request: HttpRequest, **_: str) -> HttpResponse:
    return unknown_operation(request)
