"""`manage.py dicom_node add|list|update|remove`: the DICOM nodes Aperture knows (where C-MOVE and "Send to" deliver,
and with APERTURE_DICOM_ALLOW_ANY=false, who may associate and what they may do).

Writes go through imaging.services.dicom_nodes (checked and audited, as in the admin). `list --json` prints one JSON
array; other tools parse it. `--datastore ID` (repeatable) limits the data stores a node may call; without it (or
after `update --all-datastores`) it may call every data store. `echo` sends a C-ECHO as APERTURE_DICOM_AET and exits non-zero when it fails.
"""
from __future__ import annotations

import argparse
import json

from django.core.management.base import BaseCommand, CommandError

from imaging.errors import ApertureError
from imaging.models import DicomNode
from imaging.services.dicom_nodes import (
    Actor,
    dicom_node_create,
    dicom_node_datastore_ids,
    dicom_node_delete,
    dicom_node_echo,
    dicom_node_get,
    dicom_node_update,
)

_FLAGS = [("store", "may_store", "may send C-STORE to Aperture"),
          ("query", "may_query", "may send C-FIND"),
          ("retrieve", "may_retrieve", "may send C-MOVE and C-GET"),
          ("tls", "use_tls", "Aperture speaks DICOM TLS when it connects to the node")]


def _as_json(node: DicomNode) -> dict:
    return {"aeTitle": node.ae_title, "host": node.host, "port": node.port, "description": node.description,
            "mayStore": node.may_store, "mayQuery": node.may_query, "mayRetrieve": node.may_retrieve,
            "useTls": node.use_tls, "datastores": dicom_node_datastore_ids(node)}


class Command(BaseCommand):
    help = "Add, list, update, remove and echo known DICOM nodes."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a node")
        add.add_argument("--ae-title", required=True)
        add.add_argument("--host", required=True)
        add.add_argument("--port", required=True, type=int)
        add.add_argument("--description", default="")
        for flag, _field, text in _FLAGS:
            add.add_argument(f"--{flag}", action="store_true", help=text)
        add.add_argument("--datastore", action="append", default=[], metavar="ID",
                         help="a data store it may call (repeatable); none: every data store")
        listing = sub.add_parser("list", help="list nodes")
        listing.add_argument("--json", action="store_true", help="print one JSON array")
        update = sub.add_parser("update", help="change a node (only the options given)")
        update.add_argument("--ae-title", required=True, help="the node to change")
        update.add_argument("--new-ae-title")
        update.add_argument("--host")
        update.add_argument("--port", type=int)
        update.add_argument("--description")
        for flag, _field, text in _FLAGS:
            update.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None, help=text)
        calls = update.add_mutually_exclusive_group()
        calls.add_argument("--datastore", action="append", metavar="ID",
                           help="a data store it may call (repeatable; replaces the list)")
        calls.add_argument("--all-datastores", action="store_true", help="it may call every data store")
        remove = sub.add_parser("remove", help="remove a node")
        remove.add_argument("--ae-title", required=True)
        echo = sub.add_parser("echo", help="C-ECHO a node")
        echo.add_argument("--ae-title", required=True)

    def handle(self, *args, **options) -> None:
        action = options["action"]
        actor = Actor(user_agent=f"manage.py dicom_node {action}")
        try:
            if action == "add":
                node = dicom_node_create(actor=actor, ae_title=options["ae_title"], host=options["host"],
                                         port=options["port"], description=options["description"],
                                         datastore_ids=options["datastore"],
                                         **{field: options[flag] for flag, field, _text in _FLAGS})
                self.stdout.write(f"Added {node}")
            elif action == "list":
                self._list(as_json=options["json"])
            elif action == "update":
                node = dicom_node_get(ae_title=options["ae_title"])
                fields = {"ae_title": options["new_ae_title"], "host": options["host"], "port": options["port"],
                          "description": options["description"],
                          **{field: options[flag] for flag, field, _text in _FLAGS}}
                fields = {name: value for name, value in fields.items() if value is not None}
                datastore_ids = [] if options["all_datastores"] else options["datastore"]
                if not fields and datastore_ids is None:
                    raise CommandError("Nothing to change: give at least one option")
                node = dicom_node_update(actor=actor, node_id=node.pk, datastore_ids=datastore_ids, **fields)
                self.stdout.write(f"Updated {node}")
            elif action == "remove":
                node = dicom_node_get(ae_title=options["ae_title"])
                dicom_node_delete(actor=actor, node_id=node.pk)
                self.stdout.write(f"Removed {node}")
            else:
                result = dicom_node_echo(dicom_node_get(ae_title=options["ae_title"]), actor=actor)
                if not result.ok:
                    raise CommandError(result.message)
                self.stdout.write(result.message)
        except ApertureError as e:
            raise CommandError(e.message) from e

    def _list(self, *, as_json: bool) -> None:
        nodes = list(DicomNode.objects.all())
        if as_json:
            self.stdout.write(json.dumps([_as_json(node) for node in nodes]))
            return
        for node in nodes:
            may = ",".join(name for name, allowed in (("store", node.may_store), ("query", node.may_query),
                                                      ("retrieve", node.may_retrieve)) if allowed) or "-"
            self.stdout.write("\t".join([node.ae_title, f"{node.host}:{node.port}", may,
                                         "tls" if node.use_tls else "plain", node.description]))
