"""The pixel data of a received DICOM dataset: its description, the checks it must pass before any decoder sees it,
and its frames, as decoded arrays for transcoding or as the encoded fragments of lossy syntaxes kept as received.

A whole received dataset is decoded with pydicom's own decoder plugins (pylibjpeg and friends, any syntax pydicom
reads: native, deflated and big endian included), uncompressed little-endian frames without a copy; frames already
split out and stored are decoded through `imaging.codecs.registry`. No Django here, and nothing is written.
"""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels import iter_pixels

from imaging.codecs.description import PixelDescription
from imaging.codecs.dimensions import J2K_SYNTAXES, FrameSizeMismatch, check_declared_size
from imaging.codecs.ifrc import sample_range
from imaging.dicom import uids
from imaging.dicom.reader import short_reason


class PixelDataError(ValueError):
    """The pixel data cannot be read as declared (too short, undecodable)."""


def describe(dataset: Dataset, transfer_syntax: str) -> PixelDescription | None:
    """What the pixel data claims to be, or None for instances without pixels (SR, RTPLAN, waveforms)."""
    is_float = "FloatPixelData" in dataset or "DoubleFloatPixelData" in dataset
    if "PixelData" not in dataset and not is_float:
        return None
    try:
        description = PixelDescription(
            rows=int(dataset.Rows),
            columns=int(dataset.Columns),
            samples_per_pixel=int(dataset.get("SamplesPerPixel", 1) or 1),
            bits_allocated=int(dataset.BitsAllocated),
            bits_stored=int(dataset.get("BitsStored", dataset.BitsAllocated) or dataset.BitsAllocated),
            signed=int(dataset.get("PixelRepresentation", 0) or 0) == 1,
            photometric=str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip(),
            number_of_frames=int(dataset.get("NumberOfFrames", 1) or 1),
            transfer_syntax=transfer_syntax,
            is_float=is_float,
        )
    except Exception as e:  # absent (AttributeError), several values (TypeError), bytes, a value pydicom rejects
        raise PixelDataError(f"The image pixel module is incomplete: {short_reason(e)}") from e
    if description.rows <= 0 or description.columns <= 0 or description.number_of_frames <= 0:
        raise PixelDataError("Rows, Columns and NumberOfFrames must be positive")
    if description.bits_allocated not in (1, 8, 16, 32, 64) or not 1 <= description.bits_stored <= description.bits_allocated:
        raise PixelDataError("BitsAllocated and BitsStored are inconsistent")
    return description


def check_native_length(dataset: Dataset, description: PixelDescription) -> None:
    if description.transfer_syntax not in uids.NATIVE or description.is_float:
        return
    d = description
    expected = (d.rows * d.columns * d.samples_per_pixel * d.bits_allocated * d.number_of_frames + 7) // 8
    if d.photometric == "YBR_FULL_422":
        expected = expected * 2 // 3  # two chroma samples are shared by each pair of pixels
    actual = len(pixel_bytes(dataset, "PixelData"))
    if actual < expected:
        raise PixelDataError(f"Pixel data is shorter than declared: {actual} bytes, {expected} expected")


def check_frame_headers(dataset: Dataset, description: PixelDescription) -> list[bytes] | None:
    """The encapsulated frames, split once and checked before any decoder sees them: each frame's own header may
    not declare more pixels than Rows x Columns (decoders allocate what the codestream says, see
    imaging.codecs.dimensions), and a JP2 wrapper's boxes must lead to its codestream (_check_jp2_boxes). None for
    native pixel data."""
    if description.transfer_syntax in uids.NATIVE or description.is_float:
        return None
    try:
        frames = list(generate_frames(dataset.PixelData, number_of_frames=description.number_of_frames))
    except Exception as e:
        raise PixelDataError(f"The encapsulated frames cannot be split: {short_reason(e)}") from e
    for index, frame in enumerate(frames):
        try:
            check_declared_size(frame, description.transfer_syntax, description.rows, description.columns)
        except FrameSizeMismatch as e:
            raise PixelDataError(str(e)) from e
        if description.transfer_syntax in J2K_SYNTAXES:
            _check_jp2_boxes(index, frame)
    return frames


def check_frame_count(frames: list[bytes], description: PixelDescription) -> list[bytes]:
    """Frames kept as received must be as many as NumberOfFrames says (each becomes one stored frame)."""
    if len(frames) != description.number_of_frames:
        raise PixelDataError(f"NumberOfFrames is {description.number_of_frames} but {len(frames)} frames were found")
    return frames


def pixel_bytes(dataset: Dataset, keyword: str) -> bytes:
    """The native pixel data element's value; PixelDataError when it is empty or not binary (a corrupt VR can
    make pydicom read it as numbers or text)."""
    try:
        value = dataset.get(keyword)
    except Exception as e:
        raise PixelDataError(f"{keyword} cannot be read: {short_reason(e)}") from e
    if not isinstance(value, (bytes, bytearray)) or not value:
        raise PixelDataError(f"{keyword} is empty or not binary data")
    return value


