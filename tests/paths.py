"""Where the code and the tests' sample files are: plain constants, importable from any test or helper.

It must not import pytest, Django or a conftest; fixtures live only in conftest.py files (tests/conftest.py,
tests/e2e/conftest.py), built from plain modules like this one."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"
DICOM_DIR = SHARED / "dicom"
