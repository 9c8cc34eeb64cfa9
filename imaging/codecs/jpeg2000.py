"""JPEG 2000 (Part 1) frames through imagecodecs (OpenJPEG): the lossless syntax the store can write instead of HTJ2K
(storage format JPEG_2000_LOSSLESS), and lossy frames kept as received. No Django; a plugin of
`imaging.codecs.registry`.
"""
from __future__ import annotations

import imagecodecs
import numpy as np

from imaging.codecs import htj2k
from imaging.codecs.base import Codec, SyntaxFacts
from imaging.codecs.description import PixelDescription
from imaging.dicom import uids


class Jpeg2000Codec(Codec):
    """Full-resolution decoding only: our JPEG 2000 codestreams carry no tile-part per resolution to read alone."""

    name = "imagecodecs (OpenJPEG)"
    syntaxes = {
        uids.J2K_LOSSLESS: SyntaxFacts(lossless=True, media_type="image/j2c", encodes=True),
        uids.J2K: SyntaxFacts(lossless=False, media_type="image/j2c"),
    }

    def is_available(self) -> bool:
        return bool(imagecodecs.JPEG2K.available)

    def decode(self, frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
        return imagecodecs.jpeg2k_decode(frame_bytes)

    def encode(self, samples: np.ndarray, *, transfer_syntax: str, rgb: bool) -> bytes:
        """Reversible 5/3 wavelet, as many decomposition levels as our HTJ2K frames of the same size have."""
        if transfer_syntax != uids.J2K_LOSSLESS:
            return super().encode(samples, transfer_syntax=transfer_syntax, rgb=rgb)
        height, width = samples.shape[:2]
        return bytes(
            imagecodecs.jpeg2k_encode(
                np.ascontiguousarray(samples),
                level=0,
                codecformat="J2K",
                reversible=True,
                mct=rgb,
                resolutions=htj2k.decomposition_levels(width, height) + 1,
            )
        )
