"""Two things a web process does so that a warm request costs what its view costs (bench/dicomweb_bench.py).

1. Django's ASGI handler, with the middleware chain and the view run in one worker thread per request.

Every view here is synchronous (the ORM, SigV4, blob reads), and so is all of the middleware that matters. Django's
own ASGIHandler builds the chain in async mode all the same: each MiddlewareMixin then hops to a worker thread for
its process_request and back for its process_response, WhiteNoise (sync only) hops back to the event loop for the
rest of the chain, and the view hops to the thread again, about twenty thread switches per request. On a busy
machine each switch waits for a core, and a warm GetImageFrame spent most of its time in them (bench/dicomweb_bench.py
measured it). Here the chain is built in sync mode and called once through sync_to_async: the request crosses to a
thread once and back once. Reading the body, sending the response (streamed ones included, async iterators too) and
the request signals are ASGIHandler's, unchanged.

2. On SQLite, one connection held open for the life of the process. Each request runs in a thread of its own and
so opens and closes its own connection; when the one it closes is the database's last, SQLite checkpoints the WAL
into the database and deletes it, with the fsyncs that takes, and the next request creates it again. That was the
largest single cost of a GetImageFrame over HTTP. The kept connection holds no transaction and no lock.

3. Everything alive once the application is built (Django, the models, pydicom's dictionaries: hundreds of thousands
of objects) is moved out of the collector's sight with gc.freeze(). It is never garbage, yet each full collection
walked all of it: pauses of tens of milliseconds in the p95 of a QIDO answer that allocates a few thousand dicts.
"""
from __future__ import annotations

import gc
import sqlite3
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

_kept: list[sqlite3.Connection] = []


class OneHopASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request):
        # thread_sensitive: the same thread as the request's other sync work (request_finished closes its connection)
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


def one_hop_asgi_application() -> OneHopASGIHandler:
    """get_asgi_application(), with this handler, and the SQLite database kept open."""
    import django

    django.setup(set_prefix=False)
    sqlite_keep_open()
    handler = OneHopASGIHandler()
    gc.collect()
    gc.freeze()
    return handler


def sqlite_keep_open() -> None:
    """Open the SQLite database once more and never close it (see the module docstring); nothing for PostgreSQL,
    or when the database file is not there yet (it is never created here)."""
    database = settings.DATABASES["default"]
    if _kept or not database["ENGINE"].endswith("sqlite3") or not Path(database["NAME"]).is_file():
        return
    try:
        connection = sqlite3.connect(f"{Path(database['NAME']).resolve().as_uri()}?mode=rw", uri=True,
                                     check_same_thread=False)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()  # maps the WAL index: now it counts
    except sqlite3.Error:
        return
    _kept.append(connection)
