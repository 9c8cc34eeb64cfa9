"""The store step (imaging/pipeline/frame_store.py): a multi-frame file's frames are written several at a time, all
of them land under their keys with their bytes (on SeaweedFS too), and a file with one frame that cannot be written
fails with none of its frames left behind. Inside `frames_deferred` (a worker's batch) a file's writes run while
the next file is processed, and every result is final when the block ends."""
from __future__ import annotations

import secrets
import threading

import pytest

from imaging.pipeline import frame_store
from imaging.pipeline.frame_store import WRITE_THREADS, FrameSink, frames_deferred, frames_store
from imaging.pipeline.results import EncodedFrame, FileResult, FrameIds
from imaging.storage import BlobStoreError
from imaging.storage.keys import frame_blob_key
from imaging.storage.memory import MemoryBlobStore
from imaging.storage.s3 import S3BlobStore, s3_client
from tests.importing import ensure_bucket

SINK = FrameSink(blob_store_url="memory://", blob_store_s3=("", "", "", "us-east-1"), datastore_id="d" * 32,
                 job_id="job")


def multi_frame_result(count: int) -> FileResult:
    frame_ids = FrameIds("job", secrets.token_hex(4))
    frames = [EncodedFrame(frame_id=frame_ids(n), frame_bytes=secrets.token_bytes(100 + n)) for n in range(count)]
    return FileResult(input_file="cine.dcm", ok=True, frames=frames)


class WritersMeetStore(MemoryBlobStore):
    """Each put waits until WRITE_THREADS puts are in flight together: written one at a time, the first put
    gives up and the file fails."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(WRITE_THREADS, timeout=20)

    def put(self, key: str, data: bytes) -> None:
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError as e:
            raise BlobStoreError("the puts did not overlap") from e
        super().put(key, data)


class OneBadKeyStore(MemoryBlobStore):
    def __init__(self, bad_key: str) -> None:
        super().__init__()
        self.bad_key = bad_key

    def put(self, key: str, data: bytes) -> None:
        if key == self.bad_key:
            raise BlobStoreError("refused")
        super().put(key, data)


def expected_blobs(result: FileResult) -> dict[str, bytes]:
    return {frame_blob_key(SINK.datastore_id, frame.frame_id): frame.frame_bytes for frame in result.frames}


def test_the_frames_of_a_multi_frame_file_are_written_together():
    store = WritersMeetStore()
    result = multi_frame_result(WRITE_THREADS * 3)
    expected = expected_blobs(result)
    stored = frames_store(result, SINK, blob_store=store)
    assert stored.ok, stored.message
    assert {key: store.get(key) for key in expected} == expected
    assert [frame.size for frame in stored.frames] == [len(body) for body in expected.values()]
    assert all(frame.frame_bytes == b"" for frame in stored.frames)


def test_a_frame_that_cannot_be_written_fails_the_file_and_leaves_no_frame():
    result = multi_frame_result(9)
    keys = list(expected_blobs(result))
    store = OneBadKeyStore(bad_key=keys[4])
    stored = frames_store(result, SINK, blob_store=store)
    assert not stored.ok and stored.message == "The frames could not be stored"
    assert list(store.list_blobs("")) == []


@pytest.mark.parametrize("count", [1, 17])
def test_frames_land_in_an_s3_blob_store(seaweed, count):
    bucket = "frames-" + secrets.token_hex(3)
    ensure_bucket(seaweed.client(), bucket)
    client = s3_client(endpoint_url=seaweed.endpoint, access_key_id=seaweed.access_key,
                       secret_access_key=seaweed.secret_key, region="us-east-1")
    store = S3BlobStore(client=client, bucket=bucket, prefix="store")
    result = multi_frame_result(count)
    expected = expected_blobs(result)
    stored = frames_store(result, SINK, blob_store=store)
    assert stored.ok, stored.message
    assert {key: store.get(key) for key in expected} == expected


class HeldStore(MemoryBlobStore):
    """Puts wait until the test lets them through; a put still held after 20 s fails."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def put(self, key: str, data: bytes) -> None:
        if not self.release.wait(20):
            raise BlobStoreError("held")
        super().put(key, data)


def test_a_deferred_file_is_returned_before_its_frames_are_written_and_final_when_the_block_ends():
    store = HeldStore()
    results = [multi_frame_result(1), multi_frame_result(3)]
    expected = {**expected_blobs(results[0]), **expected_blobs(results[1])}
    with frames_deferred():
        for result in results:
            frames_store(result, SINK, blob_store=store)  # returns with the puts still held
        assert list(store.list_blobs("")) == []
        store.release.set()
    assert all(result.ok for result in results)
    assert {key: store.get(key) for key in expected} == expected
    assert all(frame.frame_bytes == b"" and frame.size for result in results for frame in result.frames)


def test_a_deferred_file_whose_frames_cannot_be_written_fails_alone():
    good, bad, also_good = multi_frame_result(2), multi_frame_result(4), multi_frame_result(1)
    store = OneBadKeyStore(bad_key=list(expected_blobs(bad))[2])
    with frames_deferred():
        for result in (good, bad, also_good):
            assert frames_store(result, SINK, blob_store=store).ok  # not known yet
    assert good.ok and also_good.ok
    assert not bad.ok and bad.message == "The frames could not be stored"
    assert sorted(blob.key for blob in store.list_blobs("")) == sorted({**expected_blobs(good),
                                                                         **expected_blobs(also_good)})


def test_deferred_frames_past_the_memory_bound_settle_the_writes_already_started(monkeypatch):
    monkeypatch.setattr(frame_store, "DEFER_MAX_BYTES", 150)
    store = MemoryBlobStore()
    first, second = multi_frame_result(1), multi_frame_result(1)  # 100 bytes each
    with frames_deferred():
        frames_store(first, SINK, blob_store=store)
        assert first.frames[0].frame_bytes != b""
        frames_store(second, SINK, blob_store=store)
        assert first.frames[0].frame_bytes == b"" and first.frames[0].size == 100  # settled before the second
    assert second.frames[0].frame_bytes == b"" and second.ok
