"""JPEG baseline frames, kept as received, through imagecodecs (libjpeg-turbo). No Django; a plugin of
`imaging.codecs.registry`. Other JPEG processes (extended, lossless, JPEG-LS) are decoded only at import, by
pydicom's plugins (`imaging.codecs.dataset_pixels`), and stored as lossless HTJ2K, so no stored frame is in them.
"""
from __future__ import annotations

import imagecodecs
import numpy as np

from imaging.codecs.base import Codec, SyntaxFacts
from imaging.codecs.description import PixelDescription
from imaging.dicom import uids


class JpegBaselineCodec(Codec):
    """libjpeg converts YCbCr to RGB as it decodes (see `PixelDescription.decoded_photometric`)."""

    name = "imagecodecs (libjpeg-turbo)"
    syntaxes = {uids.JPEG_BASELINE: SyntaxFacts(lossless=False, media_type="image/jpeg")}

    def is_available(self) -> bool:
        return bool(imagecodecs.JPEG8.available)

    def decode(self, frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
        return imagecodecs.jpeg8_decode(frame_bytes)
