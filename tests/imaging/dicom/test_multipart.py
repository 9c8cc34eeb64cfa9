"""The streaming multipart/related reader (imaging/dicom/multipart.py): every chunk size splits delimiters at every
offset, so a part's content must come out the same whatever the stream hands over at a time."""
from __future__ import annotations

import io

import pytest

from imaging.dicom.multipart import MultipartError, boundary_check, media_type_parse, parts_read

CHUNK_SIZES = [1, 2, 3, 7, 64, 1 << 16]


class CountingStream(io.BytesIO):
    """A stream that remembers the largest read asked of it."""

    largest = 0

    def read(self, size=-1):
        self.largest = max(self.largest, size)
        return super().read(size)


def read_all(body: bytes, boundary: str, chunk_bytes: int, **kwargs) -> list[tuple[dict, bytes]]:
    return [(part.headers, b"".join(part.chunks()))
            for part in parts_read(io.BytesIO(body), boundary=boundary, chunk_bytes=chunk_bytes, **kwargs)]


@pytest.mark.parametrize("chunk_bytes", CHUNK_SIZES)
def test_parts_come_out_whole_whatever_the_chunk_size(chunk_bytes):
    first, second = b"\x00DICM" + bytes(range(256)) * 3, b"--b1 is not a delimiter unless after CRLF\r\n--b"
    body = (b"a preamble\r\n--b1\r\nContent-Type: application/dicom\r\n\r\n" + first +
            b"\r\n--b1 \t\r\ncontent-type:application/dicom; transfer-syntax=1.2.840.10008.1.2.1\r\n\r\n" + second +
            b"\r\n--b1\r\n\r\n\r\n--b1--\r\nan epilogue")
    parts = read_all(body, "b1", chunk_bytes)
    assert parts == [({"content-type": "application/dicom"}, first),
                     ({"content-type": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}, second),
                     ({}, b"")]


@pytest.mark.parametrize("chunk_bytes", [1, 5, 1 << 16])
def test_a_body_that_opens_with_its_delimiter_as_dicomweb_client_writes_it(chunk_bytes):
    body = (b"--xyz\r\nContent-Type: application/dicom\r\n\r\nONE"
            b"\r\n--xyz\r\nContent-Type: application/dicom\r\n\r\nTWO\r\n--xyz--")
    assert [content for _, content in read_all(body, "xyz", chunk_bytes)] == [b"ONE", b"TWO"]
    assert [content for _, content in read_all(b"\r\n" + body, "xyz", chunk_bytes)] == [b"ONE", b"TWO"]


def test_a_large_part_is_read_in_chunks_never_whole():
    content = b"\x01" * (8 * 1024 * 1024)
    stream = CountingStream(b"--k\r\n\r\n" + content + b"\r\n--k--")
    pieces = [len(chunk) for part in parts_read(stream, boundary="k", chunk_bytes=65536) for chunk in part.chunks()]
    assert sum(pieces) == len(content)
    assert max(pieces) <= 65536 + 8 and stream.largest == 65536


def test_a_part_left_unread_is_skipped():
    body = b"--k\r\n\r\nfirst\r\n--k\r\n\r\nsecond\r\n--k--"
    read = [b"".join(part.chunks()) if number else None
            for number, part in enumerate(parts_read(io.BytesIO(body), boundary="k", chunk_bytes=3))]
    assert read == [None, b"second"]
    skipped = list(parts_read(io.BytesIO(body), boundary="k", chunk_bytes=3))
    with pytest.raises(MultipartError, match="only once"):
        list(skipped[0].chunks())  # a part the reader went past is gone


@pytest.mark.parametrize("body,rule", [
    (b"--k\r\n\r\nno close delimiter", "ends before the multipart close delimiter"),
    (b"no delimiter at all", "ends before the multipart close delimiter"),
    (b"--k\r\n\r\ncut\r\n--k", "ends before the multipart close delimiter"),
    (b"--kjunk\r\n\r\nx\r\n--k--", "must be followed by a line break"),
    (b"--k\r\nno colon here\r\n\r\nx\r\n--k--", "Name: value"),
    (b"--k\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\nx\r\n--k--", "longer than 16384 bytes"),
    (b"--k\r\nContent-Type: application/dicom", "ends inside the part header block"),
], ids=["unclosed", "no-delimiter", "cut-after-delimiter", "junk-after-delimiter", "bad-header", "huge-header",
        "cut-in-headers"])
def test_malformed_bodies_name_the_broken_rule(body, rule):
    with pytest.raises(MultipartError, match=rule):
        read_all(body, "k", 4)


@pytest.mark.parametrize("header,essence,params", [
    ('multipart/related; type="application/dicom"; boundary="0f3cf5c0-70e0"', "multipart/related",
     {"type": "application/dicom", "boundary": "0f3cf5c0-70e0"}),
    ("Multipart/Related;boundary=abc;type=application/dicom", "multipart/related",
     {"boundary": "abc", "type": "application/dicom"}),
    ('multipart/related; boundary="a \\"quoted\\" b"', "multipart/related", {"boundary": 'a "quoted" b'}),
    ("application/dicom", "application/dicom", {}),
    ("application/dicom ;", "application/dicom", {}),
])
def test_content_types_quoted_or_not(header, essence, params):
    media = media_type_parse(header)
    assert (media.essence, media.params) == (essence, params)


@pytest.mark.parametrize("header", ["dicom", "multipart/related; boundary", 'multipart/related; boundary="open',
                                    "a b/c"])
def test_malformed_content_types(header):
    with pytest.raises(MultipartError):
        media_type_parse(header)


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends with space ", "bad\x00char", "é"])
def test_boundaries_rfc_2046_forbids(boundary):
    with pytest.raises(MultipartError):
        boundary_check(boundary)
