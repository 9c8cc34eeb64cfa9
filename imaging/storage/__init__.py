"""Blob storage chosen by APERTURE_BLOB_STORE: file:///path (default), s3://bucket/prefix or memory://.

`open_blob_store` needs no Django, so import worker processes can write frames themselves; `blob_store` is the
configured store of this process. Key layout: imaging/storage/keys.py.
"""
from __future__ import annotations

import threading
from typing import Iterable
from urllib.parse import urlparse

from imaging.storage.base import BlobStore, BlobStoreError

__all__ = ["BlobStore", "BlobStoreError", "blob_store", "discard_blobs", "open_blob_store"]

_stores: dict[tuple, BlobStore] = {}
_lock = threading.Lock()


def _make(url: str, s3: tuple[str, str, str, str]) -> BlobStore:
    parsed = urlparse(url)
    # Backends load on first use: a worker that writes to a folder never imports boto3.
    if parsed.scheme == "file":
        from imaging.storage.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(parsed.path)
    if parsed.scheme == "s3":
        from imaging.storage.s3 import S3BlobStore, s3_client

        endpoint, key_id, secret, region = s3
        client = s3_client(endpoint_url=endpoint, access_key_id=key_id, secret_access_key=secret, region=region)
        return S3BlobStore(client=client, bucket=parsed.netloc, prefix=parsed.path)
    if parsed.scheme == "memory":
        from imaging.storage.memory import MemoryBlobStore

        return MemoryBlobStore()
    raise ValueError(f"APERTURE_BLOB_STORE must be file://, s3:// or memory://, not {url!r}")


def open_blob_store(url: str, s3: tuple[str, str, str, str] = ("", "", "", "us-east-1")) -> BlobStore:
    """One store per (URL, S3 endpoint and credentials) and process."""
    with _lock:
        if (url, s3) not in _stores:
            _stores[(url, s3)] = _make(url, s3)
        return _stores[(url, s3)]


def blob_store_address() -> tuple[str, tuple[str, str, str, str]]:
    """The configured store as plain values a worker process can open."""
    # Imported here, not at the top: import worker processes use open_blob_store and must not load Django.
    from django.conf import settings

    return settings.APERTURE_BLOB_STORE, (
        settings.APERTURE_S3_ENDPOINT_URL,
        settings.APERTURE_S3_ACCESS_KEY_ID,
        settings.APERTURE_S3_SECRET_ACCESS_KEY,
        settings.APERTURE_REGION,
    )


def blob_store() -> BlobStore:
    """The configured store of this process."""
    return open_blob_store(*blob_store_address())


def discard_blobs(store: BlobStore, keys: Iterable[str]) -> None:
    """Remove what a failed file, write or job left: the one place that cleans up after a failure. A store that
    fails here leaves the rest to the orphan sweep (imaging/services/orphans.py)."""
    for key in keys:
        try:
            store.delete(key)
        except BlobStoreError:
            pass  # the store is failing already; the orphan sweep removes what is left
