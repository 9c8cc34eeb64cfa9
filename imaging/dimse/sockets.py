"""Socket options of every DICOM connection, accepted or opened.

TCP_NODELAY: pynetdicom writes a DIMSE message as several small sends (the command PDU, then the data set's), and
with Nagle's algorithm on, the second waits for the peer's delayed ACK of the first, about 40 ms on Linux. Every
C-STORE status and every C-FIND match paid that: Debian's Orthanc, which leaves Nagle on, answers 17 C-STOREs a
second over loopback instead of 150 (bench/dimse_bench.py).
"""
from __future__ import annotations

import logging
import socket

from pynetdicom import evt

logger = logging.getLogger(__name__)


def connection_tune(event) -> None:
    """EVT_CONN_OPEN: switch Nagle's algorithm off on the association's socket."""
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError) as e:  # a socket already closed, or not TCP: nothing to tune
        logger.debug("TCP_NODELAY not set: %s", e)


CONNECTION_HANDLERS = [(evt.EVT_CONN_OPEN, connection_tune)]
