"""Rendered frame speed: a warm `/rendered` of a 512x512 CT frame from Aperture against Orthanc's DICOMweb plugin,
side by side in the same run, and where Aperture's time goes.

    .venv/bin/python bench/rendered_bench.py [--requests 300]

Starts `manage.py serve` on a throw-away data directory and a private Orthanc on loopback (bench/orthanc.py) with
its DICOMweb plugin, gives both the same generated CT slice, then times sequential GETs on one kept-alive connection
each (Aperture's request signed once with SigV4, as a client reusing its headers). Two more Aperture rows bound the
render's share: a signed request that is refused after authentication (404: auth, one query, audit; nothing drawn)
and an unsigned one (refused before authentication and the database). Compare figures of one run only: this
machine is shared.
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def timed(port: int, path: str, headers: dict[str, str], count: int) -> tuple[float, float, float]:
    """(median, min, 90th percentile) ms of `count` GETs on a fresh kept-alive connection, after one warm-up."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers=headers)
    connection.getresponse().read()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        times.append((time.perf_counter() - start) * 1000)
    connection.close()
    return statistics.median(times), min(times), statistics.quantiles(times, n=10)[-1]


def orthanc_with_dicomweb():
    """bench/orthanc.py's private Orthanc, started from the same configuration plus the DICOMweb plugin."""
    from bench import orthanc

    instance = orthanc.Orthanc()
    dumps = orthanc.json.dumps

    def with_plugin(config, *args, **kwargs):
        if isinstance(config, dict) and "HttpPort" in config:
            config = {**config, "Plugins": [DICOMWEB_PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        return dumps(config, *args, **kwargs)

    orthanc.json = type("JsonWithPlugin", (), {"dumps": staticmethod(with_plugin), "loads": json.loads})
    try:
        return instance.start()
    finally:
        orthanc.json = json


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    count = parser.parse_args().requests

    import pydicom
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from bench.import_bench import phantom_series
    from tests.servers import ApertureServer

    server = ApertureServer().start()
    peer = None
    try:
        folder = server.data_dir / "series"
        phantom_series(folder, 3)
        datastore_id = server.manage("shell", "-c", (
            "from django.conf import settings;"
            "settings.APERTURE_TASK_BACKEND=settings.APERTURE_TASK_BACKEND_ALIASES['eager'];"
            "from imaging.services.datastores import datastore_create;"
            "print(datastore_create(client_token='bench', name='bench')['datastoreId'])")).stdout.split()[-1]
        server.manage("import_dicom", "--datastore", datastore_id, str(folder))
        key = server.create_key()
        slice_path = sorted(folder.glob("*.dcm"))[1]
        ds = pydicom.dcmread(slice_path, stop_before_pixels=True)
        tail = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered"

        def signed(path: str) -> dict[str, str]:
            request = AWSRequest(method="GET", url=f"{server.url}{path}", headers={"Accept": "image/jpeg"})
            SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "medical-imaging",
                      "us-east-1").add_auth(request)
            return dict(request.headers.items())

        rendered = f"/datastore/{datastore_id}{tail}"
        missing = f"/datastore/{datastore_id}/studies/1.2.3/rendered"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        start = time.perf_counter()
        connection.request("GET", rendered, headers=signed(rendered))
        response = connection.getresponse()
        assert response.status == 200 and response.read()[:2] == b"\xff\xd8", response.status
        cold = (time.perf_counter() - start) * 1000
        connection.close()

        try:
            peer = orthanc_with_dicomweb()
        except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"Orthanc not available: {e}")
        if peer:
            peer.ingest_seconds([slice_path])
        rows = [("aperture /rendered, cold (first draw of the frame)", cold, cold, cold),
                ("aperture /rendered, warm", *timed(server.port, rendered, signed(rendered), count))]
        if peer:
            rows.append(("orthanc /rendered, warm", *timed(peer.http_port, "/dicom-web" + tail,
                                                          {"Accept": "image/jpeg"}, count)))
        rows += [("aperture signed 404 (auth, query, audit; no render)",
                  *timed(server.port, missing, signed(missing), count)),
                 ("aperture unsigned 403 (no auth, no database)", *timed(server.port, "/datastore/x", {}, count))]
        print(f"{'':56s} {'median':>8s} {'min':>8s} {'p90':>8s}  (ms)")
        for name, median, low, p90 in rows:
            print(f"{name:56s} {median:8.2f} {low:8.2f} {p90:8.2f}")
        if peer:
            print(f"aperture / orthanc (median, warm): {rows[1][1] / rows[2][1]:.2f}")
    finally:
        if peer:
            peer.stop()
        server.stop()


if __name__ == "__main__":
    main()
