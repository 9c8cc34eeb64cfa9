"""`manage.py accesskey create|list|deactivate`: SigV4 access keys from the command line.

`create --json` prints exactly one JSON line {"AccessKeyId", "SecretAccessKey"}; other tools parse it.
The secret is shown this once and stored only encrypted.
"""
from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from imaging.errors import ApertureError
from imaging.models import AccessKey, ManagedPolicy
from imaging.services.accesskeys import accesskey_create, accesskey_deactivate

MANAGED = [ManagedPolicy.FULL_ACCESS.value, ManagedPolicy.READ_ONLY.value]


class Command(BaseCommand):
    help = "Create, list and deactivate API access keys."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key (the secret is printed once)")
        create.add_argument("--json", action="store_true", help="print one JSON line")
        create.add_argument("--name", default="")
        create.add_argument("--policy", choices=MANAGED, default=ManagedPolicy.FULL_ACCESS.value)
        create.add_argument("--policy-file", help="a custom IAM-style policy document (JSON file)")
        create.add_argument("--user", help="owner username (default: the first superuser, created if needed)")
        sub.add_parser("list", help="list keys (never secrets)")
        deactivate = sub.add_parser("deactivate", help="deactivate a key")
        deactivate.add_argument("access_key_id")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "create":
            self._create(options)
        elif action == "list":
            for key in AccessKey.objects.select_related("user"):
                state = "active" if key.is_active else "inactive"
                last = key.last_used_at.isoformat() if key.last_used_at else "never"
                self.stdout.write(f"{key.access_key_id}\t{key.user.get_username()}\t{key.policy}\t{state}\t{last}\t{key.name}")
        else:
            try:
                accesskey_deactivate(access_key_id=options["access_key_id"])
            except ApertureError as e:
                raise CommandError(e.message) from e
            self.stdout.write(f"Deactivated {options['access_key_id']}")

    def _create(self, options) -> None:
        User = get_user_model()
        if options["user"]:
            user = User.objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']}")
        else:
            user = User.objects.filter(is_superuser=True).order_by("pk").first()
            if user is None:
                user = User.objects.create_superuser(username="admin", email="", password=None)
        policy, document = options["policy"], None
        if options["policy_file"]:
            try:
                with open(options["policy_file"]) as handle:
                    document = json.load(handle)
            except (OSError, json.JSONDecodeError) as e:
                raise CommandError(f"Cannot read the policy file: {e}") from e
            policy = ManagedPolicy.CUSTOM
        try:
            issued = accesskey_create(user=user, name=options["name"], policy=policy, policy_document=document)
        except ApertureError as e:
            raise CommandError(e.message) from e
        if options["json"]:
            self.stdout.write(json.dumps({"AccessKeyId": issued.access_key_id, "SecretAccessKey": issued.secret_access_key}))
        else:
            self.stdout.write(f"AccessKeyId:     {issued.access_key_id}\nSecretAccessKey: {issued.secret_access_key}")
            self.stdout.write("Keep the secret now: it is stored encrypted and never shown again.")
