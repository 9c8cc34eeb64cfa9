"""The image size a compressed frame's own header declares, read before any decoder sees it; no Django.

A decoder allocates what the codestream says, not what the DICOM header says: a 64x64 instance whose JPEG frame
declares 65,500x65,500 would make it allocate gigabytes (a decompression bomb inside a frame). Frames are checked
against Rows x Columns (already bounded by APERTURE_MAX_FRAME_PIXELS) before they are decoded at import, and the
viewer checks frames kept as received before it decodes them.

JPEG (ISO 10918-1, lossless and JPEG-LS included): the SOFn / SOF55 segment's lines and samples per line.
JPEG 2000 and HTJ2K: the SIZ segment's reference grid minus its offsets. RLE carries no size of its own (pydicom
decodes its segments into a Rows x Columns buffer).
"""
from __future__ import annotations

from imaging.dicom import uids

JPEG_SYNTAXES = {uids.JPEG_BASELINE, uids.JPEG_EXTENDED, uids.JPEG_LOSSLESS_P14, uids.JPEG_LOSSLESS_SV1,
                 uids.JPEG_LS_LOSSLESS, uids.JPEG_LS_NEAR_LOSSLESS}
J2K_SYNTAXES = {uids.J2K_LOSSLESS, uids.J2K, uids.HTJ2K_LOSSLESS, uids.HTJ2K_LOSSLESS_RPCL, uids.HTJ2K}
# Start-of-frame markers: SOF0-SOF15 less DHT (C4), JPG (C8) and DAC (CC); SOF55 (F7) is JPEG-LS.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_SIZ = b"\xff\x51"
# Markers that stand alone, without a length: TEM, RST0-7, SOI, EOI.
_STANDALONE = {0x01, *range(0xD0, 0xDA)}


class FrameSizeMismatch(ValueError):
    """A frame's codestream declares more pixels than the instance's Rows x Columns."""


def declared_size(codestream: bytes, transfer_syntax: str) -> tuple[int, int] | None:
    """(rows, columns) from the codestream's header, or None when the syntax has none or the header is not
    found (the decoder then reports what is wrong)."""
    if transfer_syntax in JPEG_SYNTAXES:
        return _jpeg_size(codestream)
    if transfer_syntax in J2K_SYNTAXES:
        return _j2k_size(codestream)
    return None


def check_declared_size(codestream: bytes, transfer_syntax: str, rows: int, columns: int) -> None:
    """Raise FrameSizeMismatch when the codestream would decode to more pixels than rows x columns."""
    size = declared_size(codestream, transfer_syntax)
    if size is not None and size[0] * size[1] > rows * columns:
        raise FrameSizeMismatch(
            f"A frame's codestream declares {size[1]}x{size[0]} pixels, more than the {columns}x{rows} of "
            f"Columns x Rows"
        )


def _jpeg_size(codestream: bytes) -> tuple[int, int] | None:
    position = 2 if codestream[:2] == b"\xff\xd8" else None
    if position is None:
        return None
    while position + 4 <= len(codestream):
        if codestream[position] != 0xFF:
            return None
        marker = codestream[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _STANDALONE:
            position += 2
            continue
        length = int.from_bytes(codestream[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF:
            if position + 9 > len(codestream):
                return None
            rows = int.from_bytes(codestream[position + 5 : position + 7], "big")
            columns = int.from_bytes(codestream[position + 7 : position + 9], "big")
            return rows, columns
        if marker == 0xDA:  # start of scan before any frame header
            return None
        position += 2 + length
    return None


def _j2k_size(codestream: bytes) -> tuple[int, int] | None:
    position = codestream.find(_SIZ, 0, 4096)
    if position < 0 or position + 22 > len(codestream):
        return None
    # SIZ: marker, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz (4 bytes each after Rsiz)
    x_size, y_size, x_offset, y_offset = (int.from_bytes(codestream[position + 6 + 4 * i : position + 10 + 4 * i],
                                                         "big") for i in range(4))
    return max(y_size - y_offset, 0), max(x_size - x_offset, 0)
