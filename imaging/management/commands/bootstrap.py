"""`manage.py bootstrap`: the first admin user and a full-access key, when none exist.

Prints the login and the key once. Run by the Quick start; running it again changes nothing.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand

from imaging.services.accesskeys import bootstrap_admin


class Command(BaseCommand):
    help = "Create an admin user and an access key if none exist, and print them once."

    def handle(self, *args, **options) -> None:
        password, issued = bootstrap_admin()
        if password:
            self.stdout.write(self.style.SUCCESS("Admin login (shown once): username admin, password " + password))
        if issued:
            self.stdout.write(self.style.SUCCESS("Access key (shown once):"))
            self.stdout.write(f"  AWS_ACCESS_KEY_ID={issued.access_key_id}")
            self.stdout.write(f"  AWS_SECRET_ACCESS_KEY={issued.secret_access_key}")
        if not password and not issued:
            self.stdout.write("An admin user and an active access key already exist.")
