"""Database connections stay bounded at scale (issue 13 item 4): two web processes on one PostgreSQL database, each
with a pool of APERTURE_DB_POOL_MAX connections, answer 1,500 signed API calls made 16 at a time, and the database
never sees more connections than the two pools hold. With persistent connections under ASGI (the old
`conn_max_age=60`) each request thread kept one of its own, and two processes ran PostgreSQL out of connections."""
from __future__ import annotations

import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from cryptography.fernet import Fernet

from tests.clients import imaging_client
from tests.personas import live_key
from tests.servers import PostgresDatabase, start_web_processes

pytestmark = [pytest.mark.live, pytest.mark.slow]

POOL_MAX = 3
PROCESSES = 2
REQUESTS = 1500
CLIENTS = 16
# The pools, and room for a connection a process opens outside them (none is expected).
BOUND = PROCESSES * POOL_MAX + 2


def postgres_base() -> str:
    url = os.environ.get("DATABASE_URL") or ""
    return url.rsplit("/", 1)[0] if url.startswith("postgres") else os.environ.get(
        "APERTURE_TEST_POSTGRES", "postgres://root@127.0.0.1:5432")


@pytest.fixture(scope="module")
def database():
    database = PostgresDatabase(postgres_base() + "/postgres")
    try:
        database.create()
    except psycopg.OperationalError as e:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL is not reachable: {e}")
    yield database
    database.drop()


class ConnectionCounter:
    """Counts the database's connections in pg_stat_activity, again and again, from a thread of its own."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.counts: list[int] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        with self.database._admin() as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                (self.database.name,)).fetchone()[0]

    def _run(self) -> None:
        while not self.stopped.wait(0.05):
            self.counts.append(self.count())

    def __enter__(self) -> "ConnectionCounter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join(10)


def test_two_web_processes_keep_their_database_connections_within_their_pools(database):
    servers = start_web_processes(PROCESSES, {
        "DATABASE_URL": database.url, "APERTURE_DB_POOL_MAX": str(POOL_MAX),
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        "APERTURE_KEY_ENCRYPTION_KEY": os.environ.get("APERTURE_KEY_ENCRYPTION_KEY") or Fernet.generate_key().decode(),
    })
    try:
        key = live_key(servers[0])
        clients = [imaging_client(server.url, key) for server in servers]
        clients[0].create_datastore(datastoreName="connections")

        def call(number: int) -> int:
            return len(clients[number % PROCESSES].list_datastores()["datastoreSummaries"])

        with ConnectionCounter(database) as counter, ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(call, range(REQUESTS)))
        assert answers == [1] * REQUESTS
        assert len(counter.counts) > 10 and max(counter.counts) <= BOUND, max(counter.counts)
        assert counter.count() <= BOUND
        assert all(server.process.poll() is None for server in servers)
    finally:
        for server in reversed(servers):
            server.stop()
