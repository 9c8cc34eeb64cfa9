"""Blob storage chosen by APERTURE_BLOB_STORE: file:///path (default), s3://bucket/prefix or memory://."""
from __future__ import annotations

import threading
from urllib.parse import urlparse

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from imaging.storage.base import BlobStore, BlobStoreError

__all__ = ["BlobStore", "BlobStoreError", "blob_store", "blob_store_from_url"]

_stores: dict[str, BlobStore] = {}
_lock = threading.Lock()


def blob_store_from_url(url: str) -> BlobStore:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from imaging.storage.filesystem import FilesystemBlobStore

        return FilesystemBlobStore(parsed.path)
    if parsed.scheme == "s3":
        from imaging.storage.s3 import S3BlobStore, s3_client

        client = s3_client(
            endpoint_url=getattr(settings, "APERTURE_S3_ENDPOINT_URL", ""),
            access_key_id=getattr(settings, "APERTURE_S3_ACCESS_KEY_ID", ""),
            secret_access_key=getattr(settings, "APERTURE_S3_SECRET_ACCESS_KEY", ""),
            region=settings.APERTURE_REGION,
        )
        return S3BlobStore(client=client, bucket=parsed.netloc, prefix=parsed.path)
    if parsed.scheme == "memory":
        from imaging.storage.memory import MemoryBlobStore

        return MemoryBlobStore()
    raise ImproperlyConfigured(f"APERTURE_BLOB_STORE must be file://, s3:// or memory://, not {url!r}")


def blob_store() -> BlobStore:
    """The configured store, one instance per URL and process."""
    url = settings.APERTURE_BLOB_STORE
    with _lock:
        if url not in _stores:
            _stores[url] = blob_store_from_url(url)
        return _stores[url]
