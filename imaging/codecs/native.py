"""Uncompressed frames as the store keeps them (Explicit VR Little Endian: float data, 1-bit segmentations, samples
wider than 16 bits). No Django; a plugin of `imaging.codecs.registry`.

Received native datasets (implicit, deflated and big endian included) are read whole by
`imaging.codecs.dataset_pixels` at import; their frames are stored as HTJ2K or as little-endian bytes, so only this
one uncompressed syntax is ever decoded frame by frame.
"""
from __future__ import annotations

import numpy as np

from imaging.codecs.base import Codec, SyntaxFacts
from imaging.codecs.description import PixelDescription
from imaging.dicom import uids


class NativeCodec(Codec):
    """Little-endian samples as a view of the frame's bytes; 1-bit frames unpacked to one byte a pixel. Encoding
    writes the samples' own type little endian (callers choose the type: BitsAllocated and PixelRepresentation)."""

    name = "numpy"
    syntaxes = {uids.EXPLICIT_LE: SyntaxFacts(lossless=True, media_type="application/octet-stream",
                                                encodes=True)}

    def decode(self, frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
        d = description
        shape = (d.rows, d.columns) + ((d.samples_per_pixel,) if d.samples_per_pixel > 1 else ())
        if d.bits_allocated == 1:
            bits = np.unpackbits(np.frombuffer(frame_bytes, np.uint8), bitorder="little")[: d.rows * d.columns]
            return bits.reshape(shape).astype(np.uint8)
        dtype = np.dtype(f"<{'i' if d.signed else 'u'}{d.bits_allocated // 8}")
        return np.frombuffer(frame_bytes, dtype).reshape(shape)

    def encode(self, samples: np.ndarray, *, transfer_syntax: str, rgb: bool) -> bytes:
        if transfer_syntax != uids.EXPLICIT_LE:
            return super().encode(samples, transfer_syntax=transfer_syntax, rgb=rgb)
        return np.ascontiguousarray(samples).astype(samples.dtype.newbyteorder("<"), copy=False).tobytes()
