"""The render websocket in process with channels.testing.WebsocketCommunicator."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from PIL import Image

from tests.viewer_study import ct_slice
from viewer.consumers import RenderConsumer
from imaging.render.pixels import voi_window

pytestmark = pytest.mark.django_db(transaction=True)


def run(coroutine_fn):
    return async_to_sync(coroutine_fn)()


def communicator(user):
    comm = WebsocketCommunicator(RenderConsumer.as_asgi(), "/ws/render/")
    comm.scope["user"] = user
    return comm


def split(message: bytes):
    length = struct.unpack(">I", message[:4])[0]
    return json.loads(message[4 : 4 + length]), message[4 + length :]


def test_anonymous_connections_are_refused(viewer_data):
    async def scenario():
        comm = communicator(AnonymousUser())
        connected, code = await comm.connect()
        assert not connected and code == 4401
    run(scenario)


def test_open_and_render_frames(viewer_data):
    data = viewer_data

    async def scenario():
        comm = communicator(data.clinician)
        assert (await comm.connect())[0]
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id,
                                 "series": data.ct_series})
        opened = await comm.receive_json_from(timeout=10)
        assert opened["type"] == "opened" and opened["count"] == 3
        assert [f["instanceNumber"] for f in opened["frames"]] == [1, 2, 3]
        assert opened["defaultWindow"] == [40.0, 400.0] and opened["spacing"] == [0.5, 0.5]
        await comm.send_json_to({"type": "render", "id": 1, "frame": 1, "window": [1000, 2000], "size": [64, 64],
                                 "format": "png"})
        header, image = split(await comm.receive_from(timeout=10))
        assert header["id"] == 1 and header["frame"] == 1 and header["instanceNumber"] == 2
        pixels = np.asarray(Image.open(io.BytesIO(image)))
        values = ct_slice(2).astype(np.float64) - 1024  # RescaleIntercept -1024
        expected = np.clip(np.floor(voi_window(values, 1000, 2000) + 0.5), 0, 255).astype(np.uint8)
        assert np.array_equal(pixels, expected)
        await comm.disconnect()
    run(scenario)


@pytest.mark.parametrize("message, reason", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"type": "explode"}), "type must be"),
    (json.dumps({"type": "render", "id": 1, "frame": 0}), "open an image set first"),
    (json.dumps({"type": "open", "datastore": "x", "imageSet": "y"}), "32-character"),
    ("{" + " " * 5000 + "}", "at most 4096"),
    ("[" * 2000 + "]" * 2000, "not valid JSON"),
])
def test_malformed_messages_get_errors_and_the_connection_stays(viewer_data, message, reason):
    data = viewer_data

    async def scenario():
        comm = communicator(data.clinician)
        await comm.connect()
        await comm.send_to(text_data=message)
        error = await comm.receive_json_from(timeout=5)
        assert error["type"] == "error" and reason in error["message"]
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
        assert (await comm.receive_json_from(timeout=10))["type"] == "opened"
        for bad in ({"type": "render", "id": "x", "frame": 0}, {"type": "render", "id": 2, "frame": -1},
                    {"type": "render", "id": 3, "frame": 0, "window": [1]},
                    {"type": "render", "id": 4, "frame": 0, "size": [10**9, 1]},
                    {"type": "render", "id": 5, "frame": 0, "format": "gif"},
                    {"type": "render", "id": 6, "frame": 99}):
            await comm.send_json_to(bad)
            assert (await comm.receive_json_from(timeout=10))["type"] == "error"
        await comm.disconnect()
    run(scenario)


def test_outsider_cannot_open_and_stale_requests_are_dropped(viewer_data):
    data = viewer_data

    async def scenario():
        outsider = communicator(data.outsider)
        await outsider.connect()
        await outsider.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
        assert (await outsider.receive_json_from(timeout=5))["type"] == "error"
        await outsider.disconnect()

        comm = communicator(data.clinician)
        await comm.connect()
        await comm.send_json_to({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})
        await comm.receive_json_from(timeout=10)
        for request_id in range(1, 30):  # scrolling fast: only the newest pending request is rendered
            await comm.send_json_to({"type": "render", "id": request_id, "frame": request_id % 3})
        rendered, dropped = [], []
        while 29 not in rendered:
            message = await comm.receive_output(timeout=10)
            if message.get("bytes"):
                rendered.append(split(message["bytes"])[0]["id"])
            else:
                dropped.append(json.loads(message["text"])["id"])
        assert dropped and len(rendered) < 29 and sorted(rendered + dropped) == list(range(1, 30))
        await comm.disconnect()
    run(scenario)
