"""DICOMweb and GetImageFrame speed side by side with Orthanc, in one run, printed as one table.

    .venv/bin/python bench/dicomweb_bench.py [--slices 300] [--requests 200] [--studies 100000]
    .venv/bin/python bench/dicomweb_bench.py --skip-live --studies 1000000 \
        --database-url postgres://root@127.0.0.1:5432/test                       # the QIDO rows on PostgreSQL

Starts a private Orthanc with its DICOMweb plugin (bench/orthanc.py: Debian's orthanc and orthanc-dicomweb, kept on
loopback) and an Aperture server (tests/servers.py: `manage.py serve`, SQLite, blobs on disk), loads the same
generated 512x512 CT series (bench/import_bench.py phantom_series) into both, then times warm requests over kept-alive
connections, one of each kind per round so that both servers see the same machine load:

- Orthanc's raw WADO-RS frame, against Aperture's WADO-RS frame in the stored syntax (`transfer-syntax=*`) and the
  HealthImaging GetImageFrame (SigV4-signed as boto3 signs it; the signing is done before the clock starts);
- Orthanc's `/frames/1/rendered` against Aperture's (JPEG);
- series metadata (application/dicom+json) of the whole series.

Aperture routes that answer 404 UnknownOperationException (not built yet on this branch) print "not served".
The QIDO rows time GET /studies by PatientID and by a StudyDate range through the service the route calls
(imaging/services/qido.py studies_search), over StudyIndex rows (and one primary image set per study) filled in
bulk into a throw-away store: SQLite by default, PostgreSQL with --database-url (a database created next to it and
dropped afterwards). Targets are the issue's; the machine's other load shows in every figure, so compare ratios.
"""
from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
ORTHANC_FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"'
NOT_SERVED = "not served"


@dataclass
class Row:
    """One measured request kind: `send()` returns (status, headers, body) of one request."""

    name: str
    send: object
    baseline: str | None = None  # the row whose median this one is compared with
    target: float | None = None  # highest ratio to the baseline that meets the issue
    timings: list[float] = field(default_factory=list)
    failure: str | None = None

    def median(self) -> float:
        return statistics.median(self.timings) * 1000

    def p95(self) -> float:
        ordered = sorted(self.timings)
        return ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


