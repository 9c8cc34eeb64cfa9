"""What a frame's pixels are: one description used by the import pipeline, the codecs and the viewer; no Django.

A description comes from a received dataset (`imaging.codecs.dataset_pixels.describe`, checked strictly: a file
that lies about its pixels fails) or from the stored normalized metadata (`PixelDescription.from_dicom`, lenient:
the file was checked when it was imported). It must not decode anything itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imaging.dicom import uids

# What a frame holds once our lossless codecs have decoded it: the codec undid the reversible and irreversible colour
# transforms (YBR_RCT, YBR_ICT) and pydicom upsampled 4:2:2 chroma at import (PS3.5 8.2.1), so those frames hold
# full RGB or YBR_FULL samples. YBR_PARTIAL_420 is not in the table and not supported: it belongs to the MPEG and HEVC
# syntaxes (PS3.3 C.7.6.3.1.2), which nothing here decodes, so the import refuses them and no stored frame is in it.
DECODED_PHOTOMETRIC = {"YBR_FULL_422": "YBR_FULL", "YBR_RCT": "RGB", "YBR_ICT": "RGB"}


def decoded_photometric(photometric: str) -> str:
    """The photometric interpretation of a frame our lossless codecs decoded from one declared as `photometric`."""
    return DECODED_PHOTOMETRIC.get(photometric, photometric)


@dataclass(frozen=True)
class PixelDescription:
    """The image pixel module of one instance, and the transfer syntax its frames are encoded in."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    transfer_syntax: str
    number_of_frames: int = 1
    is_float: bool = False

    @classmethod
    def from_dicom(cls, dicom: dict[str, Any], stored_transfer_syntax: str | None) -> PixelDescription:
        """The description of a stored instance from its normalized metadata (absent values take their defaults;
        frames without a recorded syntax are our lossless HTJ2K)."""
        bits_allocated = int(dicom.get("BitsAllocated") or 8)
        return cls(
            rows=int(dicom.get("Rows") or 0), columns=int(dicom.get("Columns") or 0),
            samples_per_pixel=int(dicom.get("SamplesPerPixel") or 1), bits_allocated=bits_allocated,
            bits_stored=int(dicom.get("BitsStored") or bits_allocated),
            signed=int(dicom.get("PixelRepresentation") or 0) == 1,
            photometric=str(dicom.get("PhotometricInterpretation") or "MONOCHROME2").strip(),
            transfer_syntax=stored_transfer_syntax or uids.HTJ2K_LOSSLESS_RPCL,
            number_of_frames=_positive_int(dicom.get("NumberOfFrames")),
        )

    @property
    def frame_size_in_bytes(self) -> int:
        bits = self.rows * self.columns * self.samples_per_pixel * self.bits_allocated
        return (bits + 7) // 8

    @property
    def decoded_photometric(self) -> str:
        """The photometric interpretation of a decoded frame: lossy JPEG and JPEG 2000 decoders return colour as
        RGB, our lossless codecs as the DECODED_PHOTOMETRIC table says."""
        if self.transfer_syntax in (uids.JPEG_BASELINE, uids.J2K):
            return "RGB" if self.samples_per_pixel == 3 else self.photometric
        return decoded_photometric(self.photometric)

    @property
    def stored_as_received(self) -> bool:
        """Lossy syntaxes, float data, 1-bit segmentations and samples wider than 16 bits are kept as they are.

        HTJ2K above 16 bits is beyond what the independent verifier (OpenJPEG) decodes, so such frames stay
        uncompressed rather than unverified.
        """
        return (
            self.transfer_syntax in uids.AS_RECEIVED
            or self.is_float
            or self.bits_allocated == 1
            or self.bits_allocated > 16
        )


def _positive_int(value: Any) -> int:
    """An IS value from the metadata ("12", 12) as a count; 1 when absent or not a positive whole number."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if number > 0 else 1
