"""The interface every codec plugin implements, and the errors the registry raises; no Django.

A codec is one library's view of a family of transfer syntaxes (modelled on pydicom's decoder plugins,
`pydicom.pixels.decoders`): it declares the syntaxes it handles with what the store needs to know of each (lossless
or not, the DICOMweb media type, whether it can write it), says whether its library is installed, and decodes one
frame's bytes to samples, at full resolution or, where the codestream allows it exactly, a few resolution levels
down. It knows nothing of datasets, storage or HTTP: callers hand it bytes and a `PixelDescription`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from imaging.codecs.description import PixelDescription


class CodecError(ValueError):
    """A frame cannot be decoded or encoded as asked."""


class UnsupportedTransferSyntax(CodecError):
    """No registered codec handles the transfer syntax (or not in the direction asked)."""


class FrameDecodeError(CodecError):
    """The codec refused the frame's bytes (corrupt, truncated, not what the syntax says)."""


@dataclass(frozen=True)
class SyntaxFacts:
    """What the store needs to know of one transfer syntax a codec handles."""

    lossless: bool
    media_type: str  # of a single frame, as DICOMweb's WADO-RS frame retrieval names it (PS3.18 8.7.3.3.2)
    encodes: bool = False  # the codec can write frames in this syntax, not only read them


class Codec(ABC):
    """One codec plugin. Subclasses set `name` and `syntaxes` and implement `decode`; the rest is optional."""

    name: ClassVar[str]
    syntaxes: ClassVar[Mapping[str, SyntaxFacts]]

    def is_available(self) -> bool:
        """Whether the library this codec needs is installed and working here."""
        return True

    @abstractmethod
    def decode(self, frame_bytes: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
        """One frame as samples, (rows, cols) or (rows, cols, samples). `skip_levels` asks for that many resolution
        levels below full; a codec that cannot drop them exactly (`reducible_levels` is 0) decodes in full.
        Library errors are left to the registry, which turns them into FrameDecodeError."""

    def reducible_levels(self, description: PixelDescription) -> int:
        """How many resolution levels a frame so described can be decoded below full, exactly; 0 for none."""
        return 0

    def encode(self, samples: np.ndarray, *, transfer_syntax: str, rgb: bool) -> bytes:
        """One frame's samples written in `transfer_syntax` (a syntax declared with `encodes=True`); `rgb` asks for
        the reversible colour transform on three-sample frames."""
        raise UnsupportedTransferSyntax(f"{self.name} cannot write frames as {transfer_syntax}")
