"""The viewer's study list over a large index: p50/p95 per search shape.

    .venv/bin/python bench/studylist_bench.py --count 100000     (SQLite; DATABASE_URL for PostgreSQL)

Fills StudyIndex (and its name tokens) with synthetic studies in one data store and times the same query the study
list page runs, for a superuser.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import throwaway_store  # noqa: E402

SURNAMES = ["SMITH", "JONES", "GARCIA", "MUELLER", "ROSSI", "DUBOIS", "NGUYEN", "KIM", "SATO", "SILVA", "DOE"]
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "LI", "OMAR", "SOFIA", "JAN", "ELENA", "KEN"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with throwaway_store("aperture-studylist-bench-"):
        run(args)


def run(args) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from imaging.models import Datastore, StudyIndex, StudyNameToken
    from imaging.study_index import name_tokens
    from viewer.selectors import studies_search

    datastore = Datastore.objects.create(name="bench", status="ACTIVE")
    admin = get_user_model().objects.create_superuser("bench", "", "x")
    rng = random.Random(3)
    start = time.perf_counter()
    batch = []
    for n in range(args.count):
        name = f"{rng.choice(SURNAMES)}{rng.randrange(1000)}^{rng.choice(GIVEN)}"
        batch.append(StudyIndex(
            datastore=datastore, study_instance_uid=f"1.2.826.0.1.{n}", patient_name=name,
            patient_id=f"P{n % 40000:06d}", study_date=f"20{rng.randrange(10, 25)}{rng.randrange(1, 13):02d}"
            f"{rng.randrange(1, 29):02d}", modalities=f" {rng.choice(['CT', 'MR', 'CR', 'US'])} ",
            accession_number=f"A{n:08d}", number_of_series=3, number_of_instances=300))
        if len(batch) == 5000:
            rows = StudyIndex.objects.bulk_create(batch)
            StudyNameToken.objects.bulk_create([StudyNameToken(study=row, token=t) for row in rows
                                                for t in name_tokens(row.patient_name)])
            batch = []
    if batch:
        rows = StudyIndex.objects.bulk_create(batch)
        StudyNameToken.objects.bulk_create([StudyNameToken(study=row, token=t) for row in rows
                                            for t in name_tokens(row.patient_name)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"{connection.vendor}: {args.count} studies indexed in {time.perf_counter() - start:.1f}s")
    shapes = {
        "first page, newest first": {},
        "name prefix 'garc'": {"q": "garc"},
        "name prefix 'doe5' + given 'an'": {"q": "doe5 an"},
        "patient ID": {"patient_id": "P012345"},
        "date range one month + CT": {"date_from": "2020-03-01", "date_to": "2020-03-31", "modality": "CT"},
        "sorted by name, page 40": {"sort": "name", "page": 40},
    }
    print(f"{'study list query':<36}{'p50 ms':>9}{'p95 ms':>9}{'rows':>6}")
    for label, query in shapes.items():
        page = query.pop("page", 1)
        timings = []
        for _ in range(args.runs):
            begin = time.perf_counter()
            rows, _ = studies_search(user=admin, query=query, page=page)
            timings.append((time.perf_counter() - begin) * 1000)
        timings.sort()
        print(f"{label:<36}{timings[len(timings) // 2]:>9.2f}{timings[int(len(timings) * 0.95) - 1]:>9.2f}"
              f"{len(rows):>6}")

if __name__ == "__main__":
    main()
