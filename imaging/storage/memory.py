"""Blobs in a dict, for tests of code that needs a store but not its persistence."""
from __future__ import annotations

import threading
import time
from typing import Iterator

from imaging.storage.base import BlobInfo, BlobStore


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._modified: dict[str, float] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self._objects[key] = bytes(data)
            self._modified[key] = time.time()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._objects.get(key)

    def delete(self, key: str) -> None:
        with self._lock:
            self._objects.pop(key, None)
            self._modified.pop(key, None)

    def delete_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._objects if k.startswith(prefix)]:
                del self._objects[key], self._modified[key]

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        with self._lock:
            found = [BlobInfo(key, self._modified[key]) for key in sorted(self._objects) if key.startswith(prefix)]
        yield from found
