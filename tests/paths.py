"""Where the tests find their sample files: plain constants, importable from any test or helper.

It must not import pytest, Django or a conftest; fixtures live in tests/conftest.py, which imports this module."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DICOM_DIR = SHARED / "dicom"
