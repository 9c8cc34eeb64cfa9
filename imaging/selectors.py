"""Read-side queries: SearchImageSets (SPEC 7) over the indexed columns of ImageSet, and which data stores a user
may read (the one rule the API, DICOMweb and the viewer apply), storage totals per tier. Queries only: nothing here
writes."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, QuerySet, Sum

from imaging.dicom.document import study_datetime
from imaging.errors import ValidationFailed
from imaging.models import Datastore, DatastoreStatus, ImageFrame, ImageSet, ImageSetState, StorageTier
from imaging.pagination import paginate

STRING_KEYS = {
    "DICOMPatientId": "patient_id",
    "DICOMAccessionNumber": "accession_number",
    "DICOMStudyId": "study_id",
    "DICOMStudyInstanceUID": "study_instance_uid",
    "DICOMSeriesInstanceUID": "series_instance_uid",
}
TIME_KEYS = {"createdAt": "created_at", "updatedAt": "updated_at"}
RANGE_KEYS = set(TIME_KEYS) | {"DICOMStudyDateAndTime"}
SORT_FIELDS = {"updatedAt": "updated_at", "createdAt": "created_at", "DICOMStudyDateAndTime": "study_date_time"}
MILLISECOND = timedelta(milliseconds=1)


def _study_moment(value: dict[str, str]) -> datetime:
    date, time = value.get("DICOMStudyDate", ""), value.get("DICOMStudyTime", "") or ""
    if len(date) != 8 or not date.isdigit():
        raise ValidationFailed("DICOMStudyDate must be yyyyMMdd")
    if time and not (time.split(".")[0].isdigit() and len(time.split(".")[0]) in (2, 4, 6)):
        raise ValidationFailed("DICOMStudyTime must be HHmmss[.FFFFFF]")
    moment = study_datetime(date, time)
    if moment is None:
        raise ValidationFailed("DICOMStudyDate is not a valid date")
    return moment


def _filter_q(search_filter: dict[str, Any]) -> Q:
    operator, values = search_filter["operator"], search_filter["values"]
    keys = {key for value in values for key in value}
    if len(keys) != 1:
        raise ValidationFailed("All values of one filter must use the same attribute")
    key = keys.pop()
    if operator == "EQUAL":
        if len(values) != 1:
            raise ValidationFailed("The EQUAL operator takes exactly one value")
        value = values[0][key]
        if key in STRING_KEYS:
            return Q(**{STRING_KEYS[key]: value})
        if key == "isPrimary":
            return Q(is_primary=value)
        if key in TIME_KEYS:
            return Q(**{f"{TIME_KEYS[key]}__gte": value, f"{TIME_KEYS[key]}__lt": value + MILLISECOND})
        return Q(study_date_time=_study_moment(value))
    if key not in RANGE_KEYS:
        raise ValidationFailed(f"The BETWEEN operator is not supported for {key}")
    if len(values) != 2:
        raise ValidationFailed("The BETWEEN operator takes exactly two values")
    if key in TIME_KEYS:
        low, high, column = values[0][key], values[1][key], TIME_KEYS[key]
    else:
        low, high, column = _study_moment(values[0][key]), _study_moment(values[1][key]), "study_date_time"
    if low > high:
        raise ValidationFailed("The lower bound of BETWEEN is above the upper bound")
    return Q(**{f"{column}__gte": low, f"{column}__lte": high})


def _ordering(sort: dict[str, str]):
    """The ORDER BY that the sort indexes serve. createdAt and updatedAt are never null; study date and time
    can be, and missing values go last: SQLite already sorts NULL last when descending, PostgreSQL when ascending."""
    column = SORT_FIELDS[sort["sortField"]]
    descending = sort["sortOrder"] == "DESC"
    if column != "study_date_time":
        return F(column).desc() if descending else F(column).asc()
    natural_nulls_last = descending if connection.vendor == "sqlite" else not descending
    if natural_nulls_last:
        return F(column).desc() if descending else F(column).asc()
    return F(column).desc(nulls_last=True) if descending else F(column).asc(nulls_last=True)


def imagesets_search(*, datastore_id: str, criteria: dict[str, Any], next_token: str | None,
                     max_results: int | None) -> tuple[list[dict[str, Any]], dict[str, str], str | None]:
    """One page of summaries, the effective sort and the next token."""
    queryset: QuerySet = ImageSet.objects.filter(datastore_id=datastore_id).exclude(state=ImageSetState.DELETED)
    for search_filter in criteria.get("filters") or []:
        queryset = queryset.filter(_filter_q(search_filter))
    sort = criteria.get("sort") or {"sortField": "updatedAt", "sortOrder": "DESC"}
    queryset = queryset.order_by(_ordering(sort), "id")
    scope = hashlib.sha256(
        json.dumps([datastore_id, criteria.get("filters"), sort], sort_keys=True, default=str).encode()
    ).hexdigest()
    page, token = paginate(queryset, scope=f"Search:{scope}", next_token=next_token, max_results=max_results)
    return [_summary(image_set, counts) for image_set, counts in zip(page, _study_counts(datastore_id, page))], sort, token


def _study_counts(datastore_id: str, page: list[ImageSet]) -> list[tuple[int, int]]:
    studies = {image_set.study_instance_uid for image_set in page}
    rows = (
        ImageSet.objects.filter(datastore_id=datastore_id, study_instance_uid__in=studies, is_primary=True,
                                state=ImageSetState.ACTIVE)
        .values("study_instance_uid")
        .annotate(series=Count("id"), instances=Sum("number_of_instances"))
    )
    by_study = {row["study_instance_uid"]: (row["series"], row["instances"] or 0) for row in rows}
    return [by_study.get(image_set.study_instance_uid, (0, 0)) for image_set in page]


def _summary(image_set: ImageSet, counts: tuple[int, int]) -> dict[str, Any]:
    tags = dict(image_set.dicom_tags)
    tags["DICOMNumberOfStudyRelatedSeries"], tags["DICOMNumberOfStudyRelatedInstances"] = counts
    return {
        "imageSetId": image_set.id,
        "version": image_set.latest_version,
        "createdAt": image_set.created_at,
        "updatedAt": image_set.updated_at,
        "lastAccessedAt": image_set.last_accessed_at,
        "storageTier": image_set.storage_tier,
        "isPrimary": image_set.is_primary,
        "DICOMTags": tags,
    }


def datastores_readable(*, user: Any, include_inactive: bool = False) -> QuerySet:
    """The data stores `user` may read: every one for a superuser, the ones granted (DatastoreGrant) for anybody
    else, none for an anonymous or deactivated user.

    `include_inactive` is the transport's choice. The viewer shows patient data, which only an ACTIVE data store
    serves, so by default the others are left out. The API passes True: as in HealthImaging, the caller must be
    able to GetDatastore or DeleteDatastore a store that is still CREATING, or DELETING, and see it in
    ListDatastores; the store's state is then the service's question (a NotFound or a Conflict), not an access one.
    """
    if not user or not user.is_authenticated or not user.is_active:
        return Datastore.objects.none()
    datastores = Datastore.objects.all() if include_inactive else Datastore.objects.filter(status=DatastoreStatus.ACTIVE)
    if user.is_superuser:
        return datastores
    return datastores.filter(grants__user=user)


def datastore_readable(*, user: Any, datastore_id: str, include_inactive: bool = False) -> bool:
    """Whether `user` may read the data store `datastore_id` (see `datastores_readable`). With `include_inactive`
    a superuser passes without a query: grants do not bind superusers, and whether the store exists is for the
    operation to answer (ResourceNotFound), not for access control (AccessDenied)."""
    if include_inactive and getattr(user, "is_superuser", False) and user.is_active:
        return True
    return datastores_readable(user=user, include_inactive=include_inactive).filter(pk=datastore_id).exists()


@dataclass(frozen=True)
class TierTotals:
    """What one storage tier of a data store holds: image sets not deleted, and the bytes of their frames."""

    datastore_id: str
    storage_tier: str
    image_sets: int
    frame_bytes: int


def storage_by_tier(*, datastore_id: str | None = None) -> list[TierTotals]:
    """Totals per data store and storage tier, for every data store (the metrics) or one; only the pairs that hold
    an image set not deleted, in (data store, tier) order."""
    live = ImageSet.objects.exclude(state=ImageSetState.DELETED)
    if datastore_id is not None:
        live = live.filter(datastore_id=datastore_id)
    counts = {(row["datastore_id"], row["storage_tier"]): row["n"]
              for row in live.values("datastore_id", "storage_tier").annotate(n=Count("id")).order_by()}
    sizes = {(row["image_set__datastore_id"], row["image_set__storage_tier"]): row["b"] or 0
             for row in ImageFrame.objects.filter(image_set__in=live)
             .values("image_set__datastore_id", "image_set__storage_tier").annotate(b=Sum("size")).order_by()}
    return [TierTotals(datastore_id=store, storage_tier=tier, image_sets=count, frame_bytes=sizes.get((store, tier), 0))
            for (store, tier), count in sorted(counts.items())]


def datastore_storage_by_tier(*, datastore_id: str) -> list[TierTotals]:
    """Totals for every storage tier of a data store, in the tiers' order, zeros included."""
    held = {totals.storage_tier: totals for totals in storage_by_tier(datastore_id=datastore_id)}
    return [held.get(tier) or TierTotals(datastore_id=datastore_id, storage_tier=tier, image_sets=0, frame_bytes=0)
            for tier in StorageTier.values]
