"""C-FIND at the STUDY level over a large study index: p50/p95 per query shape, server side.

    .venv/bin/python bench/find_bench.py --studies 100000                     # SQLite in a temp data dir
    DATABASE_URL=postgres://root@127.0.0.1:5432/x .venv/bin/python bench/find_bench.py --studies 100000

Fills one data store with synthetic studies (bench/dicomweb_bench.py's fill: StudyIndex rows and one primary image
set per study, no blobs) and times `find_matches` (imaging/dimse/find.py), the whole server-side work of a C-FIND
but the network: reading the identifier, the query, and building every response dataset. The identifier asks
for the keys a workstation's study list asks for. Target (issue 15): p95 under 20 ms at 100,000 studies.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import throwaway_store  # noqa: E402

STUDY_LIST_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                   "StudyTime", "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
                   "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances")


def identifier_of(matches: dict[str, str]):
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    for keyword in STUDY_LIST_KEYS:
        setattr(identifier, keyword, matches.get(keyword, ""))
    return identifier


def fill_name_tokens(datastore_id: str) -> None:
    """The name index of the filled studies (bench/dicomweb_bench.py's fill leaves it empty), as
    study_index_refresh writes it on every import."""
    from imaging.models import StudyIndex, StudyNameToken
    from imaging.study_index import name_tokens

    batch = []
    for study_id, patient_name in StudyIndex.objects.filter(datastore_id=datastore_id).values_list("id",
                                                                                                  "patient_name"):
        batch += [StudyNameToken(study_id=study_id, token=token) for token in name_tokens(patient_name)]
        if len(batch) >= 10000:
            StudyNameToken.objects.bulk_create(batch)
            batch = []
    StudyNameToken.objects.bulk_create(batch)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    with throwaway_store("aperture-find-bench-"):
        run(args)


def run(args) -> None:
    from django.db import connection, reset_queries

    from bench.dicomweb_bench import fill_studies
    from imaging.dimse.find import STUDY_ROOT_FIND, find_matches
    from imaging.models import Datastore

    datastore = Datastore.objects.create(name="find-bench", status="ACTIVE")
    start = time.perf_counter()
    probe = fill_studies(datastore.id, args.studies)
    fill_name_tokens(datastore.id)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    gc.collect()
    gc.freeze()  # as a long-running listener process has, once started
    print(f"{connection.vendor}: {args.studies} studies filled in {time.perf_counter() - start:.0f}s")
    middle = args.studies // 2
    shapes = {
        "PatientID": {"PatientID": probe["PatientID"]},
        "StudyDate range (1 week)": {"StudyDate": probe["StudyDate"]},
        "StudyDate (1 day) + ModalitiesInStudy": {"StudyDate": probe["StudyDate"][:8], "ModalitiesInStudy": "CT"},
        "AccessionNumber": {"AccessionNumber": f"A{middle:09d}"},
        "StudyInstanceUID": {"StudyInstanceUID": f"1.2.826.0.1.3680043.10.1.{middle}"},
        "PatientID + StudyDate range": {"PatientID": probe["PatientID"], "StudyDate": "20150101-20241231"},
        "PatientName wildcard (NAME1234^*)": {"PatientName": "NAME1234^*"},
        "PatientName wildcard (NAME123*)": {"PatientName": "NAME123*"},
    }
    print(f"{'C-FIND STUDY level by':<40}{'p50 ms':>9}{'p95 ms':>9}{'found':>7}{'p95 < 20':>10}")
    for name, matches in shapes.items():
        identifier = identifier_of(matches)
        timings, found = [], 0
        for n in range(args.runs + 5):
            begin = time.perf_counter()
            found = len(list(find_matches(datastore_id=datastore.id, model=STUDY_ROOT_FIND, identifier=identifier,
                                     retrieve_ae_title="APERTURE")))
            if n >= 5:  # the first few warm the caches
                timings.append((time.perf_counter() - begin) * 1000)
            reset_queries()
        timings.sort()
        p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
        print(f"{name:<40}{statistics.median(timings):>9.2f}{p95:>9.2f}{found:>7}{'yes' if p95 < 20 else 'NO':>10}")


if __name__ == "__main__":
    main()
