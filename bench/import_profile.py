"""Where an S3 import job's time goes, phase by phase (a tool for finding overhead, not a benchmark table).

    .venv/bin/python bench/import_profile.py [--slices 300] [--s3-blobs]

Generates the CT series of bench/import_bench.py, uploads it to a SeaweedFS bucket on loopback and runs
StartDICOMImportJob jobs through the import service with the thread backend (the first one warms the worker pool).

1. The driver's phases, wall clock, from one warm job: queueing until the claim, discovery, the output probe, the
   processing stream (workers), persisting, manifests, recording the outcome. Each phase function is wrapped here.
2. The workers' phases, from one job run with APERTURE_IMPORT_CONCURRENCY=0 (every file in the driver's thread,
   so a profiler sees it): the S3 GET, reading P10, normalizing, transcoding and verifying, writing frame blobs,
   as total seconds and milliseconds per file.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

spent: dict[str, float] = defaultdict(float)


def timed(module, name: str, label: str) -> None:
    """Replace module.name by a wrapper adding its wall time (generators: until exhausted) to spent[label]."""
    import inspect

    original = getattr(module, name)
    if inspect.isgeneratorfunction(original):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                yield from original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start
    else:
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start
    setattr(module, name, wrapper)


def report(title: str, files: int) -> None:
    print(f"\n{title}")
    for label, seconds in spent.items():
        print(f"  {label:<38}{seconds:>8.3f} s{seconds / files * 1000:>9.2f} ms/file")
    spent.clear()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--s3-blobs", action="store_true", help="frame blobs on S3 too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aperture-profile-"))
    atexit.register(shutil.rmtree, work, True)  # the series, the blobs and the database: ~700 MB a run
    os.environ["APERTURE_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from bench.import_bench import phantom_series, s3_import_seconds, s3_series_upload
    from imaging.pipeline import job as job_module
    from imaging.pipeline import process as process_module
    from imaging.services import imports as imports_module
    from tests.s3 import SeaweedS3

    series_dir = work / "series"
    phantom_series(series_dir, args.slices)
    seaweed = SeaweedS3().start()
    try:
        bucket = s3_series_upload(seaweed, series_dir)
        s3_import_seconds(seaweed, bucket, blobs_in_s3=args.s3_blobs)  # the pool, warmed
        timed(imports_module, "claim_job", "queue + claim (to claim's end)")
        timed(job_module, "discover", "discovery (list objects)")
        timed(job_module, "output_probe_write", "output probe write")
        timed(job_module, "process_all", "processing stream (workers)")
        timed(job_module, "persist_instances", "persist transaction")
        timed(job_module, "manifests_write", "manifests")
        timed(imports_module, "_outcome_record", "outcome record")
        seconds, files = s3_import_seconds(seaweed, bucket, blobs_in_s3=args.s3_blobs)
        report(f"driver phases, {files} files, {settings.APERTURE_IMPORT_CONCURRENCY} workers, submit to COMPLETED "
               f"{seconds:.2f} s ({files / seconds:.1f} files/s)", files)
        timed(process_module, "read_object", "S3 GET")
        timed(process_module, "read_p10", "read P10")
        timed(process_module, "normalize_dataset", "normalize")
        timed(process_module, "transcode_frames", "decode + encode + verify + checksums")
        timed(process_module, "frames_store", "frame blob writes")
        settings.APERTURE_IMPORT_CONCURRENCY = 0
        seconds, files = s3_import_seconds(seaweed, bucket, blobs_in_s3=args.s3_blobs)
        report(f"the same with every file in the driver's thread (APERTURE_IMPORT_CONCURRENCY=0), submit to "
               f"COMPLETED {seconds:.2f} s", files)
    finally:
        seaweed.stop()


if __name__ == "__main__":
    main()
