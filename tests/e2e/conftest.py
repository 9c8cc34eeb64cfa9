"""Fixtures of the end-to-end tests: a Chromium per test module (tests/e2e/browser.py)."""
from __future__ import annotations

import pytest

from tests.e2e.browser import chromium


@pytest.fixture(scope="module")
def browser():
    with chromium() as instance:
        yield instance
