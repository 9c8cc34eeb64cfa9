"""multipart/related bodies for DICOMweb (PS3.18 8.7.1.2, RFC 2387) and the Accept header they are negotiated by;
no Django.

A body is written part by part, each part's content piece by piece, so a study of any size goes out holding one
frame of it: `--boundary CRLF`, the part's headers, CRLF, its content, CRLF, ...; after the last part
`--boundary--`. `multipart_length` gives the body's length up front when every part's length is known.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

CRLF = b"\r\n"


def new_boundary() -> str:
    """A boundary no DICOM content contains by chance (random, 32 hex digits)."""
    return uuid.uuid4().hex


@dataclass
class Part:
    """One body part: its Content-Type and its content as pieces (read lazily, once)."""

    content_type: str
    pieces: Iterable[bytes]


def _part_head(boundary: str, content_type: str) -> bytes:
    return f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("ascii")


def _tail(boundary: str) -> bytes:
    return f"--{boundary}--".encode("ascii")


def multipart_pieces(parts: Iterable[Part], boundary: str) -> Iterator[bytes]:
    """The body of `parts` piece by piece; a part's content is only read when its turn comes."""
    for part in parts:
        yield _part_head(boundary, part.content_type)
        for piece in part.pieces:
            if piece:
                yield piece
        yield CRLF
    yield _tail(boundary)


def multipart_body(parts: Iterable[tuple[str, bytes]], boundary: str) -> bytes:
    """A whole body of small parts (content type, content), as one bytes object."""
    return b"".join(multipart_pieces((Part(content_type, [content]) for content_type, content in parts), boundary))


def multipart_length(parts: Iterable[tuple[str, int]], boundary: str) -> int:
    """The length of the body `multipart_pieces` writes for parts of these content types and content lengths."""
    return sum(len(_part_head(boundary, content_type)) + size + len(CRLF) for content_type, size in parts) + len(
        _tail(boundary))


def multipart_content_type(media_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    """The response's Content-Type: `multipart/related; type="<media>"[; transfer-syntax=<uid>]; boundary=<b>`."""
    syntax = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{media_type}"{syntax}; boundary={boundary}'


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: its media type (lower case) and parameters (names lower case, values
    unquoted)."""

    media_type: str
    parameters: dict[str, str]

    @property
    def transfer_syntax(self) -> str | None:
        return self.parameters.get("transfer-syntax")

    @property
    def part_type(self) -> str | None:
        """For `multipart/related`, the media type of its parts (`type=`)."""
        value = self.parameters.get("type")
        return value.lower() if value else None


def accept_entries(accept: str | None) -> list[MediaRange]:
    """The entries of an Accept header in the order given (DICOMweb tries them in order, SPEC 11.3); commas and
    semicolons inside quoted values do not split. An empty or missing header gives no entries."""
    entries: list[MediaRange] = []
    for entry in _split(accept or "", ","):
        fields = _split(entry, ";")
        if not fields or not fields[0]:
            continue
        parameters: dict[str, str] = {}
        for field in fields[1:]:
            name, _, value = field.partition("=")
            parameters[name.strip().lower()] = value.strip().strip('"').strip()
        entries.append(MediaRange(fields[0].strip().lower(), parameters))
    return entries


def _split(text: str, separator: str) -> list[str]:
    pieces, current, quoted = [], [], False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == separator and not quoted:
            pieces.append("".join(current).strip())
            current = []
        else:
            current.append(character)
    pieces.append("".join(current).strip())
    return [piece for piece in pieces if piece]
