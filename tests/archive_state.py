"""Everything a restore must bring back, read from an archive by `manage.py shell` in its own process: every row of
the data stores, image sets, versions, frame rows and audit events, and a digest of every frame and metadata blob.
Two archives hold the same when their states compare equal."""
from __future__ import annotations

import json
from typing import Any, Callable

STATE_SCRIPT = """
import hashlib, json
from django.core import serializers
from imaging.models import AuditEvent, Datastore, ImageFrame, ImageSet, ImageSetVersion
from imaging.storage import blob_store

store = blob_store()
def rows(model):
    return json.loads(serializers.serialize("json", model.objects.order_by("pk")))
def digest(key):
    data = store.get(key)
    return None if data is None else hashlib.sha256(data).hexdigest()
print(json.dumps({
    "datastores": rows(Datastore), "image_sets": rows(ImageSet), "versions": rows(ImageSetVersion),
    "frames": rows(ImageFrame), "audit": rows(AuditEvent),
    "frame_blobs": {key: digest(key) for key in ImageFrame.objects.values_list("blob_key", flat=True)},
    "metadata_blobs": {key: digest(key) for key in ImageSetVersion.objects.values_list("metadata_key", flat=True)},
}, sort_keys=True, default=str))
"""


def archive_state(manage: Callable[..., Any]) -> dict[str, Any]:
    """The state of the archive `manage` (ApertureServer.manage) runs against."""
    return json.loads(manage("shell", "-c", STATE_SCRIPT).stdout.strip().splitlines()[-1])
