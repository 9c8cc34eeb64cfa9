"""The pynetdicom (event, handler) pairs the listener binds to every association. Each capability adds its own
line here; the handlers themselves live in their modules."""
from __future__ import annotations

from pynetdicom import evt

from imaging.dimse import find, retrieve, store
from imaging.dimse.sockets import connection_tune


def echo_handle(event) -> int:
    """C-ECHO: Success. An association that reached here was accepted, which is all a verification asks."""
    return 0x0000


def handlers() -> list[tuple]:
    return [
        (evt.EVT_CONN_OPEN, connection_tune),
        (evt.EVT_C_ECHO, echo_handle),
        (evt.EVT_C_STORE, store.store_handle),
        (evt.EVT_C_FIND, find.handle_find),
        (evt.EVT_C_GET, retrieve.handle_get),
        (evt.EVT_C_MOVE, retrieve.handle_move),
        (evt.EVT_RELEASED, store.association_end),
        (evt.EVT_ABORTED, store.association_end),
        (evt.EVT_CONN_CLOSE, store.association_end),
    ]
