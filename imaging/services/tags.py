"""Tags on data stores and image sets, addressed by ARN (SPEC 10)."""
from __future__ import annotations

import re

from django.conf import settings
from django.db import transaction

from imaging.errors import NotFound, ValidationFailed
from imaging.models import Datastore, DatastoreStatus, ImageSet, ImageSetState, ResourceTag

_ARN = re.compile(
    r"arn:(?P<partition>[^:]+):medical-imaging:(?P<region>[^:]+):(?P<account>\d{12}):"
    r"datastore/(?P<datastore>[0-9a-z]{32})(?:/imageset/(?P<image_set>[0-9a-z]{32}))?"
)


def resource_resolve(*, resource_arn: str) -> str:
    """Check that the ARN names a live resource of this account and region; returns the ARN."""
    match = _ARN.fullmatch(resource_arn)
    if (
        match is None
        or match["partition"] != settings.APERTURE_PARTITION
        or match["region"] != settings.APERTURE_REGION
        or match["account"] != settings.APERTURE_ACCOUNT_ID
    ):
        raise NotFound(f"Resource {resource_arn} does not exist")
    datastore = Datastore.objects.filter(pk=match["datastore"]).exclude(status=DatastoreStatus.DELETED).first()
    if datastore is None:
        raise NotFound(f"Resource {resource_arn} does not exist")
    if match["image_set"]:
        exists = (
            ImageSet.objects.filter(pk=match["image_set"], datastore=datastore)
            .exclude(state=ImageSetState.DELETED)
            .exists()
        )
        if not exists:
            raise NotFound(f"Resource {resource_arn} does not exist")
    return resource_arn


def tags_validate(tags: dict[str, str]) -> None:
    for key in tags:
        if key.lower().startswith("aws:"):
            raise ValidationFailed(f"Tag keys must not start with aws: ({key})")
    if len(tags) > settings.APERTURE_MAX_TAGS_PER_RESOURCE:
        raise ValidationFailed(f"A resource can have at most {settings.APERTURE_MAX_TAGS_PER_RESOURCE} tags")


@transaction.atomic
def tags_set(*, resource_arn: str, tags: dict[str, str]) -> None:
    tags_validate(tags)
    existing = set(ResourceTag.objects.filter(resource_arn=resource_arn).values_list("key", flat=True))
    if len(existing | set(tags)) > settings.APERTURE_MAX_TAGS_PER_RESOURCE:
        raise ValidationFailed(f"A resource can have at most {settings.APERTURE_MAX_TAGS_PER_RESOURCE} tags")
    for key, value in tags.items():
        ResourceTag.objects.update_or_create(resource_arn=resource_arn, key=key, defaults={"value": value})


def tags_remove(*, resource_arn: str, keys: list[str]) -> None:
    ResourceTag.objects.filter(resource_arn=resource_arn, key__in=keys).delete()


def tags_get(*, resource_arn: str) -> dict[str, str]:
    return dict(ResourceTag.objects.filter(resource_arn=resource_arn).values_list("key", "value"))
