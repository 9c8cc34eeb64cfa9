"""SearchImageSets latency by query shape over a large store.

    .venv/bin/python bench/search_bench.py --count 100000                      # SQLite in a temp data dir
    DATABASE_URL=postgres://root@127.0.0.1:5432/x .venv/bin/python bench/search_bench.py --count 1000000

Fills one data store with synthetic image set rows (the index columns SearchImageSets reads; no blobs), then times
each query shape through the same selector the API uses and prints p50/p95 in milliseconds. With DATABASE_URL a
throw-away database is created next to the named one and dropped afterwards.
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import throwaway_store  # noqa: E402


def fill(datastore_id: str, count: int) -> dict:
    from imaging.models import ImageSet

    rng = random.Random(1)
    base = datetime(2020, 1, 1, tzinfo=timezone.utc)
    probes: dict = {}
    batch = []
    for n in range(count):
        created = base + timedelta(seconds=n * 30)
        study_moment = base + timedelta(days=rng.randrange(0, 2000), seconds=rng.randrange(0, 86400))
        patient = f"PID{rng.randrange(0, count // 4 + 1):08d}"
        study_uid = f"1.2.826.0.1.{n // 3}"
        row = ImageSet(
            id=uuid.uuid4().hex, datastore_id=datastore_id, is_primary=rng.random() > 0.02,
            study_instance_uid=study_uid, series_instance_uid=f"{study_uid}.{n % 3}", patient_id=patient,
            patient_name=f"NAME^{n}", accession_number=f"A{n // 3:09d}", study_id=str(n // 3 % 10000),
            study_date_time=study_moment, modality="CT", number_of_instances=100, last_accessed_at=created,
            dicom_tags={"DICOMPatientId": patient, "DICOMStudyInstanceUID": study_uid, "DICOMSeriesModality": "CT"},
        )
        batch.append(row)
        if n == count // 2:
            probes = {"patient": patient, "study": study_uid, "accession": row.accession_number, "created": created,
                      "study_moment": study_moment}
        if len(batch) == 5000:
            ImageSet.objects.bulk_create(batch)
            batch = []
    if batch:
        ImageSet.objects.bulk_create(batch)
    # created_at/updated_at are auto fields: spread them out like a store filled over years.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("UPDATE imaging_imageset SET created_at = last_accessed_at, updated_at = last_accessed_at "
                       "WHERE datastore_id = %s", [datastore_id])
    return probes


def shapes(probes: dict) -> dict[str, dict]:
    created = probes["created"]
    moment = probes["study_moment"]
    day = moment.strftime("%Y%m%d")
    return {
        "list all (updatedAt DESC)": {},
        "EQUAL DICOMPatientId": {"filters": [{"operator": "EQUAL", "values": [{"DICOMPatientId": probes["patient"]}]}]},
        "EQUAL StudyInstanceUID+isPrimary": {"filters": [
            {"operator": "EQUAL", "values": [{"DICOMStudyInstanceUID": probes["study"]}]},
            {"operator": "EQUAL", "values": [{"isPrimary": True}]}]},
        "EQUAL AccessionNumber": {"filters": [{"operator": "EQUAL", "values": [{"DICOMAccessionNumber": probes["accession"]}]}]},
        "BETWEEN createdAt (1 day)": {
            "filters": [{"operator": "BETWEEN", "values": [{"createdAt": created}, {"createdAt": created + timedelta(days=1)}]}],
            "sort": {"sortField": "createdAt", "sortOrder": "ASC"}},
        "BETWEEN StudyDateAndTime": {
            "filters": [{"operator": "BETWEEN", "values": [{"DICOMStudyDateAndTime": {"DICOMStudyDate": day}},
                                                           {"DICOMStudyDateAndTime": {"DICOMStudyDate": day, "DICOMStudyTime": "235959"}}]}],
            "sort": {"sortField": "DICOMStudyDateAndTime", "sortOrder": "DESC"}},
        "sort createdAt ASC": {"sort": {"sortField": "createdAt", "sortOrder": "ASC"}},
        "sort StudyDateAndTime DESC": {"sort": {"sortField": "DICOMStudyDateAndTime", "sortOrder": "DESC"}},
    }


def measure(datastore_id: str, criteria: dict, runs: int) -> tuple[float, float, int]:
    from django.db import reset_queries

    from imaging.selectors import imagesets_search

    timings = []
    found = 0
    for _ in range(runs):
        start = time.perf_counter()
        page, _sort, token = imagesets_search(datastore_id=datastore_id, criteria=criteria, next_token=None,
                                              max_results=50)
        if token:  # and the second page, as a client paging through would
            imagesets_search(datastore_id=datastore_id, criteria=criteria, next_token=token, max_results=50)
        timings.append((time.perf_counter() - start) * 1000 / (2 if token else 1))
        found = len(page)
        reset_queries()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1], found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with throwaway_store("aperture-search-bench-"):
        run(args)


def run(args) -> None:
    from django.db import connection

    from imaging.models import Datastore

    datastore = Datastore.objects.create(name="bench", status="ACTIVE")
    start = time.perf_counter()
    probes = fill(datastore.id, args.count)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # The timestamp rewrite above left a dead copy of every row; a live store has autovacuum for that.
            cursor.execute("VACUUM ANALYZE imaging_imageset")
    else:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"{connection.vendor}: {args.count} image sets filled in {time.perf_counter() - start:.1f}s")
    print(f"{'query shape':<36}{'p50 ms':>9}{'p95 ms':>9}{'rows':>6}")
    for name, criteria in shapes(probes).items():
        p50, p95, rows = measure(datastore.id, criteria, args.runs)
        print(f"{name:<36}{p50:>9.2f}{p95:>9.2f}{rows:>6}")

if __name__ == "__main__":
    main()
