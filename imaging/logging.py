"""Logging filter that keeps patient data and secrets out of log lines.

Access logs print request paths. DICOMweb paths carry Study/Series/SOP Instance UIDs and query strings may carry
patient IDs or link tokens, so every record is rewritten before a handler sees it: query strings are dropped
and anything shaped like a DICOM UID is replaced.
"""
from __future__ import annotations

import logging
import re

_UID = re.compile(r"\b\d+(?:\.\d+){4,}\b")
_QUERY = re.compile(r"\?[^\s\"']*")
_SECRET = re.compile(r"(Signature=|token=|share=|Credential=)[^\s,&\"']+", re.IGNORECASE)
_SHARE_PATH = re.compile(r"/share/[^\s/\"'?]+")


def redact(text: str) -> str:
    text = _QUERY.sub("?<redacted>", text)
    text = _SECRET.sub(r"\1<redacted>", text)
    text = _SHARE_PATH.sub("/share/<redacted>", text)
    return _UID.sub("<uid>", text)


class RedactPathsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than crash logging
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        return True
