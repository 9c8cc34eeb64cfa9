"""`manage.py accesstoken create|list|revoke`: personal access tokens (bearer credentials for DICOMweb) from the
command line.

`create --json` prints exactly one JSON line {"token": "...", "tokenId": "...", "expiresAt": ...}; other tools parse
it. The token is shown this once and only its hash is stored.
"""
from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from imaging.errors import ApertureError
from imaging.models import AccessToken
from imaging.services.accesstokens import accesstoken_create, accesstoken_revoke


class Command(BaseCommand):
    help = "Create, list and revoke personal access tokens for DICOMweb."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token (printed once)")
        create.add_argument("--json", action="store_true", help="print one JSON line")
        create.add_argument("--name", default="")
        create.add_argument("--user", help="owner username (default: the first superuser)")
        create.add_argument("--datastore", help="limit the token to this data store id")
        create.add_argument("--days", type=int, help="expire after this many days (default: never)")
        sub.add_parser("list", help="list tokens (never their secrets)")
        revoke = sub.add_parser("revoke", help="revoke a token")
        revoke.add_argument("token_id")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "create":
            self._create(options)
        elif action == "list":
            for token in AccessToken.objects.select_related("user"):
                state = "revoked" if token.revoked_at else "active"
                expires = token.expires_at.isoformat() if token.expires_at else "never"
                last = token.last_used_at.isoformat() if token.last_used_at else "never"
                self.stdout.write("\t".join([token.token_id, token.user.get_username(), token.datastore_id or "*",
                                             state, expires, last, token.name]))
        else:
            try:
                accesstoken_revoke(token_id=options["token_id"])
            except ApertureError as e:
                raise CommandError(e.message) from e
            self.stdout.write(f"Revoked {options['token_id']}")

    def _create(self, options) -> None:
        User = get_user_model()
        if options["user"]:
            user = User.objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']}")
        else:
            user = User.objects.filter(is_superuser=True).order_by("pk").first()
            if user is None:
                raise CommandError("No superuser exists: pass --user or run manage.py bootstrap")
        try:
            issued = accesstoken_create(user=user, name=options["name"], datastore_id=options["datastore"],
                                        days=options["days"])
        except ApertureError as e:
            raise CommandError(e.message) from e
        expires = issued.expires_at.isoformat() if issued.expires_at else None
        if options["json"]:
            self.stdout.write(json.dumps({"token": issued.token, "tokenId": issued.token_id, "expiresAt": expires}))
        else:
            self.stdout.write(f"Token: {issued.token}\nExpires: {expires or 'never'}")
            self.stdout.write("Keep the token now: only its hash is stored and it is never shown again.")
