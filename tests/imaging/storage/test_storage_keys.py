"""The blob key layout (imaging/storage/keys.py): the keys writers make are the keys the orphan sweep recognizes."""
from __future__ import annotations

from imaging.storage.keys import FRAME_KEY, METADATA_KEY, datastore_prefix, frame_blob_key, metadata_blob_key


def test_frame_keys_spread_over_folders_and_are_recognized():
    key = frame_blob_key("d1", "ab" + "0" * 30)
    assert key == f"datastores/d1/frames/ab/ab{'0' * 30}"
    assert FRAME_KEY.match(key) and not METADATA_KEY.match(key)
    assert key.startswith(datastore_prefix("d1"))


def test_metadata_keys_are_fresh_each_time_and_name_their_image_set():
    first, second = metadata_blob_key("d1", "i1", 2), metadata_blob_key("d1", "i1", 2)
    assert first != second and first.startswith("datastores/d1/imagesets/i1/metadata-v2-")
    assert METADATA_KEY.match(first)["image_set"] == "i1" and not FRAME_KEY.match(first)