class Connection:
    """A kept-alive HTTP/1.1 connection to one loopback server; reconnects if the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, *, headers: dict[str, str], body: bytes | None = None):
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class Signer:
    """SigV4 headers for one request, as botocore computes them (imaging/aws/sigv4.py verifies those)."""

    def __init__(self, port: int, key: dict[str, str]) -> None:
        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self.base = f"http://127.0.0.1:{port}"
        self.auth = SigV4Auth(Credentials(key["AccessKeyId"], key["SecretAccessKey"]), "medical-imaging", "us-east-1")

    def headers(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, str]:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=self.base + path, data=body, headers=dict(headers))
        self.auth.add_auth(request)
        return dict(request.headers.items())


def aperture_load(server, folder: Path) -> dict[str, str]:
    """Import the series into a fresh data store; a reader (not a superuser) granted it, and its key."""
    datastore_id = server.manage("shell", "-c", (
        "from imaging.services.datastores import datastore_create;"
        "print(datastore_create(client_token='dicomweb-bench', name='bench')['datastoreId'])")).stdout.split()[-1]
    server.manage("import_dicom", "--datastore", datastore_id, str(folder))
    script = (
        "import json; from django.contrib.auth import get_user_model;"
        "from imaging.models import DatastoreGrant, ImageFrame, ImageSet;"
        "from imaging.services.accesskeys import accesskey_create;"
        "from imaging.services.imagesets import imageset_metadata_document;"
        f"s = ImageSet.objects.get(datastore_id='{datastore_id}');"
        "u = get_user_model().objects.create_user('bench-reader');"
        f"DatastoreGrant.objects.create(user=u, datastore_id='{datastore_id}');"
        "k = accesskey_create(user=u, policy='AWSHealthImagingReadOnlyAccess');"
        "d = imageset_metadata_document(image_set=s);"
        "series_uid, series = next(iter(d['Study']['Series'].items()));"
        "sops = sorted(series['Instances'], key=lambda sop: int(series['Instances'][sop]['DICOM'].get('InstanceNumber') or 0));"
        "sop = sops[len(sops) // 2];"
        "print(json.dumps({'image_set': s.id, 'study': s.study_instance_uid, 'series': series_uid, 'sop': sop,"
        " 'frame': series['Instances'][sop]['ImageFrames'][0]['ID'],"
        " 'key': {'AccessKeyId': k.access_key_id, 'SecretAccessKey': k.secret_access_key}}))")
    found = json.loads(server.manage("shell", "-c", script).stdout.strip().splitlines()[-1])
    return {"datastore": datastore_id, **found}


def live_rows(slices: int, requests: int) -> list[Row]:
    from bench.import_bench import phantom_series
    from bench.orthanc import Orthanc
    from tests.servers import ApertureServer

    folder = Path(tempfile.mkdtemp(prefix="dicomweb-bench-")) / "series"
    phantom_series(folder, slices)
    orthanc = Orthanc(dicomweb=True).start()
    server = ApertureServer().start()
    try:
        seconds = orthanc.ingest_seconds(sorted(folder.glob("*.dcm")))
        print(f"Orthanc: {slices} instances stored in {seconds:.1f}s", file=sys.stderr)
        start = time.perf_counter()
        ids = aperture_load(server, folder)
        print(f"Aperture: {slices} instances imported in {time.perf_counter() - start:.1f}s", file=sys.stderr)
        rows = _rows(orthanc.http_port, server.port, ids)
        _measure(rows, requests)
        return rows
    finally:
        server.stop()
        orthanc.stop()


def _rows(orthanc_port: int, aperture_port: int, ids: dict) -> list[Row]:
    theirs, ours = Connection(orthanc_port), Connection(aperture_port)
    signer = Signer(aperture_port, ids["key"])
    study, series, sop = ids["study"], ids["series"], ids["sop"]
    orthanc_instance = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    aperture_instance = f"/datastore/{ids['datastore']}/studies/{study}/series/{series}/instances/{sop}"
    aperture_series = f"/datastore/{ids['datastore']}/studies/{study}/series/{series}"

    def orthanc_get(path: str, accept: str):
        return lambda: theirs.request("GET", path, headers={"Accept": accept})

    def aperture_get(path: str, accept: str):
        def send():
            return ours.request("GET", path, headers=signer.headers("GET", path, {"Accept": accept}))
        return send

    frame_path = f"/datastore/{ids['datastore']}/imageSet/{ids['image_set']}/getImageFrame"
    frame_body = json.dumps({"imageFrameId": ids["frame"]}).encode()

    def get_image_frame():
        headers = signer.headers("POST", frame_path, {"Content-Type": "application/json"}, frame_body)
        return ours.request("POST", frame_path, headers=headers, body=frame_body)

    return [
        Row("Orthanc WADO-RS frame (raw)", orthanc_get(orthanc_instance + "/frames/1", ORTHANC_FRAME_ACCEPT)),
        Row("Aperture WADO-RS frame (stored, *)", aperture_get(aperture_instance + "/frames/1", FRAME_ACCEPT),
            baseline="Orthanc WADO-RS frame (raw)", target=1.0),
        Row("Aperture GetImageFrame", get_image_frame, baseline="Orthanc WADO-RS frame (raw)", target=1.0),
        Row("Orthanc /rendered 512x512 CT", orthanc_get(orthanc_instance + "/frames/1/rendered", "image/jpeg")),
        Row("Aperture /rendered 512x512 CT", aperture_get(aperture_instance + "/frames/1/rendered", "image/jpeg"),
            baseline="Orthanc /rendered 512x512 CT", target=0.7),
        Row("Orthanc series metadata", orthanc_get(f"/dicom-web/studies/{study}/series/{series}/metadata",
                                                   "application/dicom+json")),
        Row("Aperture series metadata", aperture_get(aperture_series + "/metadata", "application/dicom+json"),
            baseline="Orthanc series metadata", target=0.25),
    ]


def _send(row: Row) -> float | None:
    """One request of `row`, timed from sending to the last byte read; None (and `row.failure`) if it failed."""
    start = time.perf_counter()
    status, headers, body = row.send()
    elapsed = time.perf_counter() - start
    if status == 200 and body:
        return elapsed
    error = {k.lower(): v for k, v in headers.items()}.get("x-amzn-errortype", "")
    row.failure = NOT_SERVED if status == 404 and error.startswith("UnknownOperation") else f"HTTP {status} {error}"
    return None


def _measure(rows: list[Row], requests: int, warmup: int = 10) -> None:
    """Warm each row, then `requests` rounds of one request per row, so both servers run under the same load."""
    live = []
    for row in rows:
        for _ in range(warmup):
            if _send(row) is None:
                break
        else:
            live.append(row)
    for _ in range(requests):
        for row in live:
            elapsed = _send(row)
            if elapsed is None:
                row.timings.clear()
                live.remove(row)
                break
            row.timings.append(elapsed)


def fill_studies(datastore_id: str, count: int) -> dict[str, str]:
    """`count` StudyIndex rows and one primary image set per study, in bulk; a patient has about four studies,
    study dates spread over 2015-2024. Returns a PatientID and a StudyDate range to search for."""
    from imaging.models import ImageSet, StudyIndex

    rng = random.Random(1)
    first_day = datetime(2015, 1, 1, tzinfo=timezone.utc)
    studies, image_sets, probe = [], [], {}
    for n in range(count):
        day = first_day + timedelta(days=rng.randrange(0, 3650))
        patient = f"PID{rng.randrange(0, count // 4 + 1):08d}"
        study_uid = f"1.2.826.0.1.3680043.10.1.{n}"
        name = f"NAME{n % 5000}^GIVEN{n % 97}"
        studies.append(StudyIndex(
            datastore_id=datastore_id, study_instance_uid=study_uid, patient_name=name, patient_id=patient,
            patient_birth_date="19600101", patient_sex="O", study_date=day.strftime("%Y%m%d"), study_time="101010",
            study_description="CT CHEST", accession_number=f"A{n:09d}", modalities=" CT ", number_of_series=1,
            number_of_instances=100))
        image_sets.append(ImageSet(
            id=uuid.uuid4().hex, datastore_id=datastore_id, is_primary=True, study_instance_uid=study_uid,
            series_instance_uid=study_uid + ".1", patient_id=patient, patient_name=name,
            accession_number=f"A{n:09d}", study_id=str(n % 10000), study_date_time=day, modality="CT",
            number_of_instances=100, dicom_tags={}))
        if n == count // 2:
            probe = {"PatientID": patient}
        if len(studies) == 5000:
            StudyIndex.objects.bulk_create(studies)
            ImageSet.objects.bulk_create(image_sets)
            studies, image_sets = [], []
    if studies:
        StudyIndex.objects.bulk_create(studies)
        ImageSet.objects.bulk_create(image_sets)
    probe["StudyDate"] = "20200301-20200307"  # a week: about 1 in 520 of the studies
    return probe


def qido_rows(studies: int, runs: int) -> list[tuple[str, float, float, int]]:
    """(name, median ms, p95 ms, studies found) of GET /studies by PatientID and by StudyDate range, timed through
    the service the route calls, in a throw-away store filled with `studies` studies."""
    from bench.common import throwaway_store

    results = []
    with throwaway_store("aperture-qido-bench-"):
        from django.db import connection, reset_queries

        from imaging.models import Datastore
        from imaging.services.qido import search_parse, studies_search

        datastore = Datastore.objects.create(name="qido-bench", status="ACTIVE")
        start = time.perf_counter()
        probe = fill_studies(datastore.id, studies)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        gc.collect()
        gc.freeze()  # as a web process does once started (config/asgi_handler.py)
        print(f"{connection.vendor}: {studies} studies filled in {time.perf_counter() - start:.0f}s", file=sys.stderr)
        base_url = f"http://127.0.0.1/datastore/{datastore.id}"
        for name, params in (("PatientID", {"PatientID": [probe["PatientID"]]}),
                             ("StudyDate range (1 week)", {"StudyDate": [probe["StudyDate"]]})):
            timings, found = [], 0
            for n in range(runs + 5):
                start = time.perf_counter()
                result = studies_search(datastore_id=datastore.id, search=search_parse(params), base_url=base_url)
                if n >= 5:  # the first few warm the caches
                    timings.append(time.perf_counter() - start)
                found = len(result.objects)
                reset_queries()
            timings.sort()
            results.append((f"QIDO /studies by {name} at {studies:,} ({connection.vendor})",
                            statistics.median(timings) * 1000, timings[max(0, int(len(timings) * 0.95) - 1)] * 1000,
                            found))
    return results


def print_table(rows: list[Row], qido: list[tuple[str, float, float, int]]) -> None:
    by_name = {row.name: row for row in rows}
    print(f"{'measure':<44}{'median ms':>10}{'p95 ms':>9}{'ratio':>8}{'target':>10}{'met?':>6}")
    for row in rows:
        if row.failure or not row.timings:
            print(f"{row.name:<44}{row.failure or 'no data':>27}")
            continue
        ratio, target, met = "", "", ""
        base = by_name.get(row.baseline or "")
        if base and base.timings:
            value = row.median() / base.median()
            ratio, target, met = f"{value:.2f}", f"<= {row.target:.2f}x", "yes" if value <= row.target else "NO"
        print(f"{row.name:<44}{row.median():>10.2f}{row.p95():>9.2f}{ratio:>8}{target:>10}{met:>6}")
    for name, median, p95, found in qido:
        print(f"{name:<44}{median:>10.2f}{p95:>9.2f}{'':>8}{'p95 < 20':>10}{'yes' if p95 < 20 else 'NO':>6}"
              f"   ({found} found)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300, help="instances in the CT series (default 300)")
    parser.add_argument("--requests", type=int, default=200, help="timed requests per row (default 200)")
    parser.add_argument("--studies", type=int, default=100_000, help="studies for the QIDO rows (0: none)")
    parser.add_argument("--qido-runs", type=int, default=100)
    parser.add_argument("--database-url", help="the QIDO rows on this PostgreSQL server (a throw-away database)")
    parser.add_argument("--skip-live", action="store_true", help="only the QIDO rows")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    rows = [] if args.skip_live else live_rows(args.slices, args.requests)
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    qido = qido_rows(args.studies, args.qido_runs) if args.studies else []
    print_table(rows, qido)


if __name__ == "__main__":
    main()
