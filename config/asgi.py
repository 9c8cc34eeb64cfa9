"""ASGI entry point: HTTP through Django, websockets through Channels, on one server (`manage.py serve`).

`/healthz` and `/readyz` are answered before anything else (imaging/probes.py). Other HTTP requests pass CORS
(imaging/cors.py: DICOMweb preflights are answered there, and every DICOMweb response, a 413 included, gets its CORS
headers there) and then the body limits (imaging/body_limits.py); websocket handshakes must come from the server's
own origin or an allowed embedding portal (viewer/origins.py) before the session is even looked at.
"""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.asgi_handler import one_hop_asgi_application  # noqa: E402

django_asgi_app = one_hop_asgi_application()  # Django's handler, one thread switch per request (see there)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from imaging.body_limits import BodyLimitMiddleware  # noqa: E402
from imaging.cors import CorsMiddleware  # noqa: E402
from imaging.probes import HealthProbes  # noqa: E402
from imaging.tasks import task_backend  # noqa: E402
from viewer.origins import SameOriginValidator  # noqa: E402
from viewer.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": HealthProbes(CorsMiddleware(BodyLimitMiddleware(django_asgi_app))),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Recovery and periodic work where this process is the worker (thread and eager backends); Celery workers do their own.
task_backend().server_started()
