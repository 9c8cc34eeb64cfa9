"""The ASGI server for `web` in deploy/Procfile: uvicorn (`manage.py serve`) against daphne, same app, same data.

    .venv/bin/python bench/asgi_bench.py [--requests 2000] [--clients 1,16]

Starts one web process with each server on a loopback port (embedded SQLite default, a throw-away data dir) and
sends GET requests to the login page (template rendering, session middleware, no writes) from N client threads,
each on its own keep-alive connection. Prints requests/s and p50/p99 latency per server and client count.
"""
from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, wait_for_http  # noqa: E402

PATH = "/accounts/login/"


def server_command(kind: str, port: int) -> list[str]:
    if kind == "uvicorn":
        return [sys.executable, "manage.py", "serve", f"127.0.0.1:{port}"]
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]


def hammer(port: int, requests: int, clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        own = []
        for _ in range(per_client):
            start = time.perf_counter()
            connection.request("GET", PATH)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
            own.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(own)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", default="1,16")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="aperture-asgi-bench-"))
    env = {**os.environ, "APERTURE_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "APERTURE_LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    rows = []
    try:
        for kind in ("uvicorn", "daphne"):
            port = free_port()
            process = subprocess.Popen(server_command(kind, port), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                wait_for_http(f"http://127.0.0.1:{port}{PATH}")
                hammer(port, 100, 4)  # warm up
                for clients in [int(c) for c in args.clients.split(",")]:
                    elapsed, latencies = hammer(port, args.requests, clients)
                    latencies.sort()
                    rows.append((kind, clients, len(latencies) / elapsed, statistics.median(latencies) * 1000,
                                 latencies[int(len(latencies) * 0.99) - 1] * 1000))
            finally:
                process.terminate()
                process.wait(10)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"GET {PATH}, one web process each, {os.cpu_count()} cores")
    print(f"{'server':<10}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    for kind, clients, rate, p50, p99 in rows:
        print(f"{kind:<10}{clients:>8}{rate:>9.0f}{p50:>9.1f}{p99:>9.1f}")


if __name__ == "__main__":
    main()
