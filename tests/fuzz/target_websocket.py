"""Fuzz target: the render websocket's message handling (viewer.consumers).

Properties: `parse_render` turns any JSON object into a render request or a BadMessage; and any text frame sent to
a live consumer (in process, through channels' WebsocketCommunicator, with a real database) is answered, the
consumer never raises, and the connection stays usable: after every fuzzed frame a sentinel frame still gets its
error reply, and an `open` of a real image set still works at the end.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

SENTINEL = "\x00sentinel"  # not JSON: answered with an error, in order, after everything sent before it


def check_parse(message: Any) -> None:
    from viewer.consumers import BadMessage, parse_render

    if not isinstance(message, dict):
        return
    try:
        request = parse_render(message)
    except BadMessage as e:
        assert str(e)
        return
    assert isinstance(request["id"], int) and 0 <= request["frame"] <= 1_000_000
    assert all(16 <= side <= 4096 for side in request["size"]) and 1 <= request["quality"] <= 100


async def feed(user, texts: list[str], *, datastore_id: str | None = None, image_set_id: str | None = None) -> None:
    """Send each text frame to one connection; after each, a sentinel must come back as an error (the consumer
    answered and is still there). Replies to the fuzzed frames themselves (errors, renders) are skipped."""
    from channels.testing import WebsocketCommunicator

    from viewer.consumers import RenderConsumer

    comm = WebsocketCommunicator(RenderConsumer.as_asgi(), "/ws/render/")
    comm.scope["user"] = user
    connected, _ = await comm.connect()
    assert connected
    try:
        for text in texts:
            await comm.send_input({"type": "websocket.receive", "text": text})  # empty frames too
            await comm.send_to(text_data=SENTINEL)
            await _until_sentinel_error(comm)
        if datastore_id:
            await comm.send_json_to({"type": "open", "datastore": datastore_id, "imageSet": image_set_id})
            while True:
                reply = await _next_text(comm)
                if reply.get("type") == "opened":
                    break
    finally:
        await comm.disconnect()


async def _next_text(comm) -> dict[str, Any]:
    while True:
        output = await comm.receive_output(timeout=30)  # re-raises anything the consumer raised
        if output["type"] == "websocket.close":
            raise AssertionError(f"the server closed the connection: {output}")
        if output.get("text") is not None:
            return json.loads(output["text"])


async def _until_sentinel_error(comm) -> None:
    while True:
        reply = await _next_text(comm)
        if reply.get("type") == "error" and "not valid JSON" in reply.get("message", ""):
            return


def one_input(data: bytes) -> None:
    """The parser alone (no database); bin/fuzz drives `feed` with a live consumer instead."""
    for text in one_input_texts(data):
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            continue
        check_parse(message)


def one_input_texts(data: bytes) -> list[str]:
    """Frames from fuzz bytes: split on 0xFF, each decoded as UTF-8."""
    return [part.decode("utf-8", "replace") for part in data.split(b"\xff")][:8]


def seed_texts() -> Iterable[str]:
    for data in seed_inputs():
        yield from one_input_texts(data)


def seed_inputs() -> Iterable[bytes]:
    yield json.dumps({"type": "render", "id": 1, "frame": 0, "window": [40, 400], "size": [64, 64]}).encode()
    yield json.dumps({"type": "open", "datastore": "a" * 32, "imageSet": "b" * 32, "series": "1.2"}).encode()
    yield b'{"type": "open", "datastore": "' + b"\\u0000" * 32 + b'", "imageSet": "' + b"b" * 32 + b'"}'
    yield b'{"type": "render", "id": 1, "frame": NaN, "quality": Infinity}\xff[1,2]\xffnot json'
