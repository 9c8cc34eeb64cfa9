"""Where import input comes from and manifests go: s3:// URIs through boto3, or local folders (file://).

No Django: worker processes build their own clients from the plain `S3Settings` they are handed.

A local folder is a boundary: only files whose real path lies inside it are read. Every path met while walking
is resolved; a link that leads out of the folder, a broken link, something that is not a regular file, or an
entry that cannot be read becomes that entry's own failure and the rest of the job goes on. Listed files carry
their real path, and reading opens exactly that path without following links, so a file or folder swapped for a
link between listing and reading is refused too.

A worker reads S3 objects one file ahead (`read_ahead`): while it transcodes a file, a thread of its own fetches
the next one of its batch, so the round trip to the object store overlaps the codec work instead of adding to it.
At most one object per worker is held ahead, and only one no larger than READ_AHEAD_MAX_BYTES, so memory stays
bounded; a larger object is read when its turn comes, as without read-ahead.
"""
from __future__ import annotations

import errno
import os
import stat
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes, urlparse

from botocore.exceptions import BotoCoreError, ClientError

MAX_NESTED_FOLDERS = 10_000
# The largest object read ahead of its turn; one larger is read when the worker reaches it.
READ_AHEAD_MAX_BYTES = 64 * 1024 * 1024


class SourceError(Exception):
    """Input cannot be listed or read, or output cannot be written."""


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str


@dataclass(frozen=True)
class SourceObject:
    uri: str  # s3://bucket/key or file:///path
    display_name: str  # what manifests call inputFile: the key inside the bucket, or the path
    size: int
    failure: str = ""  # why the entry is not read at all (a link out of the folder, a broken link): its failure


@lru_cache(maxsize=8)
def _s3(settings: S3Settings):
    from imaging.storage.s3 import s3_client

    return s3_client(
        endpoint_url=settings.endpoint_url,
        access_key_id=settings.access_key_id,
        secret_access_key=settings.secret_access_key,
        region=settings.region,
    )


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def list_objects(uri: str, s3: S3Settings) -> list[SourceObject]:
    """Every non-empty object under the URI, recursively; folder markers and zero-byte objects are skipped. Local
    entries that must not or cannot be read come back with `failure` set."""
    if uri.startswith("file://"):
        return _list_folder(Path(_local_path(uri)))
    bucket, prefix = split_s3_uri(uri)
    found: list[SourceObject] = []
    folders: set[str] = set()
    try:
        paginator = _s3(s3).get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                if key.endswith("/") or item["Size"] == 0:
                    continue
                folders.add(key.rsplit("/", 1)[0] if "/" in key else "")
                if len(folders) > MAX_NESTED_FOLDERS:
                    raise SourceError("DICOM import job has failed. NESTED_FOLDERS_LIMIT_EXCEEDED")
                found.append(SourceObject(uri=f"s3://{bucket}/{key}", display_name=key, size=item["Size"]))
    except (ClientError, BotoCoreError) as e:
        raise SourceError(f"The input location {uri} cannot be listed: {_s3_reason(e)}") from e
    return found


def _local_path(uri: str) -> str:
    """The path of a file:// URI made by Path.as_uri(), byte for byte (a name need not be UTF-8)."""
    return os.fsdecode(unquote_to_bytes(urlparse(uri).path))


def _list_folder(root: Path) -> list[SourceObject]:
    real_root = os.path.realpath(root)
    if real_root != os.path.abspath(root):
        # The job's folders are resolved when it is submitted: a link now means it was swapped since.
        raise SourceError(f"The input location {root} has been replaced by a link; nothing was imported")
    if os.path.isfile(real_root):
        entry = _file_entry(real_root, real_root)
        return [entry] if entry is not None else []
    if not os.path.isdir(real_root):
        raise SourceError(f"The input folder {root} does not exist")
    found: list[SourceObject] = []

    def unreadable_folder(error: OSError) -> None:
        found.append(_refused(error.filename or real_root, f"The folder cannot be read: {error.strerror}"))

    for folder, dirs, files in os.walk(real_root, onerror=unreadable_folder):
        for name in dirs:
            path = os.path.join(folder, name)
            # os.walk does not descend into linked folders; one inside the root is walked where it really lies.
            if os.path.islink(path) and not _within(os.path.realpath(path), real_root):
                found.append(_refused(path, "The folder is a link to a place outside the folder being imported; "
                                            "it was not read"))
        for name in sorted(files):
            entry = _file_entry(os.path.join(folder, name), real_root)
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda item: item.display_name)


