"""Prometheus metrics at /metrics (SPEC 13.2): call counts, durations and errors counted in this process, and
storage gauges read from the database at scrape time. Protected by APERTURE_METRICS_TOKEN (a bearer token)."""
from __future__ import annotations

import hmac
import threading
from collections import Counter

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_lock = threading.Lock()
_calls: Counter = Counter()
_errors: Counter = Counter()
_duration_buckets: Counter = Counter()
_duration_sum: Counter = Counter()
_duration_count: Counter = Counter()


def record_call(*, operation: str, datastore_id: str, status_code: int, error_type: str, seconds: float) -> None:
    with _lock:
        _calls[(operation, datastore_id, "DICOM", str(status_code))] += 1
        if error_type:
            _errors[(operation, error_type)] += 1
        for bound in BUCKETS:
            if seconds <= bound:
                _duration_buckets[(operation, bound)] += 1
        _duration_sum[operation] += seconds
        _duration_count[operation] += 1


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_metrics() -> str:
    from imaging.models import ImageFrame, ImageSet, ImageSetState

    lines = ["# HELP aperture_imaging_call_count_total API and DICOMweb calls.",
             "# TYPE aperture_imaging_call_count_total counter"]
    with _lock:
        calls, errors = dict(_calls), dict(_errors)
        buckets, sums, counts = dict(_duration_buckets), dict(_duration_sum), dict(_duration_count)
    for (operation, datastore, kind, status), value in sorted(calls.items()):
        lines.append(f'aperture_imaging_call_count_total{{operation="{_label(operation)}",datastore_id="{datastore}",'
                     f'datastore_type="{kind}",status_code="{status}"}} {value}')
    lines += ["# TYPE aperture_imaging_errors_total counter"]
    for (operation, error_type), value in sorted(errors.items()):
        lines.append(f'aperture_imaging_errors_total{{operation="{_label(operation)}",error_type="{error_type}"}} {value}')
    lines += ["# TYPE aperture_imaging_request_duration_seconds histogram"]
    for operation in sorted(counts):
        for bound in BUCKETS:
            lines.append(f'aperture_imaging_request_duration_seconds_bucket{{operation="{operation}",le="{bound}"}} '
                         f'{buckets.get((operation, bound), 0)}')
        lines.append(f'aperture_imaging_request_duration_seconds_bucket{{operation="{operation}",le="+Inf"}} '
                     f'{counts[operation]}')
        lines.append(f'aperture_imaging_request_duration_seconds_sum{{operation="{operation}"}} {sums[operation]:.6f}')
        lines.append(f'aperture_imaging_request_duration_seconds_count{{operation="{operation}"}} {counts[operation]}')
    lines += ["# TYPE aperture_imaging_image_sets gauge"]
    live = ImageSet.objects.exclude(state=ImageSetState.DELETED)
    for row in live.values("datastore_id", "storage_tier").annotate(n=Count("id")).order_by():
        lines.append(f'aperture_imaging_image_sets{{datastore_id="{row["datastore_id"]}",'
                     f'storage_tier="{row["storage_tier"]}"}} {row["n"]}')
    lines += ["# TYPE aperture_imaging_stored_bytes gauge"]
    frames = ImageFrame.objects.filter(image_set__in=live)
    for row in frames.values("image_set__datastore_id", "image_set__storage_tier").annotate(b=Sum("size")).order_by():
        lines.append(f'aperture_imaging_stored_bytes{{datastore_id="{row["image_set__datastore_id"]}",'
                     f'storage_tier="{row["image_set__storage_tier"]}"}} {row["b"] or 0}')
    return "\n".join(lines) + "\n"


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.APERTURE_METRICS_TOKEN
    supplied = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not token or not hmac.compare_digest(supplied.encode(), token.encode()):
        return HttpResponse("metrics need the bearer token set in APERTURE_METRICS_TOKEN\n", status=403,
                            content_type="text/plain")
    return HttpResponse(render_metrics(), content_type="text/plain; version=0.0.4")
