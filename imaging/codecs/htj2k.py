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
