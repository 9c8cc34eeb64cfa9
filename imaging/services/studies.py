"""The study index as the services see it; the index itself lives in imaging/study_index.py, below both the
services and the import pipeline, which refresh it in their own transactions."""
from __future__ import annotations

from imaging.study_index import name_tokens, study_index_refresh

__all__ = ["name_tokens", "study_index_refresh"]
