"""Fuzzing the render websocket's messages (issue 11 item 12): the pure parser, and a live consumer in process with
the viewer's fixture data (SQLite and PostgreSQL: ids reach database queries)."""
from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz import target_websocket
from tests.fuzz.strategies import bounded, json_values

pytestmark = pytest.mark.fuzz

ids = st.text(max_size=33) | st.text("0123456789abcdef\x00", min_size=32, max_size=32)
numbers = st.integers(-2**65, 2**65) | st.floats() | st.booleans() | st.none() | st.text(max_size=3)
messages = st.one_of(
    json_values,
    st.fixed_dictionaries({"type": st.just("render")}, optional={
        "id": numbers, "frame": numbers, "window": st.lists(numbers, max_size=3) | numbers,
        "size": st.lists(numbers, max_size=3) | numbers, "quality": numbers, "invert": json_values,
        "format": st.sampled_from(["jpeg", "png", "gif", 1])}),
    st.fixed_dictionaries({"type": st.just("open")}, optional={
        "datastore": ids, "imageSet": ids, "series": ids | json_values}),
)


@bounded(500)
@given(messages)
def test_parse_render_gives_a_request_or_a_bad_message(message):
    target_websocket.check_parse(message)


def _frame(message) -> str:
    text = json.dumps(message, allow_nan=True)
    return text if len(text) < 4000 else text[:4000]


@pytest.mark.django_db(transaction=True)
def test_fuzzed_frames_get_answers_and_the_connection_stays(viewer_data):
    """One connection per batch of fuzzed frames (an open of the real image set first, so that render requests
    reach the render loop); after each frame the consumer still answers, and the image set opens at the end."""
    data = viewer_data
    opened = json.dumps({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id})

    @bounded(25)
    @given(st.lists(messages.map(_frame) | st.text(max_size=60), min_size=1, max_size=6))
    def batches(texts):
        async_to_sync(target_websocket.feed)(data.clinician, [opened, *texts], datastore_id=data.datastore.id,
                                             image_set_id=data.ct_image_set.id)

    batches()
    async_to_sync(target_websocket.feed)(data.clinician, list(target_websocket.seed_texts()))


@pytest.mark.django_db(transaction=True)
def test_ids_with_nul_characters_are_refused_and_the_connection_stays(viewer_data):
    """Found by the test above on PostgreSQL: an open whose 32-character ids held NUL characters reached the
    database, which refuses NUL in text (DataError), and the consumer died with the connection."""
    data = viewer_data
    frames = [json.dumps({"type": "open", "datastore": "\x00" * 32, "imageSet": data.ct_image_set.id}),
              json.dumps({"type": "open", "datastore": data.datastore.id, "imageSet": "a\x00" * 16}),
              json.dumps({"type": "open", "datastore": data.datastore.id, "imageSet": data.ct_image_set.id,
                          "series": "1.2\x00"})]
    async_to_sync(target_websocket.feed)(data.clinician, frames, datastore_id=data.datastore.id,
                                         image_set_id=data.ct_image_set.id)
