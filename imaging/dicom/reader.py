"""Reading and checking DICOM Part 10 files before anything is stored (SPEC 4.3 steps 1-3, 4.6).

Every problem with a file becomes a `DicomInputError` whose message names the broken rule, so that the import
manifest can tell the sender exactly what to fix.

Files are hostile until read (decompression bombs, SPEC 4.3): a Deflated Explicit VR body is inflated in bounded
steps and given up as soon as it passes `DecodeLimits.max_decoded_bytes`; every top-level element's declared
length is checked against the bytes that remain before pydicom reads it; and the dataset is read in two passes,
header then pixel data, so that a frame declared larger than `DecodeLimits.max_frame_pixels` fails before its
pixel data is copied out of the file. Limits come in as arguments (this module imports no Django).
"""
from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from pydicom import filereader
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.values import converters

from imaging.dicom import uids

REQUIRED = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")

# Search keys with their import length limits (SPEC 4.6).
LENGTH_LIMITS = {
    "PatientID": 64,
    "PatientName": 256,
    "PatientBirthDate": 18,
    "PatientSex": 16,
    "StudyInstanceUID": 64,
    "StudyID": 16,
    "StudyDescription": 64,
    "AccessionNumber": 16,
    "StudyDate": 18,
    "StudyTime": 28,
}
COUNT_LIMITS = {"NumberOfStudyRelatedSeries": 1_000_000, "NumberOfStudyRelatedInstances": 1_000_000}


@dataclass
class DicomInputError(Exception):
    """A file that cannot be imported; `server_fault` marks failures that are ours, not the sender's."""

    message: str
    server_fault: bool = False

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DecodeLimits:
    """How much one file may expand to while it is read (APERTURE_IMPORT_MAX_DECODED_BYTES and
    APERTURE_MAX_FRAME_PIXELS in the settings)."""

    max_decoded_bytes: int = 1 << 30
    max_frame_pixels: int = 1 << 28


DEFAULT_LIMITS = DecodeLimits()
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
# Inflate steps: compressed input taken per step, and the most output one step may produce.
INFLATE_INPUT_CHUNK = 256 * 1024
INFLATE_OUTPUT_CHUNK = 4 * 1024 * 1024


