"""Blobs as files under one root folder, written through a temporary file and an atomic rename."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from imaging.storage.base import BlobStore, BlobStoreError


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise BlobStoreError(f"blob key escapes the store: {key!r}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.replace(tmp_name, path)
            except BaseException:
                os.unlink(tmp_name)
                raise
        except OSError as e:
            raise BlobStoreError(f"cannot write blob {key}: {e.strerror}") from e

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BlobStoreError(f"cannot read blob {key}: {e.strerror}") from e

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as e:
            raise BlobStoreError(f"cannot delete blob {key}: {e.strerror}") from e

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix.rstrip("/"))
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()

    def prepare(self, prefix: str) -> None:
        self._path(prefix.rstrip("/")).mkdir(parents=True, exist_ok=True)
