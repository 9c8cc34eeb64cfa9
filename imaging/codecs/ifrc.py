"""Image Frame Resolution Checksums (SPEC 6.4).

For each resolution level, smallest first: the stored codestream decoded at that level, samples in raster order
with components interleaved, each written as 1 byte (precision <= 8) or little-endian 2 bytes (<= 16; 4 bytes for
32-bit data), through CRC-32. Reduced levels are clamped to the sample range. They are computed exactly from the
full-resolution samples (imaging.codecs.wavelet explains why not with a decoder), which the caller has proven the
codestream decodes to.
"""
from __future__ import annotations

import zlib

import numpy as np

from imaging.codecs.wavelet import reduced_resolutions


def sample_range(bits_stored: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    return 0, (1 << bits_stored) - 1


def canonical_samples(samples: np.ndarray, *, bits_allocated: int, signed: bool) -> np.ndarray:
    """Samples laid out as the checksum reads them: interleaved, little-endian, 1, 2 or 4 bytes each. A frame
    already in that layout is returned as it is, so checksumming it copies nothing."""
    size = 1 if bits_allocated <= 8 else 2 if bits_allocated <= 16 else 4
    dtype = np.dtype(f"<{'i' if signed else 'u'}{size}")
    return np.ascontiguousarray(samples, dtype=dtype)


def canonical_bytes(samples: np.ndarray, *, bits_allocated: int, signed: bool) -> bytes:
    return canonical_samples(samples, bits_allocated=bits_allocated, signed=signed).tobytes()


def _crc32_function():
    """libdeflate's CRC-32 (through imagecodecs) uses carry-less multiplication and runs about ten times faster
    than zlib's on a frame; both compute the same standard CRC-32."""
    try:
        from imagecodecs import deflate_crc32

        if deflate_crc32(b"123456789") == zlib.crc32(b"123456789"):
            return deflate_crc32
    except ImportError:  # an imagecodecs build without libdeflate
        pass
    return zlib.crc32


_crc32 = _crc32_function()


def crc32(samples: np.ndarray, *, bits_allocated: int, signed: bool) -> int:
    return _crc32(canonical_samples(samples, bits_allocated=bits_allocated, signed=signed)) & 0xFFFFFFFF


def frame_checksums(
    full_frame: np.ndarray,
    *,
    levels: int,
    rct: bool,
    bits_allocated: int,
    bits_stored: int,
    signed: bool,
    sample_bounds: tuple[int, int] | None = None,
) -> list[dict[str, int]]:
    """Checksums from the base level to full resolution of a lossless codestream with `levels` decomposition
    levels (`rct`: with the reversible colour transform) that decodes to `full_frame`, whose (min, max) are
    `sample_bounds` when the caller knows them."""
    low, high = sample_range(bits_stored, signed)
    entries = []
    for reduced in reversed(reduced_resolutions(full_frame, levels, rct=rct, sample_bounds=sample_bounds)):
        if reduced.size and (int(reduced.min()) < low or int(reduced.max()) > high):
            reduced = np.clip(reduced, low, high)
        entries.append(_entry(reduced, bits_allocated=bits_allocated, signed=signed))
    entries.append(_entry(full_frame, bits_allocated=bits_allocated, signed=signed))
    return entries


def _entry(samples: np.ndarray, *, bits_allocated: int, signed: bool) -> dict[str, int]:
    height, width = samples.shape[:2]
    checksum = crc32(samples, bits_allocated=bits_allocated, signed=signed)
    return {"Width": int(width), "Height": int(height), "Checksum": checksum}
