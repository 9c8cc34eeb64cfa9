"""Data store lifecycle (SPEC 3.8): CREATING -> ACTIVE, DELETING -> DELETED, with the blob space behind each."""
from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from imaging.errors import Conflict, NotFound, QuotaExceeded
from imaging.models import (
    Datastore,
    DatastoreStatus,
    ImageSetState,
    ImportJob,
    JobStatus,
    LosslessStorageFormat,
    ResourceTag,
)
from imaging.services.idempotency import idempotent
from imaging.services.tags import tags_set, tags_validate
from imaging.storage import blob_store
from imaging.storage.keys import datastore_prefix
from imaging.tasks import enqueue, task

_LIVE_STATUSES = (DatastoreStatus.CREATING, DatastoreStatus.ACTIVE)


def datastore_create(
    *,
    client_token: str,
    name: str | None = None,
    tags: dict[str, str] | None = None,
    kms_key_arn: str | None = None,
    lambda_authorizer_arn: str | None = None,
    lossless_storage_format: str | None = None,
) -> dict[str, str]:
    """Create a data store in CREATING and queue its provisioning; idempotent on clientToken."""
    params = {
        "name": name,
        "tags": tags or {},
        "kms_key_arn": kms_key_arn,
        "lambda_authorizer_arn": lambda_authorizer_arn,
        "lossless_storage_format": lossless_storage_format,
    }
    tags_validate(tags or {})

    def create() -> dict[str, str]:
        if Datastore.objects.filter(status__in=_LIVE_STATUSES).count() >= settings.APERTURE_MAX_ACTIVE_DATASTORES:
            raise QuotaExceeded(
                f"The quota of {settings.APERTURE_MAX_ACTIVE_DATASTORES} active data stores has been reached"
            )
        datastore = Datastore.objects.create(
            name=name or "",
            kms_key_arn=kms_key_arn or "",
            lambda_authorizer_arn=lambda_authorizer_arn or "",
            lossless_storage_format=lossless_storage_format or LosslessStorageFormat.HTJ2K,
        )
        if tags:
            tags_set(resource_arn=datastore.arn, tags=tags)
        enqueue(datastore_provision, datastore_id=datastore.id)
        return {"datastoreId": datastore.id, "datastoreStatus": datastore.status}

    return idempotent(operation="CreateDatastore", client_token=client_token, params=params, create=create)


@task
def datastore_provision(*, datastore_id: str) -> None:
    datastore = Datastore.objects.filter(pk=datastore_id, status=DatastoreStatus.CREATING).first()
    if datastore is None:
        return
    try:
        blob_store().prepare(prefix=datastore_prefix(datastore_id))
    except Exception:
        Datastore.objects.filter(pk=datastore_id).update(status=DatastoreStatus.CREATE_FAILED)
        raise
    datastore.status = DatastoreStatus.ACTIVE
    datastore.save(update_fields=["status", "updated_at"])


def datastore_get(*, datastore_id: str) -> Datastore:
    """Any data store, DELETED ones included (GetDatastore keeps showing them)."""
    datastore = Datastore.objects.filter(pk=datastore_id).first()
    if datastore is None:
        raise NotFound(f"Datastore {datastore_id} does not exist")
    return datastore


def datastore_get_live(*, datastore_id: str) -> Datastore:
    """A data store that is not DELETED; every operation but Get/ListDatastores sees only these."""
    datastore = Datastore.objects.filter(pk=datastore_id).exclude(status=DatastoreStatus.DELETED).first()
    if datastore is None:
        raise NotFound(f"Datastore {datastore_id} does not exist")
    return datastore


def datastore_require_active(*, datastore_id: str) -> Datastore:
    datastore = datastore_get_live(datastore_id=datastore_id)
    if datastore.status != DatastoreStatus.ACTIVE:
        raise Conflict(f"Datastore {datastore_id} is {datastore.status}, not ACTIVE")
    return datastore


def datastore_rename(*, datastore_id: str, name: str) -> None:
    """The admin's change form: a data store's name is all that changes after it is created."""
    updated = Datastore.objects.filter(pk=datastore_id).update(name=name, updated_at=timezone.now())
    if not updated:
        raise NotFound(f"Datastore {datastore_id} does not exist")


@transaction.atomic
def datastore_delete(*, datastore_id: str) -> Datastore:
    # Lock the row so an import or a create racing with the delete sees DELETING.
    datastore = Datastore.objects.select_for_update().filter(pk=datastore_id).first()
    if datastore is None or datastore.status == DatastoreStatus.DELETED:
        raise NotFound(f"Datastore {datastore_id} does not exist")
    if datastore.status == DatastoreStatus.DELETING:
        return datastore
    if datastore.image_sets.exclude(state=ImageSetState.DELETED).exists():
        raise Conflict(f"Datastore {datastore_id} still has image sets; delete them first")
    running = (JobStatus.SUBMITTED, JobStatus.IN_PROGRESS)
    if ImportJob.objects.filter(datastore=datastore, status__in=running).exists():
        raise Conflict(f"Datastore {datastore_id} has an import job in progress")
    datastore.status = DatastoreStatus.DELETING
    datastore.save(update_fields=["status", "updated_at"])
    enqueue(datastore_purge, datastore_id=datastore_id)
    return datastore


@task
def datastore_purge(*, datastore_id: str) -> None:
    datastore = Datastore.objects.filter(pk=datastore_id, status=DatastoreStatus.DELETING).first()
    if datastore is None:
        return
    blob_store().delete_prefix(prefix=datastore_prefix(datastore_id))
    ResourceTag.objects.filter(resource_arn__startswith=datastore.arn).delete()
    datastore.status = DatastoreStatus.DELETED
    datastore.save(update_fields=["status", "updated_at"])


def datastore_list(*, status: str | None = None):
    queryset = Datastore.objects.all().order_by("created_at", "id")
    if status:
        queryset = queryset.filter(status=status)
    return queryset
