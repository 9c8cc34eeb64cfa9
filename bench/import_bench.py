"""Import throughput against the pure HTJ2K encode time of the same frames, measured in the same run.

    .venv/bin/python bench/import_bench.py [--slices 300] [--shared ../shared/dicom] [--workers 1,2] [--repeat 3]

Generates a 300-slice 512x512 16-bit CT series, imports it (and the shared test files) through the real pipeline
(local folder job, worker processes, blob store, database) into a throw-away data directory, and prints a table.
The baseline is `imagecodecs.htj2k_encode` of exactly the same frames, one after another in this process.

Two more rows put the ratio in context: the CT import with each worker count of --workers (how the pipeline
scales with cores), and "codec work", what every transcoded frame needs whatever the rest of the pipeline does
(encode, the OpenJPEG verification decode, the checksums of every resolution level), one after another on one
core.

Two rows compare the import with its peer, side by side in the same run (skip them with --no-s3 / --no-orthanc):
- "S3 job": the same series uploaded to a bucket of a SeaweedFS started on loopback (tests/s3.py), imported by a
  StartDICOMImportJob through the import service with the embedded thread backend, timed from submit to
  COMPLETED, its worker pool warmed by one job first as a running server has it; frames go to the file blob store,
  and with --s3-blobs a second row writes them to a bucket of the same SeaweedFS.
- "Orthanc REST": Debian's Orthanc (installed by bench/orthanc.py if missing), a private instance on loopback,
  ingesting the same files through POST /instances, two uploads at a time. Orthanc stores files as received.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def phantom_series(folder: Path, slices: int) -> list:
    """A CT-like series: a body ellipse with organs and noise, 12 bits stored in 16."""
    import numpy as np
    from pydicom.uid import generate_uid

    from tests.dicomgen import ct_bytes

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:512, 0:512]
    body = ((x - 256) / 200) ** 2 + ((y - 256) / 150) ** 2 <= 1
    study, series = generate_uid(), generate_uid()
    frames = []
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(slices):
        organ = ((x - 200 - n % 40) / 50) ** 2 + ((y - 250) / 40) ** 2 <= 1
        image = np.where(body, 1040, 24).astype(np.int32) + np.where(organ, 60, 0)
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 4095).astype(np.uint16)
        frames.append(image)
        (folder / f"{n:04}.dcm").write_bytes(ct_bytes(study_uid=study, series_uid=series, instance_number=n + 1,
                                                      rows=512, columns=512, pixels=image))
    return frames


def codec_work_seconds(frames) -> float:
    """What the pipeline does to each decoded frame (`encode_verified`: encode, the independent verification decode,
    statistics and the checksums of every level), one frame after another on one core."""
    from imaging.codecs.description import PixelDescription
    from imaging.dicom import uids
    from imaging.pipeline.transcode import encode_verified

    rows, columns = frames[0].shape
    description = PixelDescription(rows=rows, columns=columns, samples_per_pixel=1, bits_allocated=16, bits_stored=12,
                                   signed=False, photometric="MONOCHROME2", number_of_frames=1,
                                   transfer_syntax=uids.EXPLICIT_LE, is_float=False)
    start = time.perf_counter()
    for frame in frames:
        encode_verified(frame, description)
    return time.perf_counter() - start


def pure_encode_seconds(frames) -> float:
    from imaging.codecs import htj2k

    start = time.perf_counter()
    for frame in frames:
        htj2k.encode_lossless(frame, rgb=False)
    return time.perf_counter() - start


def shared_frames(folder: Path) -> list:
    """Decoded frames of the shared files that the pipeline transcodes, for their own baseline."""
    import logging
    import warnings

    import pydicom

    # pydicom logs each decoder it tries and fails with (Pillow and 12-bit JPEG) before one succeeds.
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    from imaging.codecs.dataset_pixels import describe, iter_decoded_frames

    frames = []
    warnings.simplefilter("ignore")
    for path in sorted(folder.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path)
            description = describe(ds, str(ds.file_meta.TransferSyntaxUID))
            if description is None or description.stored_as_received:
                continue
            frames += list(iter_decoded_frames(ds, description))
        except Exception:
            continue
    return frames


def import_seconds(paths: list[Path]) -> tuple[float, int]:
    from django.conf import settings

    from imaging.models import ImportJob
    from imaging.services.datastores import datastore_create
    from imaging.services.imports import import_job_start_local

    settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]
    datastore_id = datastore_create(client_token=os.urandom(8).hex(), name="bench")["datastoreId"]
    start = time.perf_counter()
    job = import_job_start_local(datastore_id=datastore_id, paths=[str(p) for p in paths])
    elapsed = time.perf_counter() - start
    job = ImportJob.objects.get(pk=job.pk)
    assert job.status == "COMPLETED", job.message
    return elapsed, job.imported_files


def s3_series_upload(seaweed, folder: Path) -> str:
    """The folder's files in a fresh bucket under in/; the bucket's name."""
    from tests.importing import ensure_bucket

    client = seaweed.client()
    bucket = "bench-" + os.urandom(4).hex()
    ensure_bucket(client, bucket)
    for path in sorted(folder.rglob("*.dcm")):
        client.put_object(Bucket=bucket, Key=f"in/{path.name}", Body=path.read_bytes())
    return bucket


def s3_import_seconds(seaweed, bucket: str, *, blobs_in_s3: bool) -> tuple[float, int]:
    """Import the bucket's in/ folder into a fresh data store through StartDICOMImportJob's service with the thread
    backend, timed from submit to COMPLETED; (seconds, files imported)."""
    from django.conf import settings

    from imaging.models import ImportJob, JobStatus
    from imaging.services.datastores import datastore_create
    from imaging.services.imports import import_job_start
    from tests.importing import ROLE, ensure_bucket

    settings.APERTURE_S3_ENDPOINT_URL = seaweed.endpoint
    settings.APERTURE_S3_ACCESS_KEY_ID = seaweed.access_key
    settings.APERTURE_S3_SECRET_ACCESS_KEY = seaweed.secret_key
    file_blobs = settings.APERTURE_BLOB_STORE
    if blobs_in_s3:
        ensure_bucket(seaweed.client(), bucket + "-blobs")
        settings.APERTURE_BLOB_STORE = f"s3://{bucket}-blobs/store"
    try:
        settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["eager"]  # the store ACTIVE at once
        datastore_id = datastore_create(client_token=os.urandom(8).hex(), name="bench-s3")["datastoreId"]
        settings.APERTURE_TASK_BACKEND = settings.APERTURE_TASK_BACKEND_ALIASES["thread"]
        start = time.perf_counter()
        job_id = import_job_start(datastore_id=datastore_id, client_token=os.urandom(8).hex(),
                                  data_access_role_arn=ROLE, input_s3_uri=f"s3://{bucket}/in/",
                                  output_s3_uri=f"s3://{bucket}/out/")["jobId"]
        while True:
            job = ImportJob.objects.get(pk=job_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
    finally:
        settings.APERTURE_BLOB_STORE = file_blobs
    assert job.status == "COMPLETED", job.message
    return elapsed, job.imported_files


def s3_rows(series_dir: Path, series_bytes: int, encode: float, repeat: int, s3_blobs: bool) -> list[tuple]:
    from tests.s3 import SeaweedS3

    seaweed = SeaweedS3().start()
    rows = []
    try:
        bucket = s3_series_upload(seaweed, series_dir)
        s3_import_seconds(seaweed, bucket, blobs_in_s3=False)  # the pool and the S3 clients, warmed
        for label, blobs_in_s3 in [("S3 job, file blobs", False)] + ([("S3 job, S3 blobs", True)] if s3_blobs else []):
            runs = sorted(s3_import_seconds(seaweed, bucket, blobs_in_s3=blobs_in_s3) for _ in range(repeat))
            seconds, imported = runs[len(runs) // 2]
            rows.append((label, imported, series_bytes, seconds, encode))
    finally:
        seaweed.stop()
    return rows


def orthanc_row(series_dir: Path, series_bytes: int, encode: float, repeat: int) -> tuple:
    from bench.orthanc import Orthanc

    paths = sorted(series_dir.rglob("*.dcm"))
    runs = []
    for _ in range(repeat):
        orthanc = Orthanc().start()  # an empty store each time, as the S3 job gets a fresh data store
        try:
            runs.append(orthanc.ingest_seconds(paths, uploads=2))
        finally:
            orthanc.stop()
    runs.sort()
    return ("Orthanc REST, 2 uploads", len(paths), series_bytes, runs[len(runs) // 2], encode)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "dicom"))
    parser.add_argument("--workers", default="", help="comma-separated worker counts for extra CT rows, e.g. 1,2")
    parser.add_argument("--repeat", type=int, default=3,
                        help="CT imports, each right after its own baseline encode; the median pair is shown")
    parser.add_argument("--no-s3", action="store_true", help="leave out the S3 job row (needs weed)")
    parser.add_argument("--s3-blobs", action="store_true", help="also an S3 job row with the blob store on S3")
    parser.add_argument("--no-orthanc", action="store_true", help="leave out the Orthanc row")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aperture-bench-"))
    atexit.register(shutil.rmtree, work, True)  # the series, the blobs and the database: ~700 MB a run
    os.environ["APERTURE_DATA_DIR"] = str(work / "data")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings

    default_workers = settings.APERTURE_IMPORT_CONCURRENCY
    series_dir = work / "series"
    frames = phantom_series(series_dir, args.slices)
    import_seconds([series_dir])  # warm the worker pool once, as a running server has it warm
    rows = []
    series_bytes = sum(p.stat().st_size for p in series_dir.rglob("*.dcm"))
    # The machine's speed drifts (shared CPUs): each import is paired with a baseline measured just before it,
    # and the pair with the median ratio is reported, with the range of all ratios beside it.
    pairs = []
    for _ in range(max(1, args.repeat)):
        encode = pure_encode_seconds(frames)
        pipeline, imported = import_seconds([series_dir])
        pairs.append((pipeline / encode, pipeline, encode))
    pairs.sort()
    _, pipeline, encode = pairs[len(pairs) // 2]
    ratios = f"{pairs[0][0]:.2f}-{pairs[-1][0]:.2f}" if len(pairs) > 1 else ""
    rows.append((f"CT 512x512x{args.slices}", imported, series_bytes, pipeline, encode))
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        settings.APERTURE_IMPORT_CONCURRENCY = workers
        import_seconds([series_dir])  # a pool of this size, warmed
        pipeline, imported = import_seconds([series_dir])
        rows.append((f"  with {workers} worker(s)", imported, series_bytes, pipeline, encode))
    settings.APERTURE_IMPORT_CONCURRENCY = default_workers
    rows.append(("  codec work, 1 core", len(frames), series_bytes, codec_work_seconds(frames), encode))
    if not args.no_s3:
        rows += s3_rows(series_dir, series_bytes, encode, max(1, args.repeat), args.s3_blobs)
    if not args.no_orthanc:
        rows.append(orthanc_row(series_dir, series_bytes, encode, max(1, args.repeat)))
    shared = Path(args.shared)
    if shared.is_dir():
        shared_bytes = sum(p.stat().st_size for p in shared.rglob("*.dcm"))
        encode = pure_encode_seconds(shared_frames(shared))
        pipeline, imported = import_seconds([shared])
        rows.append(("shared/dicom", imported, shared_bytes, pipeline, encode))
    print(f"worker processes: {default_workers}, cores: {os.cpu_count()}"
          + (f"; CT ratio over {len(pairs)} paired runs: {ratios}" if ratios else ""))
    print(f"{'input':<24}{'files':>7}{'MB':>9}{'pipeline s':>12}{'files/s':>9}{'MB/s':>8}{'encode s':>10}{'ratio':>7}")
    for name, files, size, pipeline, encode in rows:
        print(f"{name:<24}{files:>7}{size / 1e6:>9.1f}{pipeline:>12.2f}{files / pipeline:>9.1f}"
              f"{size / 1e6 / pipeline:>8.1f}{encode:>10.2f}{pipeline / encode:>7.2f}")


if __name__ == "__main__":
    main()
