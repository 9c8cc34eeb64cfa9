"""Transfer syntax facts the store needs (SPEC 4.5, 6.2)."""
from __future__ import annotations

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"

NATIVE = {IMPLICIT_LE, EXPLICIT_LE, DEFLATED_LE, EXPLICIT_BE}
# Decoded and re-encoded as lossless HTJ2K (JPEG extended: the decoded lossy pixels are kept losslessly).
TRANSCODED = NATIVE | {
    JPEG_EXTENDED, JPEG_LOSSLESS_P14, JPEG_LOSSLESS_SV1, JPEG_LS_LOSSLESS, JPEG_LS_NEAR_LOSSLESS,
    J2K_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, RLE_LOSSLESS,
}
# Lossy encodings kept frame by frame exactly as received.
AS_RECEIVED = {JPEG_BASELINE, J2K, HTJ2K}

CONTENT_TYPES = {
    HTJ2K_LOSSLESS_RPCL: "image/jph",
    HTJ2K_LOSSLESS: "image/jph",
    HTJ2K: "image/jphc",
    J2K_LOSSLESS: "image/j2c",
    J2K: "image/j2c",
    JPEG_BASELINE: "image/jpeg",
    "1.2.840.10008.1.2.4.112": "image/jxl",
    EXPLICIT_LE: "application/octet-stream",
}


def frame_content_type(stored_transfer_syntax: str | None) -> str:
    return CONTENT_TYPES.get(stored_transfer_syntax or HTJ2K_LOSSLESS_RPCL, "application/octet-stream")
