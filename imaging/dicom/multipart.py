"""Reading a `multipart/related` body (RFC 2046 5.1, RFC 2387) part by part from a stream, for STOW-RS (SPEC 11.5).

A STOW body may be a gigabyte, so nothing here holds a whole body or a whole part: the stream is read in chunks, and
each part's content is handed on as chunks while the parser looks for the next delimiter (`CRLF--boundary`). It keeps
at most one chunk plus the delimiter's length in memory; only a part's header block is held whole, and it is bounded.

The body is a preamble (ignored), then for each part a delimiter line, header lines, an empty line and the content;
after the last part the close delimiter `--boundary--` and an epilogue (ignored). A body that ends before the close
delimiter, a header block over the bound or a malformed header line is a MultipartError, whose message names the
broken rule. Pure parsing: no Django, no DICOM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

CRLF = b"\r\n"
CHUNK_BYTES = 256 * 1024
MAX_HEADER_BYTES = 16 * 1024
# RFC 2046: 1 to 70 characters from this set (a space only inside, never last).
_BOUNDARY_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")
_TOKEN_CHARS = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class MultipartError(ValueError):
    """The body (or its Content-Type) is not a well-formed multipart/related message."""


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type: `type/subtype` lower-cased, and its parameters (names lower-cased, values unquoted)."""

    essence: str
    params: dict[str, str]


def media_type_parse(header: str) -> MediaType:
    """`multipart/related; type="application/dicom"; boundary=abc` → MediaType. Parameter values may be quoted
    (with backslash escapes) or plain tokens; a malformed header is a MultipartError."""
    essence, _, rest = header.partition(";")
    essence = essence.strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not slash or not kind or not subtype or not set(kind + subtype) <= _TOKEN_CHARS:
        raise MultipartError(f"Content-Type must be a media type like type/subtype, not {essence[:64]!r}")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        position = _skip(rest, position, " \t;")
        if position >= len(rest):
            break
        equals = rest.find("=", position)
        if equals < 0:
            raise MultipartError("Content-Type parameters must have the form name=value")
        name = rest[position:equals].strip().lower()
        if not name or not set(name) <= _TOKEN_CHARS:
            raise MultipartError("Content-Type parameters must have the form name=value")
        value, position = _param_value(rest, equals + 1)
        params[name] = value
    return MediaType(essence=essence, params=params)


def _skip(text: str, position: int, characters: str) -> int:
    while position < len(text) and text[position] in characters:
        position += 1
    return position


def _param_value(text: str, position: int) -> tuple[str, int]:
    position = _skip(text, position, " \t")
    if position < len(text) and text[position] == '"':
        value: list[str] = []
        position += 1
        while position < len(text):
            character = text[position]
            if character == "\\" and position + 1 < len(text):
                value.append(text[position + 1])
                position += 2
            elif character == '"':
                return "".join(value), position + 1
            else:
                value.append(character)
                position += 1
        raise MultipartError("A quoted Content-Type parameter value is not closed")
    end = text.find(";", position)
    end = len(text) if end < 0 else end
    return text[position:end].strip(), end


def boundary_check(boundary: str) -> bytes:
    """The boundary as bytes, if RFC 2046 allows it."""
    if not 1 <= len(boundary) <= 70 or not set(boundary) <= _BOUNDARY_CHARS or boundary.endswith(" "):
        raise MultipartError("The multipart boundary must be 1 to 70 characters allowed by RFC 2046")
    return boundary.encode("ascii")


class Part:
    """One part: its headers (names lower-cased) and its content, read once with `chunks()` before the next part
    is asked for (an unread part is skipped)."""

    def __init__(self, headers: dict[str, str], reader: _Reader, delimiter: bytes) -> None:
        self.headers = headers
        self._reader, self._delimiter = reader, delimiter
        self._consumed = False

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def chunks(self) -> Iterator[bytes]:
        if self._consumed:
            raise MultipartError("A part's content can be read only once")
        self._consumed = True
        yield from self._reader.until(self._delimiter)


