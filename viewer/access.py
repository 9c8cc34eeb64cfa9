"""Who may read which data store in the viewer: the one rule in imaging.selectors, limited to ACTIVE data stores
(patient data is shown only from those). Nothing else here: no rule of the viewer's own."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from imaging.selectors import datastore_readable, datastores_readable


def readable_datastores(user: Any) -> QuerySet:
    return datastores_readable(user=user)


def can_read(user: Any, datastore_id: str) -> bool:
    return datastore_readable(user=user, datastore_id=datastore_id)