def _mask(frame: np.ndarray, description: PixelDescription) -> np.ndarray:
    """Native byte order, and bits above BitsStored cleared (unsigned) or sign-extended (signed).

    Most files keep those bits clean, and a min/max pass is cheaper than rewriting the frame: the frame is
    rewritten only when a sample lies outside the BitsStored range.
    """
    frame = frame.astype(frame.dtype.newbyteorder("="), copy=False)
    container = frame.dtype.itemsize * 8
    if description.bits_stored >= container:
        return frame
    low, high = sample_range(description.bits_stored, description.signed)
    if frame.size and low <= int(frame.min()) and int(frame.max()) <= high:
        return frame
    if description.signed:
        shift = container - description.bits_stored
        return ((frame << shift) >> shift).astype(frame.dtype, copy=False)
    return frame & np.array(high, dtype=frame.dtype)


def iter_decoded_frames(dataset: Dataset, description: PixelDescription) -> Iterator[np.ndarray]:
    """Each frame as stored values: (rows, cols) or (rows, cols, samples), interleaved whatever the planar
    configuration, no colour conversion (as_rgb=False)."""
    native = _native_frames(dataset, description)
    if native is not None:
        for frame in native:
            yield _mask(frame, description)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frame in iter_pixels(dataset, as_rgb=False):
                yield _mask(np.asarray(frame), description)
    except PixelDataError:
        raise
    except BaseException as e:
        if not isinstance(e, Exception) and not is_decoder_panic(e):
            raise  # GeneratorExit, KeyboardInterrupt, SystemExit
        raise PixelDataError(f"The pixel data cannot be decoded: {short_reason(e)}") from e


_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "


def _check_jp2_boxes(index: int, frame: bytes) -> None:
    """Refuse a JP2-wrapped frame whose box lengths pydicom cannot walk.

    pydicom 3.0's get_j2k_parameters steps from box to box by each box's length until it finds the codestream box,
    so a box of length 0 (JP2's "to the end of the file") keeps it at the same offset forever: one 30 KB file held
    an import worker at 100% CPU with no end. The same walk is done here, and such a frame fails the file."""
    if not frame.startswith(_JP2_SIGNATURE):
        return
    offset = 12
    while offset < len(frame):
        if frame[offset + 4:offset + 8] == b"jp2c":
            return
        length = int.from_bytes(frame[offset:offset + 4], "big")
        if length == 0:
            raise PixelDataError(f"Frame {index + 1} is a JP2 file with a box of length 0 before its codestream")
        offset += length


def is_decoder_panic(error: BaseException) -> bool:
    """A Rust decoder's panic (pylibjpeg-rle indexes past a corrupt segment, for one): pyo3 raises it as
    `pyo3_runtime.PanicException`, a BaseException, so `except Exception` does not see it. The class cannot be
    imported (pyo3 creates it at run time), hence the name check."""
    return type(error).__name__ == "PanicException"


_LITTLE_ENDIAN_NATIVE = {uids.IMPLICIT_LE, uids.EXPLICIT_LE, uids.DEFLATED_LE}


def _native_frames(dataset: Dataset, description: PixelDescription) -> list[np.ndarray] | None:
    """Uncompressed little-endian 8- and 16-bit frames as views of the PixelData bytes (no copy), or None where
    pydicom's general path is needed (big endian, YBR_FULL_422, other widths). The length was checked before."""
    d = description
    if (d.transfer_syntax not in _LITTLE_ENDIAN_NATIVE or d.is_float or d.bits_allocated not in (8, 16)
            or d.photometric == "YBR_FULL_422" or d.samples_per_pixel not in (1, 3)):
        return None
    raw = dataset.PixelData
    if not isinstance(raw, (bytes, bytearray)):
        return None
    dtype = np.dtype(f"<{'i' if d.signed else 'u'}{d.bits_allocated // 8}")
    per_frame = d.rows * d.columns * d.samples_per_pixel
    if len(raw) < per_frame * d.number_of_frames * dtype.itemsize:
        return None
    try:
        planar = d.samples_per_pixel == 3 and int(dataset.get("PlanarConfiguration", 0) or 0) == 1
    except (TypeError, ValueError):
        return None  # several values, or bytes: pydicom's general path names the problem
    frames = []
    for index in range(d.number_of_frames):
        flat = np.frombuffer(raw, dtype=dtype, count=per_frame, offset=index * per_frame * dtype.itemsize)
        if d.samples_per_pixel == 1:
            frames.append(flat.reshape(d.rows, d.columns))
        elif planar:
            frames.append(np.ascontiguousarray(flat.reshape(3, d.rows, d.columns).transpose(1, 2, 0)))
        else:
            frames.append(flat.reshape(d.rows, d.columns, 3))
    return frames


def native_frame_bytes(dataset: Dataset, description: PixelDescription) -> list[bytes]:
    """Uncompressed frames as little-endian bytes (float data, 1-bit data, samples wider than 16 bits)."""
    if description.is_float:
        element = "FloatPixelData" if "FloatPixelData" in dataset else "DoubleFloatPixelData"
        raw = bytes(pixel_bytes(dataset, element))
        size = len(raw) // description.number_of_frames
        return [raw[i * size : (i + 1) * size] for i in range(description.number_of_frames)]
    if description.bits_allocated == 1:
        raw = bytes(pixel_bytes(dataset, "PixelData"))
        bits_per_frame = description.rows * description.columns * description.samples_per_pixel
        if bits_per_frame % 8:
            raise PixelDataError("1-bit frames that do not end on a byte boundary cannot be split")
        size = bits_per_frame // 8
        return [raw[i * size : (i + 1) * size] for i in range(description.number_of_frames)]
    return [np.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()
            for frame in iter_decoded_frames(dataset, description)]