class _Reader:
    """A buffered view of the stream: read up to a marker, handing on what lies before it in chunks."""

    def __init__(self, stream: BinaryIO, chunk_bytes: int, start: bytes = b"") -> None:
        self.stream, self.chunk_bytes = stream, chunk_bytes
        self.buffer = bytearray(start)

    def fill(self) -> bool:
        chunk = self.stream.read(self.chunk_bytes)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def until(self, marker: bytes) -> Iterator[bytes]:
        """The bytes before the next `marker`, in chunks; the marker is consumed. The end of the stream before it
        is a MultipartError."""
        keep = len(marker) - 1
        while True:
            found = self.buffer.find(marker)
            if found >= 0:
                if found:
                    yield bytes(self.buffer[:found])
                del self.buffer[:found + len(marker)]
                return
            if len(self.buffer) > keep:
                cut = len(self.buffer) - keep
                yield bytes(self.buffer[:cut])
                del self.buffer[:cut]
            if not self.fill():
                raise MultipartError("The body ends before the multipart close delimiter")

    def read_until(self, marker: bytes, *, limit: int, what: str) -> bytes:
        """The bytes before the next `marker`, at most `limit` of them; the marker is consumed."""
        while True:
            found = self.buffer.find(marker)
            if 0 <= found <= limit:
                taken = bytes(self.buffer[:found])
                del self.buffer[:found + len(marker)]
                return taken
            if len(self.buffer) > limit + len(marker):
                raise MultipartError(f"The {what} is longer than {limit} bytes")
            if not self.fill():
                raise MultipartError(f"The body ends inside the {what}")

    def take(self, count: int) -> bytes:
        while len(self.buffer) < count and self.fill():
            pass
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken

    def starts_with(self, prefix: bytes) -> bool:
        while len(self.buffer) < len(prefix) and self.fill():
            pass
        return self.buffer.startswith(prefix)


def parts_read(stream: BinaryIO, *, boundary: str, chunk_bytes: int = CHUNK_BYTES,
               max_header_bytes: int = MAX_HEADER_BYTES) -> Iterator[Part]:
    """The parts of the multipart body in `stream`, in order. Each part's content must be read (or is skipped)
    before the next part is produced. Raises MultipartError where the body breaks the format."""
    delimiter = CRLF + b"--" + boundary_check(boundary)
    # The first delimiter may open the body without the CRLF that precedes every later one.
    reader = _Reader(stream, chunk_bytes, start=CRLF)
    for _ in reader.until(delimiter):
        pass  # the preamble
    while True:
        after = reader.take(2)
        if after == b"--":
            return  # the close delimiter; the epilogue is ignored
        if len(after) < 2:
            raise MultipartError("The body ends before the multipart close delimiter")
        reader.buffer[:0] = after
        _line_end(reader, max_header_bytes)
        headers = _headers(reader, max_header_bytes)
        part = Part(headers, reader, delimiter)
        yield part
        if not part._consumed:
            for _ in part.chunks():
                pass


def _line_end(reader: _Reader, limit: int) -> None:
    """What follows a delimiter up to its CRLF must be transport padding (spaces and tabs)."""
    rest = reader.read_until(CRLF, limit=limit, what="delimiter line")
    if rest.strip(b" \t"):
        raise MultipartError("A multipart delimiter must be followed by a line break")


def _headers(reader: _Reader, limit: int) -> dict[str, str]:
    if reader.starts_with(CRLF):
        reader.take(2)
        return {}
    block = reader.read_until(CRLF + CRLF, limit=limit, what="part header block")
    headers: dict[str, str] = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or not set(name.strip()) <= _TOKEN_CHARS:
            raise MultipartError("Each part header line must have the form Name: value")
        headers[name.strip().lower()] = value.strip()
    return headers
