"""`manage.py serve [ADDR:PORT] [--workers N]`: the API, the viewer, its websockets and the admin on one port.

The server is uvicorn, chosen for flow control: it hands a request body to the application only as fast as the
application reads it, so the body limits of imaging/body_limits.py hold before anything is buffered (daphne reads
every body whole into memory before the application sees the request). Forwarded headers are not rewritten here:
the application reads X-Forwarded-For itself, and only from APERTURE_TRUSTED_PROXIES.

/metrics adds up the web processes that share PROMETHEUS_MULTIPROC_DIR (imaging/metrics.py): this command empties
that folder when it is the first web process on it, and with `--workers N` and the variable unset it sets
DATA_DIR/metrics itself before uvicorn starts the workers (they inherit the environment and import prometheus_client
afresh). Separate `serve` processes (one per port, behind a proxy) must be given the same folder in the environment.

With the embedded default (APERTURE_DICOM_LISTEN true, APERTURE_DICOM_PORT not 0, or 0 with DICOM TLS: TLS only) the
DICOM listener runs in background threads of this process (imaging/dimse/listener.py) and stops gracefully when
uvicorn has stopped.
"""
from __future__ import annotations

import os
import re

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from imaging.dimse.listener import listener_start_embedded
from imaging.tasks import task_backend

# Viewer messages are JSON of at most 4 KiB; nothing larger is ever accepted on a websocket.
WEBSOCKET_MAX_MESSAGE_BYTES = 64 * 1024


class Command(BaseCommand):
    help = "Serve Aperture (HTTP and websockets) with uvicorn."

    def add_arguments(self, parser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000", help="ADDRESS:PORT (default 127.0.0.1:8000)")
        parser.add_argument("--workers", type=int, default=1, help="web processes (default 1)")
        parser.add_argument("--reload", action="store_true", help="restart when the code changes (development)")

    def handle(self, *args, addrport: str, workers: int, reload: bool, **options) -> None:
        match = re.fullmatch(r"(?:\[?([^\]]*)\]?:)?(\d+)", addrport)
        if match is None or workers < 1:
            raise CommandError("usage: manage.py serve [ADDRESS:]PORT [--workers N]")
        host, port = match.group(1) or "127.0.0.1", int(match.group(2))
        if workers > 1 and settings.CHANNEL_LAYERS["default"]["BACKEND"].endswith("InMemoryChannelLayer"):
            # Logout and revocation reach open viewer sockets through the channel layer: an in-memory one reaches
            # only the process it lives in.
            raise CommandError("--workers above 1 needs the Redis channel layer (APERTURE_TASKS=celery or "
                               "APERTURE_REDIS_CHANNELS=true)")
        if workers > 1 and task_backend().workers_in_this_process:
            # Each process would be the only worker: each would take every job in progress for a crashed one and run
            # it again beside the process that holds it.
            raise CommandError("--workers above 1 needs Celery workers for background tasks (APERTURE_TASKS=celery)")
        self._prepare_metrics(workers)
        dicom_listener = listener_start_embedded()
        try:
            self._run(host, port, workers, reload)
        finally:
            if dicom_listener is not None:
                dicom_listener.stop()

    def _run(self, host: str, port: int, workers: int, reload: bool) -> None:
        uvicorn.run(
            "config.asgi:application",
            host=host,
            port=port,
            workers=workers,
            reload=reload,
            proxy_headers=False,
            server_header=False,
            ws_max_size=WEBSOCKET_MAX_MESSAGE_BYTES,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            timeout_keep_alive=15,
            # Django's LOGGING applies, so access lines pass the filter that removes UIDs and link tokens.
            log_config=None,
            lifespan="off",
        )

    def _prepare_metrics(self, workers: int) -> None:
        from imaging.metrics import multiprocess_dir_prepare

        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder and workers > 1:
            folder = os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.DATA_DIR / "metrics")
        if folder:
            multiprocess_dir_prepare(path=folder)
