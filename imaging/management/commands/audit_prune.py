"""`manage.py audit_prune`: remove audit events older than APERTURE_AUDIT_RETENTION_DAYS (default 7 years). The
only way audit rows are ever deleted; run it from cron as often as suits."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from imaging.services.audit_retention import audit_prune, audit_retention_cutoff


class Command(BaseCommand):
    help = "Delete audit events older than APERTURE_AUDIT_RETENTION_DAYS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only count the events that would be deleted")

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        cutoff = audit_retention_cutoff(retention_days=settings.APERTURE_AUDIT_RETENTION_DAYS)
        count = audit_prune(older_than=cutoff, dry_run=dry_run)
        verb = "would be deleted" if dry_run else "deleted"
        self.stdout.write(f"{count} audit event(s) logged before {cutoff.isoformat()} {verb}")
