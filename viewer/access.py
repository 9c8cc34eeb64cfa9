"""Who may read which data store in the viewer. Superusers read every active data store; other users read the
data stores they were granted (DatastoreGrant)."""
from __future__ import annotations

from django.db.models import QuerySet

from imaging.models import Datastore, DatastoreStatus


def readable_datastores(user) -> QuerySet:
    if not user or not user.is_authenticated or not user.is_active:
        return Datastore.objects.none()
    active = Datastore.objects.filter(status=DatastoreStatus.ACTIVE)
    if user.is_superuser:
        return active
    return active.filter(grants__user=user)


def can_read(user, datastore_id: str) -> bool:
    return readable_datastores(user).filter(pk=datastore_id).exists()
