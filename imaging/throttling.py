"""Per-operation token buckets (SPEC 3.6), off unless APERTURE_THROTTLING_ENABLED. One bucket per operation and
process; the rates are the service's defaults, each overridable with APERTURE_THROTTLE_<Operation>=rate/burst."""
from __future__ import annotations

import os
import threading
import time

from django.conf import settings

DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    "CreateDatastore": (0.085, 1), "GetDatastore": (10, 20), "ListDatastores": (5, 10), "DeleteDatastore": (0.085, 1),
    "StartDICOMImportJob": (0.25, 1), "GetDICOMImportJob": (25, 50), "ListDICOMImportJobs": (10, 20),
    "SearchImageSets": (25, 50), "GetImageSet": (25, 50), "GetImageSetMetadata": (50, 100),
    "GetImageFrame": (1000, 2000), "ListImageSetVersions": (25, 50), "UpdateImageSetMetadata": (0.25, 1),
    "CopyImageSet": (0.25, 1), "DeleteImageSet": (0.25, 1), "TagResource": (10, 20),
    "ListTagsForResource": (10, 20), "UntagResource": (10, 20), "GetDICOMInstance": (50, 100),
}

_lock = threading.Lock()
_buckets: dict[str, list[float]] = {}  # operation -> [tokens, last refill time]


def limits(operation: str) -> tuple[float, float]:
    override = os.environ.get(f"APERTURE_THROTTLE_{operation}")
    if override:
        rate, _, burst = override.partition("/")
        return float(rate), float(burst or rate)
    return DEFAULT_LIMITS.get(operation, (50, 100))


def allow(operation: str) -> bool:
    """Take one token for `operation`; False when the bucket is empty."""
    if not settings.APERTURE_THROTTLING_ENABLED:
        return True
    rate, burst = limits(operation)
    now = time.monotonic()
    with _lock:
        tokens, last = _buckets.get(operation, [burst, now])
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1:
            _buckets[operation] = [tokens, now]
            return False
        _buckets[operation] = [tokens - 1, now]
        return True
