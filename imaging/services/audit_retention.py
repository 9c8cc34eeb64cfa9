"""Removing audit events older than the retention (SPEC 13.1), the one way rows ever leave the audit table.

The table's triggers refuse every DELETE unless the row is older than the cut-off of an open prune window (see
migration 0009). `audit_prune` opens that window, deletes, and closes it again inside one transaction, so the
window is never visible to another session and a crash leaves none behind.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from imaging.models import AuditEvent

PRUNE_WINDOW_TABLE = "imaging_auditprunewindow"


def audit_retention_cutoff(*, retention_days: int, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(days=retention_days)


def audit_prune(*, older_than: datetime, dry_run: bool = False) -> int:
    """Delete the events logged before `older_than`; returns how many (or would be, with dry_run)."""
    expired = AuditEvent.objects.filter(event_time__lt=older_than)
    if dry_run:
        return expired.count()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {PRUNE_WINDOW_TABLE} (prune_before) VALUES (%s)",
                           [connection.ops.adapt_datetimefield_value(older_than)])
            deleted, _ = expired.delete()
            cursor.execute(f"DELETE FROM {PRUNE_WINDOW_TABLE}")
    return deleted
