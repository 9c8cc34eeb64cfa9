"""Every DICOM connection, accepted by the listener or opened by Send to and C-MOVE, has Nagle's algorithm off
(imaging/dimse/sockets.py): with it on, each DIMSE answer waited for a delayed ACK."""
from __future__ import annotations

import socket
from types import SimpleNamespace

from pynetdicom import evt

from imaging.dimse.handlers import handlers
from imaging.dimse.sockets import CONNECTION_HANDLERS, connection_tune


def _event_on(sock: socket.socket) -> SimpleNamespace:
    return SimpleNamespace(assoc=SimpleNamespace(dul=SimpleNamespace(socket=SimpleNamespace(socket=sock))))


def test_an_opened_connection_gets_tcp_nodelay():
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            connection_tune(_event_on(accepted))
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        connection_tune(_event_on(client))
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_a_closed_or_missing_socket_is_left_alone():
    closed = socket.socket()
    closed.close()
    connection_tune(_event_on(closed))
    connection_tune(SimpleNamespace(assoc=SimpleNamespace(dul=SimpleNamespace(socket=None))))


def test_the_listener_and_outgoing_associations_bind_it():
    assert (evt.EVT_CONN_OPEN, connection_tune) in handlers()
    assert (evt.EVT_CONN_OPEN, connection_tune) in CONNECTION_HANDLERS