def _within(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _refused(path: str, reason: str) -> SourceObject:
    return SourceObject(uri=Path(path).as_uri(), display_name=str(path), size=0, failure=reason)


def _file_entry(path: str, root: str) -> SourceObject | None:
    """The file at `path` (as walked) to be read through its real path, a refusal, or None for an empty file."""
    real = os.path.realpath(path)
    if not _within(real, root):
        return _refused(path, "The file is a link to a place outside the folder being imported; it was not read")
    try:
        info = os.stat(real)
    except OSError as e:
        if os.path.islink(path) and e.errno == errno.ENOENT:
            return _refused(path, "The file is a broken link")
        return _refused(path, f"The file cannot be read: {e.strerror}")
    if not stat.S_ISREG(info.st_mode):
        return _refused(path, "The file is not a regular file")
    if not info.st_size:
        return None
    return SourceObject(uri=Path(real).as_uri(), display_name=str(path), size=info.st_size)


class _ReadAhead:
    """The objects of one worker's batch still to be read, and the one being fetched ahead of its turn. One per
    process: a worker runs one batch at a time, and a new batch drops what was left of the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[str] = []
        self._s3: S3Settings | None = None
        self._pending: tuple[str, Future] | None = None

    def start(self, uris: list[str], s3: S3Settings) -> None:
        with self._lock:
            self._drop()
            self._queue = [uri for uri in reversed(uris) if uri.startswith("s3://")]
            self._s3 = s3
            self._fetch_next()

    def take(self, uri: str) -> bytes | None:
        """The object's bytes when they were fetched ahead (raising its SourceError if the fetch failed); None
        when the caller must read it itself."""
        with self._lock:
            if self._pending is None or self._pending[0] != uri:
                if uri in self._queue:
                    self._queue.remove(uri)  # read out of turn: it will not be fetched again
                return None
            _, future = self._pending
            self._pending = None
            self._fetch_next()
        return future.result()

    def _fetch_next(self) -> None:
        if not self._queue or self._s3 is None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")
        uri = self._queue.pop()
        self._pending = (uri, self._executor.submit(_s3_read, uri, self._s3, READ_AHEAD_MAX_BYTES))

    def _drop(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
        self._pending, self._queue = None, []


_read_ahead = _ReadAhead()


def read_ahead(uris: list[str], s3: S3Settings) -> None:
    """Announce the objects this worker reads next, in order: each S3 object is fetched while the one before it
    is processed. What is left of an earlier announcement is dropped."""
    _read_ahead.start(uris, s3)


def _s3_read(uri: str, s3: S3Settings, max_bytes: int | None = None) -> bytes | None:
    """The object's bytes; None when it is larger than `max_bytes` (its body is then left unread)."""
    bucket, key = split_s3_uri(uri)
    try:
        response = _s3(s3).get_object(Bucket=bucket, Key=key)
        if max_bytes is not None and response.get("ContentLength", 0) > max_bytes:
            response["Body"].close()
            return None
        return response["Body"].read()
    except (ClientError, BotoCoreError) as e:
        raise SourceError(f"The object cannot be read: {_s3_reason(e)}") from e


def read_object(uri: str, s3: S3Settings) -> bytes:
    ahead = _read_ahead.take(uri)
    if ahead is not None:
        return ahead
    try:
        if uri.startswith("file://"):
            return _read_listed_file(_local_path(uri))
        return _s3_read(uri, s3)
    except OSError as e:
        raise SourceError(f"The file cannot be read: {e.strerror}") from e
    except (ClientError, BotoCoreError) as e:
        raise SourceError(f"The object cannot be read: {_s3_reason(e)}") from e


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def _read_listed_file(path: str) -> bytes:
    """Read a file by the real path its listing found, refusing it if anything on that path became a link since
    (the last component through O_NOFOLLOW, the folders above it through the path the kernel reports for the open
    file). O_NONBLOCK keeps a FIFO put in its place from blocking the worker."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise SourceError("The file was replaced by a link after it was listed; it was not read") from e
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceError("The file is not a regular file")
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = path  # no /proc here: O_NOFOLLOW alone guards the file itself
        if opened != path:
            raise SourceError("A folder on the file's path was replaced by a link after it was listed; "
                              "it was not read")
        return handle.read()


def write_object(uri: str, data: bytes, s3: S3Settings, content_type: str = "application/json") -> None:
    try:
        if uri.startswith("file://"):
            path = Path(unquote(urlparse(uri).path))
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.tmp")
            temporary.write_bytes(data)
            temporary.replace(path)
            return
        bucket, key = split_s3_uri(uri)
        _s3(s3).put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except OSError as e:
        raise SourceError(f"The output location cannot be written: {e.strerror}") from e
    except (ClientError, BotoCoreError) as e:
        raise SourceError(f"The output location cannot be written: {_s3_reason(e)}") from e


def _s3_reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code", "error")
    return type(error).__name__
