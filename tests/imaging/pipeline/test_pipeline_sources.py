"""Reading a worker's batch one S3 object ahead (imaging/pipeline/sources.read_ahead), against SeaweedFS: the bytes
and their order are those of plain reads, the next object really is fetched while the current one is processed,
failures stay with their own file, and large objects are not held ahead."""
from __future__ import annotations

import secrets

import pytest

from imaging.pipeline import sources
from imaging.pipeline.sources import S3Settings, SourceError, read_ahead, read_object
from tests.importing import ensure_bucket


@pytest.fixture
def bucket_objects(seaweed, s3):
    """Five objects of distinct bytes under a fresh prefix: (settings, uris, bodies by uri)."""
    ensure_bucket(s3, "readahead")
    prefix = secrets.token_hex(4)
    bodies = {}
    for n in range(5):
        key = f"{prefix}/{n}.dcm"
        body = secrets.token_bytes(1000 + n)
        s3.put_object(Bucket="readahead", Key=key, Body=body)
        bodies[f"s3://readahead/{key}"] = body
    settings = S3Settings(endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                          secret_access_key=seaweed.secret_key, region="us-east-1")
    yield settings, list(bodies), bodies
    read_ahead([], settings)  # nothing left pending for the next test


def _fetched_ahead() -> bytes | None:
    """Wait for the object being fetched ahead and return it (the test's only look inside the read-ahead)."""
    pending = sources._read_ahead._pending
    assert pending is not None, "nothing is being fetched ahead"
    return pending[1].result()


def test_reads_ahead_give_the_same_bytes_in_order(bucket_objects):
    settings, uris, bodies = bucket_objects
    read_ahead(uris, settings)
    assert [read_object(uri, settings) for uri in uris] == [bodies[uri] for uri in uris]


def test_the_next_object_is_fetched_while_the_current_one_is_processed(bucket_objects, s3):
    settings, uris, bodies = bucket_objects
    read_ahead(uris, settings)
    assert read_object(uris[0], settings) == bodies[uris[0]]
    assert _fetched_ahead() == bodies[uris[1]]
    # Gone from the bucket now, yet the worker already holds it.
    s3.delete_object(Bucket="readahead", Key=sources.split_s3_uri(uris[1])[1])
    assert read_object(uris[1], settings) == bodies[uris[1]]


def test_a_failed_read_ahead_fails_its_own_file_only(bucket_objects, s3):
    settings, uris, bodies = bucket_objects
    s3.delete_object(Bucket="readahead", Key=sources.split_s3_uri(uris[2])[1])
    read_ahead(uris, settings)
    assert read_object(uris[0], settings) == bodies[uris[0]]
    assert read_object(uris[1], settings) == bodies[uris[1]]
    with pytest.raises(SourceError, match="NoSuchKey"):
        read_object(uris[2], settings)
    assert [read_object(uri, settings) for uri in uris[3:]] == [bodies[uri] for uri in uris[3:]]


def test_objects_over_the_limit_are_not_held_ahead(bucket_objects, monkeypatch):
    settings, uris, bodies = bucket_objects
    monkeypatch.setattr(sources, "READ_AHEAD_MAX_BYTES", 1002)
    read_ahead(uris, settings)
    assert read_object(uris[0], settings) == bodies[uris[0]]
    assert read_object(uris[1], settings) == bodies[uris[1]]
    assert read_object(uris[2], settings) == bodies[uris[2]]
    assert _fetched_ahead() is None  # 1003 bytes: left for its turn
    assert read_object(uris[3], settings) == bodies[uris[3]]


def test_a_new_batch_drops_the_rest_of_the_last_one(bucket_objects, s3):
    settings, uris, bodies = bucket_objects
    read_ahead(uris[:2], settings)
    assert _fetched_ahead() == bodies[uris[0]]
    read_ahead(uris[3:], settings)
    s3.put_object(Bucket="readahead", Key=sources.split_s3_uri(uris[0])[1], Body=b"rewritten")
    assert read_object(uris[0], settings) == b"rewritten"  # read now, not the copy fetched for the dropped batch
    assert [read_object(uri, settings) for uri in uris[3:]] == [bodies[uri] for uri in uris[3:]]


def test_out_of_turn_reads_and_local_files_are_read_directly(bucket_objects, tmp_path):
    settings, uris, bodies = bucket_objects
    local = tmp_path / "a.dcm"
    local.write_bytes(b"local bytes")
    read_ahead([local.as_uri(), *uris], settings)
    assert read_object(local.as_uri(), settings) == b"local bytes"
    assert read_object(uris[3], settings) == bodies[uris[3]]
    assert [read_object(uri, settings) for uri in uris] == [bodies[uri] for uri in uris]
