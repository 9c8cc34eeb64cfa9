"""The render websocket: the client asks for frames, the server answers with binary messages.

Client -> server (text, JSON):
  {"type": "open", "datastore": id, "imageSet": id, "series": uid?}
  {"type": "render", "id": n, "frame": i, "window": [center, width] | null, "invert": bool,
   "size": [w, h], "quality": 1..100, "format": "jpeg" | "png"}
Server -> client:
  text {"type": "opened", ...} with the frame list and display metadata; {"type": "error", "id"?, "message"};
  {"type": "dropped", "id"} for a request superseded before it was rendered;
  binary: 4-byte big-endian header length, the JSON header ({"id", "frame", "window", ...}), the image bytes;
  text {"type": "ended", "message"} before the server closes the socket (code 4401) because the session, user or
  share link that opened it has ended (viewer.socket_sessions); the client then stops reconnecting;
  text {"type": "ping", "interval": seconds} every APERTURE_WS_PING_SECONDS, which the client answers with
  {"type": "pong"}.

Keepalive: the ping is an application message, not only the ASGI server's protocol-level ping, because it proves
more: that this consumer (and its channel-layer receive loop) is alive, and it is visible to browser code, which
cannot see protocol pings; the client reconnects when pings stop coming. It also keeps idle sockets from being
closed by a proxy's read timeout (nginx: 60 s by default).

Database work runs through `database_sync_to_async`, which returns the thread's connection (to the pool, at scale)
after each call: a plain `sync_to_async` thread would keep its connection checked out for as long as it lives.

Only the newest pending render request is kept: a request the user scrolled past is dropped, not rendered. After
each render the neighbouring frames are decoded ahead. Malformed or hostile messages get an error message and the
connection stays up; anonymous connections are refused.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import struct
from typing import Any

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from imaging.errors import ApertureError
from imaging.render import frames
from imaging.render.pixels import RenderError, Window
from imaging.services.audit import audit_record
from viewer import selectors
from viewer.socket_sessions import authority_problem, session_touch, share_link_deadline, socket_authority

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
# Close code for a socket whose session, user or share link is not (or no longer) valid: the client must not retry.
CLOSE_UNAUTHORIZED = 4401
_ID = re.compile(r"[0-9a-z]{32}")
_UID = re.compile(r"[0-9.]{1,64}")
PREFETCH_AHEAD = 4


class BadMessage(ValueError):
    pass


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise BadMessage(f"{name} must be a number between {low} and {high}")
    return float(value)


def parse_render(message: dict[str, Any]) -> dict[str, Any]:
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise BadMessage("id must be an integer")
    frame = int(_number(message.get("frame"), "frame", 0, 1_000_000))
    window = message.get("window")
    if window is not None:
        if not isinstance(window, list) or len(window) != 2:
            raise BadMessage("window must be [center, width] or null")
        window = Window(_number(window[0], "window center", -1e7, 1e7), _number(window[1], "window width", 1e-6, 1e7))
    size = message.get("size") or [1024, 1024]
    if not isinstance(size, list) or len(size) != 2:
        raise BadMessage("size must be [width, height]")
    size = (int(_number(size[0], "width", 16, 4096)), int(_number(size[1], "height", 16, 4096)))
    fmt = message.get("format", "jpeg")
    if fmt not in ("jpeg", "png"):
        raise BadMessage("format must be jpeg or png")
    return {"id": request_id, "frame": frame, "window": window, "invert": bool(message.get("invert", False)),
            "size": size, "quality": int(_number(message.get("quality", 85), "quality", 1, 100)), "format": fmt}


class RenderConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        self.share_token = (query.get("share") or [None])[0]
        self.authority = await database_sync_to_async(socket_authority)(
            user=user, session=self.scope.get("session"), share_token=self.share_token)
        if self.authority is None:
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.view = None
        self.series: str | None = None
        self.pending: dict[str, Any] | None = None
        self.wakeup = asyncio.Event()
        self.active = False
        await self.accept()
        for group in self.authority.groups():
            await self.channel_layer.group_add(group, self.channel_name)
        self.worker = asyncio.ensure_future(self._render_loop())
        self.watchdog = asyncio.ensure_future(self._watch_authority())
        self.keepalive = asyncio.ensure_future(self._keep_alive())

    async def disconnect(self, code: int) -> None:
        for task in (getattr(self, "worker", None), getattr(self, "watchdog", None), getattr(self, "keepalive", None)):
            if task is not None:
                task.cancel()
        authority = getattr(self, "authority", None)
        if authority is not None:
            for group in authority.groups():
                await self.channel_layer.group_discard(group, self.channel_name)

    async def socket_end(self, event: dict[str, Any]) -> None:
        """A logout, deactivation or revocation ended what opened this socket (viewer.socket_sessions)."""
        await self._end(str(event.get("reason") or "This session has ended."))

    async def _end(self, reason: str) -> None:
        self.view, self.pending = None, None
        await self.send(text_data=json.dumps({"type": "ended", "message": reason}))
        await self.close(code=CLOSE_UNAUTHORIZED)

    async def _still_allowed(self) -> bool:
        problem = await database_sync_to_async(authority_problem)(self.authority)
        if problem is not None:
            await self._end(problem)
            return False
        return True

    async def _watch_authority(self) -> None:
        """Re-checks what no message announces (an expired link, a timed-out session, a removed grant)."""
        deadline = await database_sync_to_async(share_link_deadline)(self.authority)
        while True:
            delay = settings.APERTURE_WS_RECHECK_SECONDS
            if deadline is not None:
                delay = max(0.0, min(delay, (deadline - timezone.now()).total_seconds() + 0.5))
            await asyncio.sleep(delay)
            if not await self._still_allowed():
                return
            if self.view is not None and not await database_sync_to_async(selectors.can_still_view)(
                    user=self.scope.get("user"), share_token=self.share_token, view=self.view):
                await self._end("You no longer have access to these images.")
                return
            if self.active and self.authority.session_key:
                self.active = False
                await database_sync_to_async(session_touch)(self.authority.session_key)
            # Group membership expires in the channel layer (a day in channels-redis): joining again keeps a socket
            # open for longer reachable by logout and revocation.
            for group in self.authority.groups():
                await self.channel_layer.group_add(group, self.channel_name)

    async def _keep_alive(self) -> None:
        interval = settings.APERTURE_WS_PING_SECONDS
        while True:
            await asyncio.sleep(interval)
            await self.send(text_data=json.dumps({"type": "ping", "interval": interval}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if getattr(self, "authority", None) is None:
            return  # refused at the handshake: nothing it sends is read
        request_id = None
        try:
            if text_data is None or len(text_data) > MAX_MESSAGE_BYTES:
                raise BadMessage("messages are JSON text of at most 4096 characters")
            try:
                message = json.loads(text_data)
            except (json.JSONDecodeError, RecursionError) as e:
                raise BadMessage("the message is not valid JSON") from e
            if not isinstance(message, dict):
                raise BadMessage("the message must be a JSON object")
            request_id = message.get("id") if isinstance(message.get("id"), int) else None
            kind = message.get("type")
            if kind == "open":
                await self._open(message)
            elif kind == "pong":
                pass  # the answer to our keepalive ping: arriving at all is its whole message
            elif kind == "render":
                if self.view is None:
                    raise BadMessage("open an image set first")
                request = parse_render(message)
                self.active = True
                if self.pending is not None:
                    await self.send(text_data=json.dumps({"type": "dropped", "id": self.pending["id"]}))
                self.pending = request
                self.wakeup.set()
            else:
                raise BadMessage("type must be open, render or pong")
        except BadMessage as e:
            await self._error(str(e), request_id)
        except ApertureError as e:
            await self._error(e.message, request_id)

    async def _error(self, message: str, request_id: int | None = None) -> None:
        await self.send(text_data=json.dumps({"type": "error", "id": request_id, "message": message}))

    async def _open(self, message: dict[str, Any]) -> None:
        datastore_id, image_set_id, series = message.get("datastore"), message.get("imageSet"), message.get("series")
        # Checked to the character, not only the length: the ids reach database queries and the audit trail, and
        # PostgreSQL refuses text with NUL characters (a DataError that took the connection down).
        if not all(isinstance(v, str) and _ID.fullmatch(v) for v in (datastore_id, image_set_id)):
            raise BadMessage("datastore and imageSet must be 32-character ids")
        if series is not None and not (isinstance(series, str) and _UID.fullmatch(series)):
            raise BadMessage("series must be a UID")
        if not await self._still_allowed():
            return
        view = await database_sync_to_async(selectors.viewable_image_set)(
            user=self.scope.get("user"), datastore_id=datastore_id, image_set_id=image_set_id,
            share_token=self.share_token)
        await database_sync_to_async(audit_record)(
            event_name="StartFrameStream", event_type="ViewerEvent", user=self.scope.get("user"),
            source_ip=(self.scope.get("client") or [None])[0], datastore_id=datastore_id, image_set_id=image_set_id,
            parameters={"imageSetId": image_set_id, "shareLink": bool(self.share_token)})
        self.view, self.series, self.pending = view, series, None
        frames = view.frames(series)
        first = frames[0][0] if frames else None
        await self.send(text_data=json.dumps({
            "type": "opened", "imageSet": image_set_id, "count": len(frames),
            "frames": [{"sop": i.sop_uid, "number": n, "instanceNumber": i.instance_number, "position": i.position}
                       for i, n, _ in frames],
            "patient": {k: view.patient.get(k) for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")},
            "study": {k: view.study.get(k) for k in ("StudyDescription", "StudyDate", "AccessionNumber")},
            "series": {k: view.series.get(first.series_uid if first else "", {}).get(k)
                       for k in ("SeriesDescription", "Modality", "SeriesNumber")},
            "defaultWindow": list(first.window()) if first and first.window() else None,
            "spacing": first.pixel_spacing() if first else None,
            "rows": first.rows if first else 0, "columns": first.columns if first else 0,
        }, default=str))

    async def _render_loop(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            request, self.pending = self.pending, None
            if request is None or self.view is None:
                continue
            view, series = self.view, self.series
            try:
                body, header = await database_sync_to_async(frames.frame_render, thread_sensitive=False)(
                    view=view, index=request["frame"], series_uid=series, window=request["window"],
                    invert=request["invert"], max_size=request["size"], fmt=request["format"],
                    quality=request["quality"])
            except (ApertureError, RenderError) as e:
                await self._error(getattr(e, "message", str(e)), request["id"])
                continue
            except Exception:
                logger.exception("render failed")
                await self._error("the frame could not be rendered", request["id"])
                continue
            header_bytes = json.dumps({"id": request["id"], **header}, default=str).encode()
            await self.send(bytes_data=struct.pack(">I", len(header_bytes)) + header_bytes + body)
            neighbours = [request["frame"] + step for step in range(1, PREFETCH_AHEAD + 1)]
            neighbours += [request["frame"] - step for step in range(1, PREFETCH_AHEAD + 1)]
            asyncio.ensure_future(database_sync_to_async(frames.frames_prefetch, thread_sensitive=False)(
                view=view, indices=neighbours, series_uid=series, max_size=request["size"]))
