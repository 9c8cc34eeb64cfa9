"""The codec registry: for a transfer syntax UID, the codec that decodes (and maybe encodes) its frames, whether it
is lossless, and its DICOMweb media type. No Django.

Every caller that turns stored or encoded frame bytes into samples, or samples into frame bytes, goes through here:
the import pipeline's encoder, the viewer's render service, GetDICOMInstance. Received datasets as a whole are decoded
by pydicom's own plugins in `imaging.codecs.dataset_pixels`; this registry is for single frames.

Library errors are translated here, once: a syntax no codec handles raises UnsupportedTransferSyntax (naming it),
bytes a codec refuses raise FrameDecodeError. It must not hold policy (what the store keeps as received, what it
serves): that belongs to the pipeline and the services.
"""
from __future__ import annotations

import numpy as np

from imaging.codecs.base import Codec, FrameDecodeError, SyntaxFacts, UnsupportedTransferSyntax
from imaging.codecs.description import PixelDescription
from imaging.codecs.htj2k import Htj2kCodec
from imaging.codecs.jpeg import JpegBaselineCodec
from imaging.codecs.jpeg2000 import Jpeg2000Codec
from imaging.codecs.native import NativeCodec
from imaging.codecs.openjpeg_check import OpenJpegError
from imaging.dicom import uids

_CODECS: dict[str, Codec] = {}


def codec_register(codec: Codec) -> None:
    """Make `codec` the one for each syntax it declares; two codecs for one syntax is a programming error."""
    for transfer_syntax in codec.syntaxes:
        if transfer_syntax in _CODECS:
            raise ValueError(f"{transfer_syntax} already has a codec: {_CODECS[transfer_syntax].name}")
        _CODECS[transfer_syntax] = codec


def _registered(transfer_syntax: str) -> Codec:
    codec = _CODECS.get(transfer_syntax)
    if codec is None:
        raise UnsupportedTransferSyntax(f"No codec decodes frames encoded as {transfer_syntax}")
    return codec


def codec_for(transfer_syntax: str) -> Codec:
    """The codec for frames in `transfer_syntax`; UnsupportedTransferSyntax when there is none, or when its library
    is missing on this machine (said here, rather than as a decode failure on the first frame)."""
    codec = _registered(transfer_syntax)
    if not codec.is_available():
        raise UnsupportedTransferSyntax(
            f"The {codec.name} codec for {transfer_syntax} is not available here: its library is not installed")
    return codec


def syntax_facts(transfer_syntax: str) -> SyntaxFacts:
    """What a syntax is (lossless, media type, writable): facts that hold whether or not its codec can run here."""
    return _registered(transfer_syntax).syntaxes[transfer_syntax]


def supported_syntaxes() -> frozenset[str]:
    """The transfer syntaxes whose frames can be decoded here."""
    return frozenset(syntax for syntax, codec in _CODECS.items() if codec.is_available())


def is_lossless(transfer_syntax: str) -> bool:
    return syntax_facts(transfer_syntax).lossless


def media_type(transfer_syntax: str) -> str:
    """The media type of one frame in `transfer_syntax`, for DICOMweb's frame and bulk data responses."""
    return syntax_facts(transfer_syntax).media_type


def frame_media_type(transfer_syntax: str | None) -> str:
    """The media type of a stored frame (GetImageFrame, DICOMweb): frames stored before syntaxes were recorded are
    HTJ2K, and a syntax without a codec is sent as plain bytes."""
    try:
        return media_type(transfer_syntax or uids.HTJ2K_LOSSLESS_RPCL)
    except UnsupportedTransferSyntax:
        return "application/octet-stream"


def can_encode(transfer_syntax: str) -> bool:
    codec = _CODECS.get(transfer_syntax)
    return codec is not None and codec.syntaxes[transfer_syntax].encodes and codec.is_available()


def frame_decode(frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
    """One frame in `description.transfer_syntax` as samples, (rows, cols) or (rows, cols, samples), `skip_levels`
    resolution levels below full where its codec can do that exactly (`frame_reducible_levels`), else in full."""
    codec = codec_for(description.transfer_syntax)
    try:
        return codec.decode(frame_bytes, description, skip_levels=skip_levels)
    except (ImportError, RuntimeError, ValueError, OpenJpegError) as e:  # ImportError: imagecodecs' DelayedImportError
        raise FrameDecodeError(f"the frame cannot be decoded: {type(e).__name__}") from e


def frame_reducible_levels(description: PixelDescription) -> int:
    """How many resolution levels below full a frame so described can be decoded exactly; 0 for unknown syntaxes."""
    codec = _CODECS.get(description.transfer_syntax)
    return codec.reducible_levels(description) if codec is not None else 0


def frame_encode(samples: np.ndarray, *, transfer_syntax: str, rgb: bool = False) -> bytes:
    """One frame's samples written in `transfer_syntax`; UnsupportedTransferSyntax where no codec writes it."""
    if not can_encode(transfer_syntax):
        raise UnsupportedTransferSyntax(f"No codec encodes frames as {transfer_syntax}")
    return codec_for(transfer_syntax).encode(samples, transfer_syntax=transfer_syntax, rgb=rgb)


for _codec in (NativeCodec(), Htj2kCodec(), Jpeg2000Codec(), JpegBaselineCodec()):
    codec_register(_codec)
