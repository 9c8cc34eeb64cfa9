"""X-Amz-Date parsing (imaging/aws/sigv4.py request_time): the basic ISO 8601 form only, as UTC."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from imaging.aws.sigv4 import IncompleteSignature, request_time


def test_a_basic_timestamp_is_utc():
    assert request_time({"x-amz-date": "20261207T231805Z"}) == datetime(2026, 12, 7, 23, 18, 5, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw", ["", "2026127T231805Z", "20261307T231805Z", "20261207T246000Z", "20261207T231805",
                                 "2026-12-07T23:18:05Z", "20261207T231805Z ", "２０２６1207T231805Z"])
def test_anything_else_is_an_incomplete_signature(raw):
    with pytest.raises(IncompleteSignature):
        request_time({"x-amz-date": raw})
