"""Blobs as files under one root folder, written through a temporary file and an atomic rename."""
from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Iterator

from imaging.storage.base import BlobInfo, BlobStore, BlobStoreError


_temporary_names = itertools.count()


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._root_prefix = str(self.root) + os.sep
        self._temporary = str(self.root / ".tmp")

    def _path(self, key: str) -> Path:
        """Keys are checked lexically (no `..`, no absolute paths): resolving symlinks on every write cost more
        than the write itself, and the store's own folders are the only links it can meet."""
        path = os.path.normpath(os.path.join(self._root_prefix, key))
        if not path.startswith(self._root_prefix) or "\x00" in key:
            raise BlobStoreError(f"blob key escapes the store: {key!r}")
        return Path(path)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        # Written under a name no other writer uses (pid, counter, random) in the store's own temporary folder
        # (same file system, so the rename is atomic), then renamed over the key. A write cut off by a crash
        # leaves its file only there, where `sweep_temporary` finds it without walking the store.
        tmp_name = f"{self._temporary}{os.sep}{os.getpid()}-{next(_temporary_names)}-{os.urandom(4).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            try:
                fd = os.open(tmp_name, flags, 0o600)
            except FileNotFoundError:
                os.makedirs(self._temporary, mode=0o700, exist_ok=True)
                fd = os.open(tmp_name, flags, 0o600)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                try:
                    os.replace(tmp_name, path)
                except FileNotFoundError:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp_name, path)
            except BaseException:
                os.unlink(tmp_name)
                raise
        except OSError as e:
            raise BlobStoreError(f"cannot write blob {key}: {e.strerror}") from e

    def sweep_temporary(self, older_than_seconds: float = 3600) -> int:
        """Remove temporary files that writers cut off by a crash left behind; returns how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        try:
            entries = list(os.scandir(self._temporary))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise BlobStoreError(f"cannot read blob {key}: {e.strerror}") from e

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        try:
            with self._path(key).open("rb") as file:
                file.seek(start)
                return file.read(length)
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

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        """Files under the folders the prefix names, walked without following links; the temporary folder is not
        part of the store's keys."""
        folder, _, name_start = prefix.rpartition("/")
        start = self._path(folder) if folder else self.root
        for directory, dirs, files in os.walk(start, onerror=_walk_error):
            if directory == str(self.root):
                dirs[:] = [name for name in dirs if name != ".tmp"]
            base = os.path.relpath(directory, self.root).replace(os.sep, "/")
            for name in files:
                key = name if base == "." else f"{base}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    info = os.stat(os.path.join(directory, name), follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since the folder was read
                yield BlobInfo(key=key, modified_at=info.st_mtime)
            if name_start and directory == str(start):
                dirs[:] = [name for name in dirs if name.startswith(name_start)]

    def check(self) -> None:
        """The root must be a folder this process can read and write; it is made if missing, as a first write
        would make it."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BlobStoreError(f"cannot make the blob folder: {e.strerror}") from e
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise BlobStoreError("the blob folder is not readable and writable")

    def prepare(self, prefix: str) -> None:
        self._path(prefix.rstrip("/")).mkdir(parents=True, exist_ok=True)


def _walk_error(error: OSError) -> None:
    if not isinstance(error, FileNotFoundError):  # a folder removed while walking is simply gone
        raise BlobStoreError(f"cannot list blobs: {error.strerror}") from error
