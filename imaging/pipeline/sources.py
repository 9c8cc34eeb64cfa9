"""Where import input comes from and manifests go: s3:// URIs through boto3, or local folders (file://).

No Django: worker processes build their own clients from the plain `S3Settings` they are handed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

from botocore.exceptions import BotoCoreError, ClientError

MAX_NESTED_FOLDERS = 10_000


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
    """Every non-empty object under the URI, recursively; folder markers and zero-byte objects are skipped."""
    if uri.startswith("file://"):
        return _list_folder(Path(unquote(urlparse(uri).path)))
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


def _list_folder(root: Path) -> list[SourceObject]:
    if root.is_file():
        return [SourceObject(uri=root.as_uri(), display_name=str(root), size=root.stat().st_size)]
    if not root.is_dir():
        raise SourceError(f"The input folder {root} does not exist")
    found = []
    for folder, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(folder) / name
            size = path.stat().st_size
            if size:
                found.append(SourceObject(uri=path.as_uri(), display_name=str(path), size=size))
    return sorted(found, key=lambda item: item.display_name)


def read_object(uri: str, s3: S3Settings) -> bytes:
    try:
        if uri.startswith("file://"):
            return Path(unquote(urlparse(uri).path)).read_bytes()
        bucket, key = split_s3_uri(uri)
        return _s3(s3).get_object(Bucket=bucket, Key=key)["Body"].read()
    except OSError as e:
        raise SourceError(f"The file cannot be read: {e.strerror}") from e
    except (ClientError, BotoCoreError) as e:
        raise SourceError(f"The object cannot be read: {_s3_reason(e)}") from e


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
