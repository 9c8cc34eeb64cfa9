"""Blobs in any S3-compatible object store (APERTURE_BLOB_STORE=s3://bucket/prefix)."""
from __future__ import annotations

import logging
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from imaging.storage.base import BlobInfo, BlobStore, BlobStoreError

logger = logging.getLogger(__name__)


def s3_client(*, endpoint_url: str | None, access_key_id: str | None, secret_access_key: str | None, region: str):
    """A boto3 S3 client; explicit keys when given, else boto3's default credential chain."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
    )
    # Some S3-compatible servers (SeaweedFS among them) answer "Expect: 100-continue" in a way that leaves
    # bytes on a kept-alive connection, and the next request then waits for its read timeout. Our objects are
    # small enough to send without asking first.
    client.meta.events.unregister("before-call.s3", add_expect_header)
    return client


class S3BlobStore(BlobStore):
    def __init__(self, *, client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except (ClientError, BotoCoreError) as e:
            logger.error("S3 put failed for a blob: %s", type(e).__name__)
            raise BlobStoreError(f"cannot write blob {key}") from e

    def get(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise BlobStoreError(f"cannot read blob {key}") from e
        except BotoCoreError as e:
            raise BlobStoreError(f"cannot read blob {key}") from e

    def get_range(self, key: str, start: int, length: int) -> bytes | None:
        if length <= 0:
            return b""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key),
                                          Range=f"bytes={start}-{start + length - 1}")["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            if code == "InvalidRange":
                return b""  # `start` lies beyond the end
            raise BlobStoreError(f"cannot read blob {key}") from e
        except BotoCoreError as e:
            raise BlobStoreError(f"cannot read blob {key}") from e

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (ClientError, BotoCoreError) as e:
            raise BlobStoreError(f"cannot delete blob {key}") from e

    def delete_prefix(self, prefix: str) -> None:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        except (ClientError, BotoCoreError) as e:
            raise BlobStoreError(f"cannot delete blobs under {prefix}") from e

    def check(self) -> None:
        """HeadBucket: the endpoint answers, the keys are accepted and the bucket exists."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            raise BlobStoreError("the blob bucket cannot be reached") from e

    def list_blobs(self, prefix: str) -> Iterator[BlobInfo]:
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix)):
                for item in page.get("Contents", []):
                    yield BlobInfo(key=item["Key"][len(self.prefix):], modified_at=item["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as e:
            raise BlobStoreError(f"cannot list blobs under {prefix}") from e
