"""Where a warm GetImageFrame spends its time: the whole signed call in process (Django's test client, SigV4-signed as
boto3 signs it), timed and profiled with cProfile. Finds the hot spots of the path that bench/dicomweb_bench.py
measures over HTTP.

    .venv/bin/python bench/frame_profile.py [--calls 500] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import throwaway_store  # noqa: E402


def signed_headers(url: str, body: bytes, key) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "medical-imaging", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with throwaway_store("aperture-frame-profile-"):
        run(args)


def run(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from bench.import_bench import phantom_series
    from imaging.models import DatastoreGrant, ImageFrame, ImageSet
    from imaging.services.accesskeys import accesskey_create
    from imaging.services.datastores import datastore_create

    settings.ALLOWED_HOSTS = ["*"]
    settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]
    datastore_id = datastore_create(client_token="profile", name="profile")["datastoreId"]
    folder = Path(tempfile.mkdtemp()) / "series"
    phantom_series(folder, 2)
    call_command("import_dicom", "--datastore", datastore_id, str(folder), stdout=open("/dev/null", "w"))
    image_set = ImageSet.objects.get(datastore_id=datastore_id)
    frame = ImageFrame.objects.filter(image_set=image_set).first()
    user = get_user_model().objects.create_user("reader")
    key = accesskey_create(user=user, policy="AWSHealthImagingFullAccess")
    DatastoreGrant.objects.create(user=user, datastore_id=datastore_id)  # a reader, not a superuser
    client = Client()
    path = f"/datastore/{datastore_id}/imageSet/{image_set.id}/getImageFrame"
    body = json.dumps({"imageFrameId": frame.frame_id}).encode()
    url = "http://127.0.0.1:8000" + path

    def call() -> None:
        headers = signed_headers(url, body, key)
        extra = {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()
                 if name.lower() not in ("content-type",)}
        response = client.post(path, data=body, content_type="application/json", SERVER_NAME="127.0.0.1",
                               SERVER_PORT="8000", HTTP_HOST="127.0.0.1:8000", **extra)
        assert response.status_code == 200, response.content[:300]

    for _ in range(20):
        call()
    signing = []
    for _ in range(50):
        start = time.perf_counter()
        signed_headers(url, body, key)
        signing.append(time.perf_counter() - start)
    timings = []
    profiler = cProfile.Profile() if args.profile else None
    for _ in range(args.calls):
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        call()
        if profiler:
            profiler.disable()
        timings.append(time.perf_counter() - start)
    timings.sort()
    sign_ms = statistics.median(signing) * 1000
    print(f"GetImageFrame in process: median {statistics.median(timings) * 1000:.2f} ms, "
          f"p95 {timings[int(len(timings) * 0.95)] * 1000:.2f} ms (client signing {sign_ms:.2f} ms included)")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)


if __name__ == "__main__":
    main()
