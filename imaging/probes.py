"""`/healthz` and `/readyz` for load balancers, process managers and orchestrators (issue 13 item 8).

An ASGI middleware in front of everything else, so that a probe never meets what guards the application: no login,
no SigV4, no body limits, no throttling, no session, and no ALLOWED_HOSTS check (probes come from a load balancer or
an orchestrator that names the process by its address, not by the site's host name). What it answers holds no patient
data, no secrets and no connection strings: only check names and fixed words.

- `GET /healthz`: the process is alive and its event loop answers. No I/O. 200 `{"status": "ok"}`.
- `GET /readyz`: every dependency answers (imaging.services.health). 200 when all do, else 503 naming the ones that
  did not. The checks run in a thread, never on the event loop.
Anything else passes through untouched.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable

from imaging.services.health import health_ready

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PROBE_PATHS = ("/healthz", "/readyz")


async def _answer(send: Send, status: int, body: dict[str, Any], *, head: bool) -> None:
    content = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b"" if head else content})


class HealthProbes:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        if scope["method"] not in ("GET", "HEAD"):
            await _answer(send, 405, {"status": "method not allowed"}, head=False)
            return
        if scope["path"] == "/healthz":
            await _answer(send, 200, {"status": "ok"}, head=head)
            return
        readiness = await asyncio.to_thread(health_ready)
        if readiness.ready:
            await _answer(send, 200, {"status": "ok", "checks": readiness.checks}, head=head)
        else:
            await _answer(send, 503, {"status": "unavailable", "checks": readiness.checks,
                                      "failed": readiness.failed}, head=head)
