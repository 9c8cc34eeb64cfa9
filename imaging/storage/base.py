"""The blob interface: frames, metadata documents and bulk data all go through these few calls."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator


class BlobStoreError(Exception):
    """The backend failed (I/O error, S3 refused); callers treat it as a server-side failure."""


@dataclass(frozen=True)
class BlobInfo:
    """One stored object as a listing sees it."""

    key: str
    modified_at: float  # seconds since the epoch, by the store's clock


class BlobStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically: readers see the old object, or the new one whole."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None if there is no such object."""

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        """Up to `length` bytes of the object from `start` on (fewer at its end), or None if there is no such
        object: a reduced resolution needs only the front of a frame's codestream. Backends that can read part
        of an object override this."""
        data = self.get(key)
        return None if data is None else data[start : start + length]

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""

    @abstractmethod
    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        """Every object whose key starts with `prefix`, with its last modification time, a page at a time (stores
        can be large); objects written or removed meanwhile may or may not appear."""

    def check(self) -> None:
        """Raise BlobStoreError unless the store answers now (readiness probes); cheap, changes nothing. By default
        a listing of a prefix no key uses."""
        next(iter(self.list_blobs("health-probe/")), None)

    def prepare(self, prefix: str) -> None:
        """Make room for a new data store's objects; most backends need nothing."""

    def sweep_temporary(self, older_than_seconds: float = 3600) -> int:
        """Remove what writers cut off by a crash left behind; backends whose writes are atomic have nothing."""
        return 0
