"""Prometheus metrics at /metrics (SPEC 13.2), written by prometheus_client and protected by APERTURE_METRICS_TOKEN
(a bearer token).

Call counts, errors and durations are counted in this process; the storage gauges are read from the database at
scrape time by a collector. Everything lives in a private registry (not prometheus_client's global one), so tests
and other apps in the process never collide with it.

No label value comes from a client as sent. `datastore_id` is a data store that exists (the set of ids is cached
for a few seconds and dropped whenever this process saves or deletes one) or "unknown"; operations, status codes
and error types come from our own routing and error tables. So the number of series does not grow with what
unauthenticated clients put in paths, and the library does all escaping.

Several web processes: with PROMETHEUS_MULTIPROC_DIR in the environment (set before Python starts; prometheus_client
reads it once, at import) every process writes its counters and histograms to files in that folder, and a scrape of
any one of them adds up the files of all (`multiprocess.MultiProcessCollector`, into a fresh registry per scrape),
plus the storage collector, which reads the database and so is the same from every process. Files of processes
that have exited are kept, so the sums never go backwards while the service runs; the folder is emptied when the
first web process on it starts (`multiprocess_dir_prepare`, called by `manage.py serve`). A Gauge added here needs a
`multiprocess_mode` (and `multiprocess.mark_process_dead` when a process exits, for the live modes). One folder
adds up the processes of one machine: Prometheus scrapes each machine.
"""
from __future__ import annotations

import fcntl
import hmac
import os
import threading
from pathlib import Path

from cachetools import TTLCache
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.core import GaugeMetricFamily

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNKNOWN_DATASTORE = "unknown"
KNOWN_IDS_SECONDS = 10
# The classic text format; every name here is a legacy-valid Prometheus name, so 0.0.4 and 1.0.0 read the same.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

disable_created_metrics()  # no `_created` twin of every counter series: it doubles the output for nothing here

REGISTRY = CollectorRegistry(auto_describe=True)
CALLS = Counter("aperture_imaging_call_count", "API and DICOMweb calls (the counterpart of CloudWatch CallCount).",
                ["operation", "datastore_id", "datastore_type", "status_code"], registry=REGISTRY)
ERRORS = Counter("aperture_imaging_errors", "Failed API and DICOMweb calls by error type.",
                 ["operation", "error_type"], registry=REGISTRY)
DURATION = Histogram("aperture_imaging_request_duration_seconds", "Time to answer API and DICOMweb calls.",
                     ["operation"], buckets=BUCKETS, registry=REGISTRY)
AUDIT_UNRECORDED = Counter(
    "aperture_imaging_audit_anonymous_unrecorded",
    "Refused calls without valid credentials counted here instead of written to the audit table "
    "(over APERTURE_AUDIT_ANONYMOUS_PER_MINUTE for their address or APERTURE_AUDIT_ANONYMOUS_TOTAL_PER_MINUTE).",
    registry=REGISTRY)

_known_ids: TTLCache = TTLCache(maxsize=1, ttl=KNOWN_IDS_SECONDS)
_known_ids_lock = threading.Lock()


def _known_datastore_ids() -> frozenset[str]:
    with _known_ids_lock:
        ids = _known_ids.get("ids")
    if ids is None:
        from imaging.models import Datastore

        ids = frozenset(Datastore.objects.values_list("id", flat=True))
        with _known_ids_lock:
            _known_ids["ids"] = ids
    return ids


def _forget_known_datastore_ids(**kwargs) -> None:
    with _known_ids_lock:
        _known_ids.clear()


post_save.connect(_forget_known_datastore_ids, sender="imaging.Datastore", weak=False)
post_delete.connect(_forget_known_datastore_ids, sender="imaging.Datastore", weak=False)


def datastore_label(datastore_id: str) -> str:
    """The label for a call naming `datastore_id`: empty for account-level calls, the id if such a data store
    exists, else "unknown"."""
    if not datastore_id:
        return ""
    return datastore_id if datastore_id in _known_datastore_ids() else UNKNOWN_DATASTORE


def record_call(*, operation: str, datastore_id: str, status_code: int, error_type: str, seconds: float) -> None:
    CALLS.labels(operation, datastore_label(datastore_id), "DICOM", str(status_code)).inc()
    if error_type:
        ERRORS.labels(operation, error_type).inc()
    DURATION.labels(operation).observe(seconds)


def record_unrecorded_refusal() -> None:
    AUDIT_UNRECORDED.inc()


class StorageCollector:
    """Image sets and stored bytes per data store and storage tier, read from the database at each scrape."""

    def describe(self) -> list:
        return []  # nothing to check at registration, and no database query at import time

    def collect(self):
        from imaging.selectors import storage_by_tier

        image_sets = GaugeMetricFamily("aperture_imaging_image_sets", "Image sets not deleted.",
                                       labels=["datastore_id", "storage_tier"])
        stored = GaugeMetricFamily("aperture_imaging_stored_bytes", "Bytes of image frames in image sets not deleted.",
                                   labels=["datastore_id", "storage_tier"])
        for totals in storage_by_tier():
            image_sets.add_metric([totals.datastore_id, totals.storage_tier], totals.image_sets)
            stored.add_metric([totals.datastore_id, totals.storage_tier], totals.frame_bytes)
        yield image_sets
        yield stored


STORAGE_COLLECTOR = StorageCollector()
REGISTRY.register(STORAGE_COLLECTOR)

# Whether this process writes its values to the multiprocess folder: decided by prometheus_client at its import.
MULTIPROCESS = values.ValueClass is not values.MutexValue
MULTIPROCESS_LOCK_NAME = ".in-use.lock"
_multiprocess_dir_lock: int | None = None


def multiprocess_dir_prepare(*, path: str) -> bool:
    """Empty the multiprocess folder `path` if no other web process uses it, and mark it used by this one until it
    exits; True when it was emptied.

    Each web process holds a shared lock on a file in the folder for its lifetime (the kernel drops it however the
    process ends). The one that gets the lock exclusively is alone: the files there are an earlier run's and are
    removed, all but this process's own (it may have opened them already when Django set up). The others keep
    what is there, so a web process started next to running ones neither loses their counts nor makes the sums
    go backwards."""
    global _multiprocess_dir_lock
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(folder / MULTIPROCESS_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        alone = False
    else:
        alone = True
        own = f"_{os.getpid()}.db"
        for stale in folder.glob("*.db"):
            if not stale.name.endswith(own):
                stale.unlink(missing_ok=True)
    fcntl.flock(descriptor, fcntl.LOCK_SH)  # waits while a process that is alone empties the folder
    if _multiprocess_dir_lock is not None:
        os.close(_multiprocess_dir_lock)
    _multiprocess_dir_lock = descriptor
    return alone


def render_metrics() -> bytes:
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(STORAGE_COLLECTOR)
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.APERTURE_METRICS_TOKEN
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(supplied.encode(), token.encode()):
        return HttpResponse("metrics need the bearer token set in APERTURE_METRICS_TOKEN\n", status=403,
                            content_type="text/plain")
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE)
