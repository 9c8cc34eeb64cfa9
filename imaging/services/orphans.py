"""Blobs that nothing refers to, swept once they are old enough (issue 11 item 10).

Import workers store frames before their job persists its image sets, and a metadata document is stored just
before the row that names it, in the same transaction. A crash in between (a kill -9 during persist, a job that
ends before persisting what an earlier, interrupted attempt stored) leaves blobs, with patient data in them, that
no row will ever name. The sweep lists the store's frame and metadata blobs and removes those no row refers to,
once no writer can still be about to commit a reference to them. A blob is kept while it is:

- younger than APERTURE_ORPHAN_GRACE_SECONDS (far longer than any write transaction lasts), or
- younger than the submission of any import job not yet ended (less an allowance for the store's clock): a
  running job's frames wait in the store, unreferenced, until it persists, and a job cut off by a crash writes
  the same frame keys again when it runs again (frame ids derive from job, input object and frame index), so the
  blobs of its earlier attempts are kept until it has ended, COMPLETED or FAILED, for good.

References: an ImageFrame row (copies share frame blobs), or the version row of an image set that is not DELETED
(a deleted image set's blobs go with it; purging removes them after its commit, which a crash can cut off). Keys
of any other shape are never touched. Runs when workers start and then every APERTURE_ORPHAN_SWEEP_SECONDS (declared
periodic below, scheduled by the task backend) and from `manage.py sweep_orphans`; what it finds is logged as counts, never as contents.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Iterable

from django.conf import settings
from django.db.models import Min

from imaging.models import ImageFrame, ImageSetState, ImageSetVersion, ImportJob, JobStatus
from imaging.storage import BlobStore, blob_store
from imaging.storage.keys import DATASTORES_PREFIX as PREFIX, FRAME_KEY, METADATA_KEY
from imaging.tasks import periodic, task

logger = logging.getLogger(__name__)

# Job submission times come from this process's clock, blob times from the store's (an S3 server's, say).
STORE_CLOCK_ALLOWANCE_SECONDS = 3600
BATCH = 500


@periodic(every="APERTURE_ORPHAN_SWEEP_SECONDS", at_start=True)
@task
def orphan_blobs_sweep(*, grace_seconds: int | None = None, dry_run: bool = False) -> dict[str, int]:
    """Remove (or with `dry_run` only count) the unreferenced frame and metadata blobs old enough to be orphans.

    Returns the counts: blobs listed, orphaned metadata and frame blobs found, and those removed."""
    grace = settings.APERTURE_ORPHAN_GRACE_SECONDS if grace_seconds is None else grace_seconds
    cutoff = _cutoff(grace)
    store = blob_store()
    counts: Counter[str] = Counter()
    batch: list[tuple[str, str]] = []
    for info in store.list_blobs(PREFIX):
        counts["listed"] += 1
        kind = _kind(info.key)
        if kind is None or info.modified_at >= cutoff:
            continue
        batch.append((kind, info.key))
        if len(batch) >= BATCH:
            _settle(store, batch, counts, dry_run)
            batch = []
    _settle(store, batch, counts, dry_run)
    result = {name: counts[name] for name in ("listed", "metadata", "frames", "removed")}
    logger.info("orphan blob sweep%s: %d blob(s) under %s listed, %d metadata and %d frame blob(s) referenced by "
                "nothing, %d removed", " (dry run)" if dry_run else "", result["listed"], PREFIX,
                result["metadata"], result["frames"], result["removed"])
    return result


def _cutoff(grace_seconds: int) -> float:
    """Blobs modified before this instant (seconds since the epoch) may be orphans."""
    cutoff = time.time() - grace_seconds
    unfinished = ImportJob.objects.filter(status__in=(JobStatus.SUBMITTED, JobStatus.IN_PROGRESS))
    oldest = unfinished.aggregate(oldest=Min("submitted_at"))["oldest"]
    if oldest is not None and oldest.timestamp() - STORE_CLOCK_ALLOWANCE_SECONDS < cutoff:
        cutoff = oldest.timestamp() - STORE_CLOCK_ALLOWANCE_SECONDS
        logger.info("orphan blob sweep: blobs newer than an import job that has not ended are kept")
    return cutoff


def _kind(key: str) -> str | None:
    if FRAME_KEY.match(key):
        return "frames"
    if METADATA_KEY.match(key):
        return "metadata"
    return None


def _settle(store: BlobStore, batch: list[tuple[str, str]], counts: Counter[str], dry_run: bool) -> None:
    """Look up which of a batch of old blobs are referenced, and remove the rest."""
    if not batch:
        return
    frame_keys = [key for kind, key in batch if kind == "frames"]
    metadata_keys = [key for kind, key in batch if kind == "metadata"]
    referenced = set(ImageFrame.objects.filter(blob_key__in=frame_keys).values_list("blob_key", flat=True))
    # metadata_key has no index of its own; the image set id in the key leads to the few rows that could name it.
    image_set_ids = {METADATA_KEY.match(key)["image_set"] for key in metadata_keys}
    referenced |= set(ImageSetVersion.objects.filter(image_set_id__in=image_set_ids)
                      .exclude(state=ImageSetState.DELETED).values_list("metadata_key", flat=True))
    orphans = [(kind, key) for kind, key in batch if key not in referenced]
    counts.update(kind for kind, _key in orphans)
    if not dry_run:
        _remove(store, [key for _kind, key in orphans], counts)


def _remove(store: BlobStore, keys: Iterable[str], counts: Counter[str]) -> None:
    for key in keys:
        store.delete(key)
        counts["removed"] += 1
