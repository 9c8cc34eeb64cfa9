"""Talking to a live Aperture server from a test: a boto3 medical-imaging client for an access key, and polling
until the server has caught up.

Plain functions, importable from any test or helper; no fixtures here (tests/conftest.py registers those)."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config

T = TypeVar("T")


def imaging_client(url: str, key: dict[str, str], *, validate: bool = True) -> Any:
    """A boto3 `medical-imaging` client for `url` signing with `key` (AccessKeyId, SecretAccessKey); one attempt per
    call, so a test sees the first answer. `validate=False` sends what it is given, without botocore's checks."""
    return boto3.client(
        "medical-imaging",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        config=Config(inject_host_prefix=False, parameter_validation=validate, retries={"max_attempts": 1}),
    )


def wait_for(predicate: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05,
             what: str = "condition") -> T:
    """Call `predicate` until it returns something truthy, and return that; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(interval)
