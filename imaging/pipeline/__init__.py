"""The import pipeline: discover -> read -> normalize -> transcode -> verify -> persist, one module per step.

In the task worker, with the database:
  job.py            the job driver: claim, quotas, the worker pool loop (or the plan, batches and finish of a job
                    distributed over Celery workers), persisting, recovery; returns a JobOutcome
  batches.py        the bookkeeping of a distributed job: batch rows, claims, results, the finish claim, recovery
  heartbeat.py      the thread that says a job, batch or finish step is alive while it runs
  discover.py       list the input, read each file once, enforce the file quotas
  json_metadata.py  the job's JSON metadata mappings (SPEC 4.10)
  persist.py        group instances into image sets and write them in one transaction
  manifests.py      the job's four output manifests
  pool.py           the worker processes (and one file under its time limit in a Celery worker's own process)
In the worker processes, without Django:
  process.py        one file through the steps below, never raising for the file's own problems
  sources.py        read input objects (and write manifests) on S3 or local folders
  normalize.py      a read instance's metadata and warnings
  transcode.py      transcode and verify every frame
  frame_store.py    write a processed file's frames to the blob store
  results.py        what the per-file steps hand back

The pipeline may import models, storage, dicom and codecs; never services (they call it, imaging/services/imports.py).
"""
