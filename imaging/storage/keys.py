"""Where each kind of blob lives in the store: the one place that knows the key layout. No Django.

    datastores/<datastore id>/frames/<first two characters of the frame id>/<frame id>
    datastores/<datastore id>/imagesets/<image set id>/metadata-v<version>-<random>.json.gz

Import workers, the persisting transaction, image set updates and the orphan sweep all name blobs through this
module; it must not grow any other knowledge about the store.
"""
from __future__ import annotations

import re
import uuid

DATASTORES_PREFIX = "datastores/"
FRAME_KEY = re.compile(r"^datastores/[^/]+/frames/[^/]+/[^/]+$")
METADATA_KEY = re.compile(r"^datastores/[^/]+/imagesets/(?P<image_set>[^/]+)/metadata-v\d+-[^/]+\.json\.gz$")


def datastore_prefix(datastore_id: str) -> str:
    """Every blob of one data store starts with this."""
    return f"{DATASTORES_PREFIX}{datastore_id}/"


def frame_blob_key(datastore_id: str, frame_id: str) -> str:
    """Frame ids are hex digests or UUIDs: their first two characters spread the frames over 256 folders."""
    return f"{datastore_prefix(datastore_id)}frames/{frame_id[:2]}/{frame_id}"


def metadata_blob_key(datastore_id: str, image_set_id: str, version: int) -> str:
    """A fresh key for each write: a retried or concurrent write never overwrites a document a row names."""
    return f"{datastore_prefix(datastore_id)}imagesets/{image_set_id}/metadata-v{version}-{uuid.uuid4().hex[:8]}.json.gz"