def read_p10(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> Dataset:
    """Parse a P10 file and check its File Meta group; raises DicomInputError naming the first broken rule.

    The instance's own attributes are checked on its normalized form (`check_instance`), so that each element is
    converted once.
    """
    if len(data) < 132 or data[128:132] != b"DICM":
        raise DicomInputError("Not a valid DICOM P10 file: the 128-byte preamble and DICM prefix are missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = _read_bounded(data, limits)
    except DicomInputError:
        raise
    except InvalidDicomError as e:
        raise DicomInputError(f"Not a valid DICOM P10 file: {short_reason(e)}") from e
    except Exception as e:  # pydicom raises many kinds on truncated or corrupt input
        raise DicomInputError(f"Not a valid DICOM P10 file: {short_reason(e)}") from e
    meta = getattr(dataset, "file_meta", None)
    if meta is None or len(meta) == 0:
        raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is missing")
    _unknown_vrs_as_un(meta)
    _unknown_vrs_as_un(dataset)
    group_length = _meta_value(meta, "FileMetaInformationGroupLength")
    if group_length is not None:
        if isinstance(group_length, bool) or not isinstance(group_length, int):
            raise DicomInputError("Not a valid DICOM P10 file: FileMetaInformationGroupLength is not one UL value")
        if 144 + group_length > len(data):
            raise DicomInputError("Not a valid DICOM P10 file: the File Meta Information group is truncated")
    transfer_syntax = _meta_value(meta, "TransferSyntaxUID")
    if not transfer_syntax:
        raise DicomInputError("DICOM attribute TransferSyntaxUID does not exist")
    if not isinstance(transfer_syntax, str):
        raise DicomInputError("DICOM attribute TransferSyntaxUID is not one UID")
    return dataset


def _read_bounded(data: bytes, limits: DecodeLimits) -> FileDataset:
    """pydicom's `read_partial`, with a deflated body inflated here on demand under the limit, and the dataset
    read in two bounded passes (see the module docstring)."""
    source = io.BytesIO(data)  # shares `data`, no copy
    preamble = filereader.read_preamble(source, False)
    file_meta = filereader._read_file_meta_info(source)
    body: _FileReader | InflatingReader
    if file_meta.get("TransferSyntaxUID") != uids.DEFLATED_LE:
        source.seek(0)
        body = _FileReader(source, len(data))
        header = filereader.read_partial(source, stop_when=_LengthGuard(body, stop_at_pixels=True))
    else:
        body = InflatingReader(source, limits.max_decoded_bytes)
        dataset = filereader.read_dataset(body, False, True, stop_when=_LengthGuard(body, stop_at_pixels=True))
        header = FileDataset(body, dataset, preamble, file_meta, False, True)
        header.set_original_encoding(False, True, dataset._character_set)
    check_frame_pixels(header, limits.max_frame_pixels)
    if _room(body, 1):
        is_implicit_vr, is_little_endian = header.original_encoding
        reader = body.reader if isinstance(body, _FileReader) else body
        rest = filereader.read_dataset(reader, bool(is_implicit_vr), bool(is_little_endian),
                                       stop_when=_LengthGuard(body, stop_at_pixels=False))
        for tag in rest.keys():
            header[tag] = rest.get_item(tag)
    if isinstance(body, InflatingReader):
        body.finish()
        _check_read_lengths(header)
    header.buffer = None  # nothing is read later (no deferred elements): the file's bytes can go
    return header


class InflatingReader:
    """The deflated body of a file (raw deflate, PS3.5 A.5) as a reader that inflates only as far as it is read,
    in bounded steps, and gives up as soon as the inflated size would pass `max_decoded_bytes`.

    Only a short window of inflated bytes behind the read position is kept (pydicom reads forward and seeks back
    a few bytes at most), and a long value is inflated straight into the bytes object returned for it: reading a
    body costs its parsed values plus a constant, a bomb at most the limit plus a constant, and a header that
    declares too much fails before the rest is inflated at all."""

    KEEP_BEHIND = 64 * 1024

    def __init__(self, source: BinaryIO, max_decoded_bytes: int) -> None:
        self.source = source
        self.limit = max_decoded_bytes
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.window = bytearray()
        self.window_start = 0  # offset of window[0] in the inflated body
        self.position = 0
        self.pending = b""

    @property
    def inflated_size(self) -> int:
        return self.window_start + len(self.window)

    def over_limit(self) -> DicomInputError:
        return DicomInputError(
            f"The deflated data set inflates to more than APERTURE_IMPORT_MAX_DECODED_BYTES ({self.limit} bytes)"
        )

    def _inflate_step(self) -> bool:
        """Append up to one step of inflated bytes to the window; False at the end of the stream."""
        while not self.inflater.eof:
            if not self.pending:
                self.pending = self.source.read(INFLATE_INPUT_CHUNK)
                if not self.pending:
                    return False
            try:
                piece = self.inflater.decompress(self.pending, INFLATE_OUTPUT_CHUNK)
            except zlib.error as e:
                raise DicomInputError(
                    f"Not a valid DICOM P10 file: the deflated data set is corrupt ({short_reason(e)})"
                ) from e
            self.pending = self.inflater.unconsumed_tail
            if self.inflated_size + len(piece) > self.limit:
                raise self.over_limit()
            if piece:
                self.window += piece
                return True
        return False

    def ensure(self, end: int) -> int:
        """Inflate until `end` bytes exist or the stream ends; the inflated size so far."""
        while self.inflated_size < end and self._inflate_step():
            self._trim()
        return self.inflated_size

    def _trim(self) -> None:
        drop = self.position - self.window_start - self.KEEP_BEHIND
        if drop > self.KEEP_BEHIND:
            del self.window[:drop]
            self.window_start += drop

    def finish(self) -> None:
        """Everything was read: the stream must end where the data set did (what follows is inflated, bounded
        by the limit, and dropped)."""
        self.position = self.inflated_size
        while self._inflate_step():
            self.position = self.inflated_size
            self._trim()
        if not self.inflater.eof:
            raise DicomInputError("Not a valid DICOM P10 file: the deflated data set is truncated")

    def read(self, size: int = -1) -> bytes:
        wanted = self.limit + 1 if size is None or size < 0 else size
        out = io.BytesIO()  # getvalue() hands over its buffer: a long value is not copied once more
        while wanted > 0:
            if self.position >= self.inflated_size and not self._inflate_step():
                break
            offset = self.position - self.window_start
            if offset < 0:
                raise OSError("seek too far back in the inflated data set")
            take = min(wanted, len(self.window) - offset)
            with memoryview(self.window) as view:
                out.write(view[offset : offset + take])
            self.position += take
            wanted -= take
            self._trim()
        return out.getvalue()

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 1:
            offset += self.position
        elif whence == 2:
            raise OSError("the end of an inflated data set is not known before it is read")
        self.position = max(offset, 0)
        return self.position

    def tell(self) -> int:
        return self.position


@dataclass(frozen=True)
class _FileReader:
    """The file's own bytes and their size (asking a BytesIO for its size would copy the bytes it shares)."""

    reader: io.BytesIO
    size: int

    def tell(self) -> int:
        return self.reader.tell()


def _room(body: _FileReader | InflatingReader, wanted: int) -> int:
    """How many of `wanted` bytes exist from the reader's position on (inflating as far as needed)."""
    position = body.tell()
    if isinstance(body, InflatingReader):
        return max(min(body.ensure(min(position + wanted, body.limit + 1)) - position, wanted), 0)
    return max(min(body.size - position, wanted), 0)


class _LengthGuard:
    """pydicom's `stop_when` hook, called with each top-level element's header while the reader stands at its
    value: a declared length beyond the end of the file (or past the inflate limit) fails here, before anything
    is read or allocated for it. With `stop_at_pixels`, reading stops before Pixel Data (pydicom rewinds to its
    header)."""

    def __init__(self, body: _FileReader | InflatingReader, *, stop_at_pixels: bool) -> None:
        self.body = body
        self.stop_at_pixels = stop_at_pixels

    def __call__(self, tag: BaseTag, vr: str | None, length: int) -> bool:
        if self.stop_at_pixels and tag == PIXEL_DATA:
            return True  # its length is checked in the second pass, once the frame size has been
        if length == UNDEFINED_LENGTH:
            return False
        if isinstance(self.body, InflatingReader):
            if self.body.tell() + length > self.body.limit:
                raise self.body.over_limit()  # at once: nothing of it is inflated
            return False  # how much remains is known only once inflated: a short value is caught after reading
        room = _room(self.body, length)
        if room < length:
            raise _beyond_end(tag, length, room)
        return False


def _beyond_end(tag: int, length: int, room: int) -> DicomInputError:
    return DicomInputError(
        f"Not a valid DICOM P10 file: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes "
        f"but only {room} remain in the file"
    )


def _check_read_lengths(dataset: Dataset) -> None:
    """Top-level values read from an inflated body in full: the stream may have ended inside one."""
    for tag in dataset.keys():
        element = dataset.get_item(tag)
        if isinstance(element, RawDataElement) and element.length != UNDEFINED_LENGTH and element.value is not None:
            if len(element.value) < element.length:
                raise _beyond_end(tag, element.length, len(element.value))


def check_frame_pixels(dataset: Dataset, max_frame_pixels: int) -> None:
    """Rows x Columns of one frame against the limit, from the header alone."""
    try:
        rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
    except (TypeError, ValueError):
        return  # a broken pixel module is reported when the pixel data is described
    if rows * columns > max_frame_pixels:
        raise DicomInputError(
            f"A frame of {rows}x{columns} pixels is more than APERTURE_MAX_FRAME_PIXELS ({max_frame_pixels})"
        )


def _unknown_vrs_as_un(dataset: Dataset) -> None:
    """Elements whose VR field is no DICOM VR (a corrupt header) are kept as UN, their bytes as read.

    pydicom keeps such a VR as it found it and raises NotImplementedError whenever the element is touched, which
    would make any later access to the dataset (the pixel module, `in`, `get`) fail in a way that names nothing.
    As UN the element reads as bytes, so normalization keeps it raw and warns, and the pixel module checks name
    the attribute that is wrong."""
    for tag in list(dataset.keys()):
        raw = dataset.get_item(tag, keep_deferred=True)
        if isinstance(raw, RawDataElement) and raw.VR is not None and raw.VR not in converters:
            # Stays raw (Dataset.__setitem__ would convert it now, and conversion of a corrupt UN can raise too).
            dataset._dict[tag] = raw._replace(VR="UN")


def _meta_value(meta: Dataset, keyword: str) -> Any:
    """A File Meta element's value; DicomInputError when pydicom cannot convert it."""
    try:
        return meta.get(keyword)
    except Exception as e:
        raise DicomInputError(f"Not a valid DICOM P10 file: {keyword} cannot be read ({short_reason(e)})") from e


def text_of(value: Any) -> str:
    """A normalized value as the text the file carries: several values joined with backslashes."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "\\".join(text_of(item) for item in value)
    return str(value)


def check_instance(values: dict[str, Any], unreadable: list[str]) -> None:
    """The required attributes (SPEC 4.3) on the normalized attributes of all levels merged; `unreadable` holds the
    tags normalization could not convert."""
    for keyword in REQUIRED:
        if keyword in unreadable or f"{tag_for_keyword(keyword):08X}" in unreadable:
            raise DicomInputError(f"DICOM attribute {keyword} cannot be read")
        if text_of(values.get(keyword)).strip() == "":
            raise DicomInputError(f"DICOM attribute {keyword} does not exist")


def search_key_violation(values: dict[str, Any]) -> str | None:
    """The first search key over its SPEC 4.6 limit, as the file's failure reason; None when all are within.

    One rule for every key of the table: over the limit, the file fails (the search index holds exactly these
    lengths, and a cut value would be found by the wrong searches). Any other value longer than its VR allows is
    kept with warning 0xB202 (normalize.py). The import checks the values as they will be stored, after a JSON
    metadata mapping (SPEC 4.10) has had its say, so such a mapping can correct a value that is too long.
    """
    for keyword, limit in LENGTH_LIMITS.items():
        text = text_of(values.get(keyword))
        if len(text) > limit:
            return (f"DICOM attribute {keyword} has length {len(text)}, more than the allowed {limit} for this "
                    "search key; correct it in the file, or with a JSON metadata mapping for its study")
    for keyword, limit in COUNT_LIMITS.items():
        text = text_of(values.get(keyword)).strip()
        if text == "":
            continue
        try:
            value = int(text)
        except ValueError:
            return f"DICOM attribute {keyword} must be an integer"
        if not 0 <= value <= limit:
            return f"DICOM attribute {keyword} must be between 0 and {limit}"
    return None


REASON_LIMIT = 500


def short_reason(error: Exception) -> str:
    """A library's error message as one line for a manifest: whitespace collapsed, and when it is long, cut at the
    last word that fits with an ellipsis, never inside a word (a reason cut mid-word reads as a different one)."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) <= REASON_LIMIT:
        return text
    cut = text[:REASON_LIMIT].rsplit(" ", 1)[0]
    return cut + " …"
