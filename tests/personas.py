"""The people in the tests, made in one place (as healthchecks' hc/test.py makes alice, bob and charlie).

- an **admin**: staff and superuser; sees every data store and the admin pages;
- a **clinician**: an ordinary user granted some data stores (DatastoreGrant), nothing else;
- an **outsider**: an ordinary user with no grants at all;
- a **user**: the plain account the others are made from, for tests where the role is beside the point;
- **keys**: access keys for the API, full access or read-only (AWS managed policies) or a custom policy file.

Two halves, one vocabulary: the functions without a prefix write through the ORM of the test's own database (the
test needs `django_db`); the `live_` ones ask a live server (tests/servers.py) through `manage.py`, so the rows land
in that server's database. Every persona shares PASSWORD unless a test says otherwise.

It must not import a conftest or register fixtures (tests/conftest.py does that)."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model

from imaging.models import DatastoreGrant
from tests.servers import ApertureServer

PASSWORD = "correct horse battery"
FULL_ACCESS = "AWSHealthImagingFullAccess"
READ_ONLY = "AWSHealthImagingReadOnlyAccess"


# In process: the test's own database.

def user(username: str, *, password: str | None = None, grants: Iterable[Any] = (), staff: bool = False,
         superuser: bool = False) -> Any:
    """An account with the given grants (data stores or their ids); no password means it cannot sign in."""
    account = get_user_model().objects.create_user(username, password=password, is_staff=staff or superuser,
                                                   is_superuser=superuser)
    for datastore in grants:
        DatastoreGrant.objects.create(user=account, datastore_id=getattr(datastore, "pk", datastore))
    return account


def admin(username: str = "admin", *, password: str = PASSWORD) -> Any:
    return user(username, password=password, superuser=True)


def clinician(*datastores: Any, username: str = "clinician", password: str = PASSWORD) -> Any:
    """A clinician who may see `datastores` (Datastore rows or ids) and nothing else."""
    return user(username, password=password, grants=datastores)


def outsider(username: str = "outsider", *, password: str = PASSWORD) -> Any:
    return user(username, password=password)


# On a live server: its own database, reached through manage.py.

def live_user(server: ApertureServer, username: str, *, password: str | None = None, grants: Iterable[str] = (),
              staff: bool = False, superuser: bool = False) -> None:
    """The live counterpart of `user`: an account on `server`, granted the data stores whose ids are `grants`."""
    script = [
        "from django.contrib.auth import get_user_model; from imaging.models import DatastoreGrant",
        f"u = get_user_model().objects.create_user({username!r}, password={password!r},"
        f" is_staff={staff or superuser}, is_superuser={superuser})",
        *(f"DatastoreGrant.objects.create(user=u, datastore_id={datastore_id!r})" for datastore_id in grants),
    ]
    server.manage("shell", "-c", "; ".join(script))


def live_admin(server: ApertureServer, username: str = "admin", *, password: str = PASSWORD) -> None:
    live_user(server, username, password=password, superuser=True)


def live_clinician(server: ApertureServer, *datastore_ids: str, username: str = "clinician",
                   password: str | None = PASSWORD) -> None:
    live_user(server, username, password=password, grants=datastore_ids)


def live_outsider(server: ApertureServer, username: str = "outsider", *, password: str | None = PASSWORD) -> None:
    live_user(server, username, password=password)


def live_key(server: ApertureServer, *, username: str | None = None, policy: str = FULL_ACCESS,
             policy_file: Path | None = None) -> dict[str, str]:
    """An access key on `server` for `username` (default: the first superuser, made if there is none), under a
    managed `policy` or the custom policy document in `policy_file`; returns AccessKeyId and SecretAccessKey."""
    args = ["accesskey", "create", "--json"]
    args += ["--policy-file", str(policy_file)] if policy_file else ["--policy", policy]
    if username:
        args += ["--user", username]
    return json.loads(server.manage(*args).stdout.strip().splitlines()[-1])
