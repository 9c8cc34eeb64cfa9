"""Blobs as files under one root folder, written through a temporary file and an atomic rename."""
from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

from imaging.storage.base import BlobStore, BlobStoreError


_temporary_names = itertools.count()


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._root_prefix = str(self.root) + os.sep

    def _path(self, key: str) -> Path:
        """Keys are checked lexically (no `..`, no absolute paths): resolving symlinks on every write cost more
        than the write itself, and the store's own folders are the only links it can meet."""
        path = os.path.normpath(os.path.join(self._root_prefix, key))
        if not path.startswith(self._root_prefix) or "\x00" in key:
            raise BlobStoreError(f"blob key escapes the store: {key!r}")
        return Path(path)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        # A name no other writer uses (pid, counter, random), created exclusively, then renamed over the key.
        tmp_name = f"{path.parent}{os.sep}.tmp-{os.getpid()}-{next(_temporary_names)}-{os.urandom(4).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                fd = os.open(tmp_name, flags, 0o600)
            except FileNotFoundError:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp_name, flags, 0o600)
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
