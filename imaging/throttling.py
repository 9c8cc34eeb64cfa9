"""Per-operation token buckets (SPEC 3.6), off unless APERTURE_THROTTLING_ENABLED. One bucket per operation for the
whole service: the buckets live in the shared state (imaging/sharedstate), in this process on the embedded default
and in Redis when several web processes run, so N web processes still allow each operation's rate once, not N
times. The rates are the service's defaults, each overridable with APERTURE_THROTTLE_<Operation>=rate/burst.

When the shared state cannot be reached, calls are let through (the backend has logged it): an archive that
stops serving images because a rate limiter is down fails the people it is for.
"""
from __future__ import annotations

import os

from django.conf import settings

from imaging.sharedstate import SharedStateUnavailable, shared_state

DEFAULT_LIMITS: dict[str, tuple[float, float]] = {
    "CreateDatastore": (0.085, 1), "GetDatastore": (10, 20), "ListDatastores": (5, 10), "DeleteDatastore": (0.085, 1),
    "StartDICOMImportJob": (0.25, 1), "GetDICOMImportJob": (25, 50), "ListDICOMImportJobs": (10, 20),
    "SearchImageSets": (25, 50), "GetImageSet": (25, 50), "GetImageSetMetadata": (50, 100),
    "GetImageFrame": (1000, 2000), "ListImageSetVersions": (25, 50), "UpdateImageSetMetadata": (0.25, 1),
    "CopyImageSet": (0.25, 1), "DeleteImageSet": (0.25, 1), "TagResource": (10, 20),
    "ListTagsForResource": (10, 20), "UntagResource": (10, 20), "GetDICOMInstance": (50, 100),
    # A viewer asks for a series' frames one request each, as it does with GetImageFrame.
    "GetDICOMInstanceFrames": (1000, 2000), "GetDICOMBulkdata": (1000, 2000),
}


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
    try:
        return shared_state().take_token(f"throttle:{operation}", rate=rate, burst=burst)
    except SharedStateUnavailable:
        return True
