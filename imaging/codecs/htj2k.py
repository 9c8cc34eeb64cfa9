"""Lossless HTJ2K as the store writes it (SPEC 6.1), through imagecodecs (OpenJPH).

RPCL progression, reversible 5/3 wavelet, one quality layer, TLM markers and one tile-part per resolution, so a
byte prefix of the codestream decodes to a lower resolution. The reversible colour transform is used only for
RGB input. Precision follows the container (8, 16 or 32 bits): OpenJPH's encoder takes it from the array's dtype.
"""
from __future__ import annotations

import math

import imagecodecs
import numpy as np

MAX_LEVELS = 5
MIN_BASE_SIZE = 64
RPCL = 2  # progression order code in the COD marker


def decomposition_levels(width: int, height: int) -> int:
    """The largest d <= 5 with ceil(max(W, H) / 2^d) >= 64.

    SPEC 6.1 writes min(W, H) but says the rule must reproduce the published 640x480 example with three levels;
    only the larger side does (480 / 2^3 = 60 < 64, 640 / 2^3 = 80), so the published behaviour wins.
    """
    largest = max(width, height)
    levels = 0
    for d in range(1, MAX_LEVELS + 1):
        if math.ceil(largest / 2**d) >= MIN_BASE_SIZE:
            levels = d
    return levels


def encode_lossless(frame: np.ndarray, *, rgb: bool) -> bytes:
    """Encode a (rows, cols) or (rows, cols, samples) array losslessly."""
    height, width = frame.shape[:2]
    levels = decomposition_levels(width, height)
    return bytes(
        imagecodecs.htj2k_encode(
            np.ascontiguousarray(frame),
            reversible=True,
            rgb=bool(rgb and frame.ndim == 3),
            # imagecodecs reads 0 as "use the default (5)", so images small enough for 0 levels get 1.
            resolutions=max(levels, 1),
            tlm=True,
            tilepart=imagecodecs.HTJ2K.TILEPART.RESOLUTIONS,
        )
    )


def decode(codestream: bytes, *, skip_levels: int = 0) -> np.ndarray:
    """Decode, dropping `skip_levels` resolution levels; colour comes back interleaved (rows, cols, samples)."""
    return imagecodecs.htj2k_decode(codestream, skipres=skip_levels or None, planar=False)


def codestream_levels(codestream: bytes) -> int:
    """The number of decomposition levels recorded in the COD marker."""
    position = codestream.find(b"\xff\x52")
    if position < 0:
        raise ValueError("no COD marker in the codestream")
    return codestream[position + 9]  # FF52, Lcod(2), Scod, progression, layers(2), MCT, then levels


_SOT, _TLM, _SOC, _EOC = 0xFF90, 0xFF55, 0xFF4F, b"\xff\xd9"


def main_header_end(head: bytes) -> tuple[int, list[int]] | None:
    """Where the first tile-part starts, and the tile-part lengths its TLM marker lists, from the first bytes of
    a codestream; None when `head` does not reach the first tile-part or has no usable TLM."""
    if len(head) < 4 or int.from_bytes(head[0:2], "big") != _SOC:
        return None
    position, lengths = 2, None
    while position + 4 <= len(head):
        marker = int.from_bytes(head[position : position + 2], "big")
        if marker == _SOT:
            return (position, lengths) if lengths else None
        segment = int.from_bytes(head[position + 2 : position + 4], "big")
        if marker == _TLM and position + 2 + segment <= len(head):
            lengths = _tlm_lengths(head[position + 4 : position + 2 + segment], lengths or [])
        position += 2 + segment
    return None


def _tlm_lengths(segment: bytes, lengths: list[int]) -> list[int] | None:
    """Ptlm values of one TLM segment (Ztlm, Stlm, then Ttlm/Ptlm pairs), appended to `lengths`."""
    if len(segment) < 2:
        return None
    stlm = segment[1]
    tile_bytes = (stlm >> 4) & 0x3
    length_bytes = 4 if stlm & 0x40 else 2
    entry = tile_bytes + length_bytes
    body = segment[2:]
    if entry == 0 or len(body) % entry:
        return None
    for offset in range(0, len(body), entry):
        lengths.append(int.from_bytes(body[offset + tile_bytes : offset + entry], "big"))
    return lengths


def reduced_prefix_length(head: bytes, skip_levels: int) -> int | None:
    """How many leading bytes of one of our codestreams hold every resolution but the `skip_levels` highest
    (a single tile, one tile-part per resolution in order, lengths in TLM: SPEC 6.1); None for any other
    layout, which must then be read whole."""
    found = main_header_end(head)
    if found is None:
        return None
    start, lengths = found
    cod = head.find(b"\xff\x52", 0, start)
    if cod < 0 or head[cod + 5] != RPCL:
        return None
    levels = codestream_levels(head)
    skip_levels = min(skip_levels, levels)
    if len(lengths) != levels + 1 or skip_levels <= 0:
        return None
    return start + sum(lengths[: levels + 1 - skip_levels])


def reduced_codestream(prefix: bytes) -> bytes:
    """A prefix cut at a tile-part boundary, made a complete codestream again (an EOC marker after it)."""
    return prefix + _EOC
