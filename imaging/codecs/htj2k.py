"""Lossless HTJ2K as the store writes it (SPEC 6.1), through imagecodecs (OpenJPH).

RPCL progression, reversible 5/3 wavelet, one quality layer, TLM markers and one tile-part per resolution, so a
byte prefix of the codestream decodes to a lower resolution. The reversible colour transform is used only for
RGB input. Precision follows the container (8, 16 or 32 bits): OpenJPH's encoder takes it from the array's dtype.

`Htj2kCodec` is the registry's plugin for the three HTJ2K syntaxes (`imaging.codecs.registry`); the functions
above it are the codestream layout the store writes and reads ranges of.
"""
from __future__ import annotations

import math

import imagecodecs
import numpy as np

from imaging.codecs import openjpeg_check
from imaging.codecs.base import Codec, SyntaxFacts
from imaging.codecs.description import PixelDescription
from imaging.codecs.ifrc import sample_range
from imaging.dicom import uids

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


class Htj2kCodec(Codec):
    """HTJ2K through imagecodecs (OpenJPH); reduced resolutions through OpenJPEG where its C API is available.

    OpenJPH writes a reduced level's wavelet band into the container type and wraps where the band overshoots it
    (just below 0 next to a bright edge comes back near 65,535); OpenJPEG clamps. So a reduced level is exact
    through OpenJPEG, and through OpenJPH only where two spare bits above BitsStored let the wrap be undone.
    """

    name = "imagecodecs (OpenJPH)"
    syntaxes = {
        uids.HTJ2K_LOSSLESS_RPCL: SyntaxFacts(lossless=True, media_type="image/jph", encodes=True),
        uids.HTJ2K_LOSSLESS: SyntaxFacts(lossless=True, media_type="image/jph"),
        uids.HTJ2K: SyntaxFacts(lossless=False, media_type="image/jphc"),
    }

    def is_available(self) -> bool:
        return bool(imagecodecs.HTJ2K.available)

    def decode(self, frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
        skip_levels = min(skip_levels, codestream_levels(frame_bytes)) if skip_levels else 0
        if skip_levels and openjpeg_check.available():
            return _reduced_clamped(openjpeg_check.decode_reduced(frame_bytes, skip_levels), description)
        if skip_levels and _wrap_can_be_undone(description):
            return _reduced_unwrapped(decode(frame_bytes, skip_levels=skip_levels), description)
        return decode(frame_bytes)

    def reducible_levels(self, description: PixelDescription) -> int:
        if not openjpeg_check.available() and not _wrap_can_be_undone(description):
            return 0
        return decomposition_levels(description.columns, description.rows) or 1

    def encode(self, samples: np.ndarray, *, transfer_syntax: str, rgb: bool) -> bytes:
        if transfer_syntax != uids.HTJ2K_LOSSLESS_RPCL:
            return super().encode(samples, transfer_syntax=transfer_syntax, rgb=rgb)
        return encode_lossless(samples, rgb=rgb)


def _reduced_clamped(band: np.ndarray, description: PixelDescription) -> np.ndarray:
    """A reduced resolution from OpenJPEG (int32, never wrapped) as stored samples: clamped to the sample range,
    as a full-resolution decode would be, in the type a full decode gives."""
    low, high = sample_range(description.bits_stored, description.signed)
    dtype = np.dtype(f"{'i' if description.signed else 'u'}{1 if description.bits_allocated <= 8 else 2}")
    return np.clip(band, low, high).astype(dtype)


def _wrap_can_be_undone(description: PixelDescription) -> bool:
    return description.bits_allocated == 16 and description.bits_stored <= 14


def _reduced_unwrapped(decoded: np.ndarray, description: PixelDescription) -> np.ndarray:
    """A reduced resolution from OpenJPH (used only where OpenJPEG's C API is missing) as stored samples: with at
    least two spare bits above BitsStored (`_wrap_can_be_undone`) reading the container as signed undoes the wrap,
    and the band is clamped to the sample range as a full-resolution decode would be."""
    low, high = sample_range(description.bits_stored, description.signed)
    return np.clip(decoded.view(np.int16), low, high).astype(decoded.dtype)
