"""WADO-RS latency on a live server (warm and cold): series metadata of a large series, one frame in the stored syntax
and uncompressed, instance metadata.

    .venv/bin/python bench/wado_bench.py --instances 300 --size 512 --rounds 50

Starts `manage.py serve` on a throw-away data dir (SQLite; with DATABASE_URL a throw-away PostgreSQL database),
imports a generated CT series of `--instances` slices with `manage.py import_dicom`, then times SigV4-signed GETs
over one kept-alive connection and prints p50/p95 in milliseconds. Compare with Orthanc in bench/dicomweb_bench.py.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from pydicom.uid import generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.clients import imaging_client, wait_for  # noqa: E402
from tests.dicomgen import ct_dataset, to_bytes  # noqa: E402
from tests.imaging.dicomweb.test_qido_dicomweb_client import SigV4  # noqa: E402
from tests.servers import ApertureServer  # noqa: E402


def _timed(session: requests.Session, url: str, accept: str | None, rounds: int) -> tuple[float, list[float], int]:
    headers = {"Accept": accept} if accept else {}
    started = time.perf_counter()
    first = session.get(url, headers=headers)
    cold = (time.perf_counter() - started) * 1000
    assert first.status_code == 200, first.text[:300]
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = session.get(url, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return cold, samples, len(first.content)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--orthanc", action="store_true", help="time the same requests on Orthanc's DICOMweb plugin")
    args = parser.parse_args()
    server = ApertureServer().start()
    try:
        key = server.create_key()
        mi = imaging_client(server.url, key)
        datastore_id = mi.create_datastore(datastoreName="wado-bench")["datastoreId"]
        wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"]
                 == "ACTIVE")
        folder = Path(tempfile.mkdtemp(prefix="wado-bench-"))
        study, series = generate_uid(), generate_uid()
        sops = []
        for number in range(1, args.instances + 1):
            dataset = ct_dataset(study_uid=study, series_uid=series, instance_number=number, rows=args.size,
                                 columns=args.size, seed=number)
            sops.append(dataset.SOPInstanceUID)
            (folder / f"{number:04d}.dcm").write_bytes(to_bytes(dataset))
        started = time.perf_counter()
        server.manage("import_dicom", "--datastore", datastore_id, str(folder))
        seconds = time.perf_counter() - started
        print(f"imported {args.instances} instances of {args.size}x{args.size} in {seconds:.1f} s")
        session = requests.Session()
        session.auth = SigV4(key)
        base = f"{server.url}/datastore/{datastore_id}/studies/{study}/series/{series}"
        middle = sops[len(sops) // 2]
        cases = [
            ("series metadata", f"{base}/metadata", "application/dicom+json"),
            ("instance metadata", f"{base}/instances/{middle}/metadata", "application/dicom+json"),
            ("frame, stored (HTJ2K)", f"{base}/instances/{middle}/frames/1",
             "multipart/related; type=application/octet-stream; transfer-syntax=*"),
            ("frame, uncompressed", f"{base}/instances/{middle}/frames/1",
             "multipart/related; type=application/octet-stream"),
            ("series search (QIDO)", f"{server.url}/datastore/{datastore_id}/studies/{study}/series", None),
        ]
        for name, url, accept in cases:
            cold, samples, size = _timed(session, url, accept, args.rounds)
            samples.sort()
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            print(f"{name:24s} cold {cold:7.1f} ms  warm p50 {statistics.median(samples):6.1f} ms  p95 {p95:6.1f} ms"
                  f"  ({size} bytes)")
        if args.orthanc:
            _orthanc(folder, study, series, middle, args.rounds)
    finally:
        server.stop()


def _orthanc(folder: Path, study: str, series: str, middle: str, rounds: int) -> None:
    from bench.orthanc import Orthanc

    orthanc = Orthanc(dicomweb=True).start()
    try:
        orthanc.ingest_seconds(sorted(folder.glob("*.dcm")))
        session = requests.Session()
        base = f"http://127.0.0.1:{orthanc.http_port}/dicom-web/studies/{study}/series/{series}"
        cases = [
            ("Orthanc series metadata", f"{base}/metadata", "application/dicom+json"),
            ("Orthanc inst. metadata", f"{base}/instances/{middle}/metadata", "application/dicom+json"),
            ("Orthanc frame, stored", f"{base}/instances/{middle}/frames/1",
             "multipart/related; type=application/octet-stream; transfer-syntax=*"),
            ("Orthanc frame, uncompr.", f"{base}/instances/{middle}/frames/1",
             "multipart/related; type=application/octet-stream"),
        ]
        for name, url, accept in cases:
            cold, samples, size = _timed(session, url, accept, rounds)
            samples.sort()
            p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
            print(f"{name:24s} cold {cold:7.1f} ms  warm p50 {statistics.median(samples):6.1f} ms  p95 {p95:6.1f} ms"
                  f"  ({size} bytes)")
    finally:
        orthanc.stop()


if __name__ == "__main__":
    main()
