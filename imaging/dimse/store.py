"""C-STORE SCP (placeholder until the spool lands)."""
from __future__ import annotations


def store_handle(event) -> int:
    return 0xA700


def association_end(event) -> None:
    from django.db import connection

    connection.close()


def spools_recover() -> None:
    pass


def spools_tick() -> None:
    pass


def spools_finish_all() -> None:
    pass
