"""`manage.py dicom_listener [--port P] [--ae-title T] [--host H]`: the DICOM listener in its own process (at
scale, beside the web and Celery processes). SIGTERM or SIGINT stop it gracefully (imaging/dimse/listener.py)."""
from __future__ import annotations

import signal
import threading

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from imaging.dimse.listener import Listener
from imaging.dimse.store import jobs_wait
from imaging.models import ae_title_validator
from imaging.tasks import task_backend

JOBS_GRACE_SECONDS = 30


class Command(BaseCommand):
    help = "Run the DICOM listener (C-ECHO, C-STORE and the other DIMSE services) until SIGTERM or SIGINT."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default=None, help="address to listen on (default APERTURE_DICOM_HOST)")
        parser.add_argument("--port", type=int, default=None, help="port (default APERTURE_DICOM_PORT)")
        parser.add_argument("--ae-title", default=None, help="the listener's AE title (default APERTURE_DICOM_AET)")

    def handle(self, *args, host: str | None, port: int | None, ae_title: str | None, **options) -> None:
        port = settings.APERTURE_DICOM_PORT if port is None else port
        tls_only = bool(settings.APERTURE_DICOM_TLS_CERT and settings.APERTURE_DICOM_TLS_PORT)
        if not (0 < port < 65536 or (port == 0 and tls_only)):
            raise CommandError("--port must be between 1 and 65535, or 0 with DICOM TLS configured (TLS only): "
                               "APERTURE_DICOM_TLS_CERT, _KEY and APERTURE_DICOM_TLS_PORT")
        ae_title = ae_title or settings.APERTURE_DICOM_AET
        try:
            ae_title_validator(ae_title)
        except ValidationError as e:
            raise CommandError(f"--ae-title: {e.messages[0]}") from e
        stop = threading.Event()
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
        listener = Listener(host=host or settings.APERTURE_DICOM_HOST, port=port, ae_title=ae_title).start()
        where = f"{listener.host}:{port}" if port else f"{listener.host}:{listener.tls_port} (TLS only)"
        self.stdout.write(f"DICOM listener {ae_title} on {where}", ending="\n")
        self.stdout.flush()
        stop.wait()
        self.stdout.write("DICOM listener stopping", ending="\n")
        listener.stop()
        if task_backend().workers_in_this_process:
            # The import jobs of the last batches run in this process (thread backend): let them end, within the
            # same grace again (at least JOBS_GRACE_SECONDS); one cut off is taken up by the web process's recovery
            # when it next starts.
            left = jobs_wait(max(settings.APERTURE_DICOM_SHUTDOWN_SECONDS, JOBS_GRACE_SECONDS))
            if left:
                self.stderr.write(f"{left} import job(s) still running; the web process's recovery resumes them")
