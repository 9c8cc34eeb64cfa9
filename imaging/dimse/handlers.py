"""The pynetdicom (event, handler) pairs the listener binds to every association. Each capability adds its own
line here; the handlers themselves live in their modules. The handlers that use the database in a long-lived
association (C-STORE, C-GET, C-MOVE) give their PostgreSQL connection back to the pool when they are done
(connection_releasing); C-FIND does so itself."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

from django.db import connection
from pynetdicom import evt

from imaging.dimse import find, retrieve, store
from imaging.dimse.sockets import connection_tune


def connection_release() -> None:
    """Give this thread's PostgreSQL connection back to the pool now: an association's thread lives as long as the
    association (an idle modality may hold one for minutes), and a connection it kept would be missing from the pool
    for all that time. SQLite keeps its connection with the thread (opening one is cheap, and an in-memory test
    database lives in it)."""
    if connection.vendor != "sqlite":
        connection.close()


def connection_releasing(handler: Callable) -> Callable:
    """`handler` with connection_release after it has returned, or for a generator handler (C-GET, C-MOVE) after it
    is exhausted or closed."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def generate_then_release(event):
            try:
                yield from handler(event)
            finally:
                connection_release()
        return generate_then_release

    @functools.wraps(handler)
    def handle_then_release(event):
        try:
            return handler(event)
        finally:
            connection_release()
    return handle_then_release


def echo_handle(event) -> int:
    """C-ECHO: Success. An association that reached here was accepted, which is all a verification asks."""
    return 0x0000


def handlers() -> list[tuple]:
    return [
        (evt.EVT_CONN_OPEN, connection_tune),
        (evt.EVT_C_ECHO, echo_handle),
        (evt.EVT_C_STORE, connection_releasing(store.store_handle)),
        (evt.EVT_C_FIND, find.handle_find),
        (evt.EVT_C_GET, connection_releasing(retrieve.handle_get)),
        (evt.EVT_C_MOVE, connection_releasing(retrieve.handle_move)),
        (evt.EVT_RELEASED, store.association_end),
        (evt.EVT_ABORTED, store.association_end),
        (evt.EVT_CONN_CLOSE, store.association_end),
    ]
