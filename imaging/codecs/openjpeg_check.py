"""The independent check of an encoded frame: OpenJPEG (the build inside pylibjpeg-openjpeg) decodes it, and its
component planes are compared with the source samples.

OpenJPH writes our codestreams; OpenJPEG is another implementation of the standard, so a frame it decodes back to the
source is proof that the stored bytes hold the source, not just that the encoder agrees with itself.

pylibjpeg-openjpeg's `openjpeg.decode` turns OpenJPEG's int32 planes into little-endian bytes one sample at a time
through pointer indirection, which costs about a quarter of the decode (0.5 ms of 3.2 ms for a 512x512 frame, the
largest single cost of an import after the codecs themselves), and then the bytes are compared. The comparison needs
no copy: its extension module exports OpenJPEG's C API, and `decodes_to` drives that API through ctypes and compares
the planes with numpy where they lie. Where the module does not export it (another build), `openjpeg.decode` is used;
both give the same verdict, which the tests check.
"""
from __future__ import annotations

import ctypes
import struct
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import numpy as np

OPJ_CODEC_J2K = 0
# opj_dparameters_t is about 8.3 KB (two 4096-byte paths and a few dozen fields); OpenJPEG only fills it in.
_DPARAMETERS_SIZE = 64 * 1024


class OpenJpegError(Exception):
    """OpenJPEG could not decode the codestream."""


class _ImageComponent(ctypes.Structure):
    """opj_image_comp_t (openjpeg.h, 2.x)."""

    _fields_ = [
        ("dx", ctypes.c_uint32),
        ("dy", ctypes.c_uint32),
        ("w", ctypes.c_uint32),
        ("h", ctypes.c_uint32),
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("prec", ctypes.c_uint32),
        ("bpp", ctypes.c_uint32),
        ("sgnd", ctypes.c_uint32),
        ("resno_decoded", ctypes.c_uint32),
        ("factor", ctypes.c_uint32),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    """opj_image_t (openjpeg.h, 2.x)."""

    _fields_ = [
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("x1", ctypes.c_uint32),
        ("y1", ctypes.c_uint32),
        ("numcomps", ctypes.c_uint32),
        ("color_space", ctypes.c_int),
        ("comps", ctypes.POINTER(_ImageComponent)),
        ("icc_profile_buf", ctypes.c_void_p),
        ("icc_profile_len", ctypes.c_uint32),
    ]


class _Source(ctypes.Structure):
    """What the stream callbacks read from: the codestream's address, length and the read position."""

    _fields_ = [("address", ctypes.c_void_p), ("length", ctypes.c_size_t), ("position", ctypes.c_size_t)]


_READ = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_END_OF_STREAM = ctypes.c_size_t(-1).value


@_READ
def _read(buffer, size, user_data):
    source = ctypes.cast(user_data, ctypes.POINTER(_Source)).contents
    count = min(size, source.length - source.position)
    if count <= 0:
        return _END_OF_STREAM
    ctypes.memmove(buffer, source.address + source.position, count)
    source.position += count
    return count


@_SKIP
def _skip(offset, user_data):
    source = ctypes.cast(user_data, ctypes.POINTER(_Source)).contents
    target = source.position + offset
    if not 0 <= target <= source.length:
        return -1
    source.position = target
    return offset


@_SEEK
def _seek(offset, user_data):
    source = ctypes.cast(user_data, ctypes.POINTER(_Source)).contents
    if not 0 <= offset <= source.length:
        return 0
    source.position = offset
    return 1


@lru_cache(maxsize=1)
def _library():
    """OpenJPEG's C API as pylibjpeg-openjpeg's extension module exports it, or None."""
    try:
        import _openjpeg

        library = ctypes.CDLL(_openjpeg.__file__)
        signatures = {
            "opj_create_decompress": (ctypes.c_void_p, [ctypes.c_int]),
            "opj_set_default_decoder_parameters": (None, [ctypes.c_void_p]),
            "opj_setup_decoder": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
            "opj_stream_create": (ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_int]),
            "opj_stream_set_read_function": (None, [ctypes.c_void_p, _READ]),
            "opj_stream_set_skip_function": (None, [ctypes.c_void_p, _SKIP]),
            "opj_stream_set_seek_function": (None, [ctypes.c_void_p, _SEEK]),
            "opj_stream_set_user_data": (None, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
            "opj_stream_set_user_data_length": (None, [ctypes.c_void_p, ctypes.c_uint64]),
            "opj_read_header": (ctypes.c_int,
                                [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(_Image))]),
            "opj_decode": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(_Image)]),
            "opj_end_decompress": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p]),
            "opj_image_destroy": (None, [ctypes.POINTER(_Image)]),
            "opj_destroy_codec": (None, [ctypes.c_void_p]),
            "opj_stream_destroy": (None, [ctypes.c_void_p]),
            "opj_version": (ctypes.c_char_p, []),
        }
        for name, (restype, argtypes) in signatures.items():
            function = getattr(library, name)
            function.restype, function.argtypes = restype, argtypes
        if not library.opj_version().startswith(b"2."):  # the structures above are OpenJPEG 2's
            return None
        return library
    except (ImportError, OSError, AttributeError):
        return None


def decodes_to(codestream: bytes, samples: np.ndarray) -> bool:
    """Whether OpenJPEG decodes the J2K/HTJ2K codestream to exactly `samples`, (rows, cols) or (rows, cols, n).

    Raises OpenJpegError when it cannot decode it at all.
    """
    library = _library()
    if library is None:
        return _decodes_to_with_wrapper(codestream, samples)
    with _decoded(library, codestream, reduce=0) as image:
        return _planes_equal(image, samples)


def available() -> bool:
    """Whether OpenJPEG's C API can be driven here (reduced-resolution decoding needs it)."""
    return _library() is not None


def decode_reduced(codestream: bytes, reduce: int) -> np.ndarray:
    """The image `reduce` resolution levels below full, as OpenJPEG decodes it: int32 samples, (rows, cols) or
    (rows, cols, n), each the wavelet band with the DC level shift undone and clamped to the component's
    precision (OpenJPEG clamps; OpenJPH writes the band into the output type and wraps where it overshoots).

    With RPCL progression the packets of the dropped levels are skipped, not decoded. Raises OpenJpegError.
    """
    library = _library()
    if library is None:
        raise OpenJpegError("OpenJPEG's C API is not available")
    with _decoded(library, codestream, reduce=reduce) as image:
        planes = []
        for index in range(image.numcomps):
            component = image.comps[index]
            if not component.data or component.w == 0 or component.h == 0:
                raise OpenJpegError("OpenJPEG decoded an empty component")
            planes.append(np.ctypeslib.as_array(component.data, shape=(component.h, component.w)).copy())
        if any(plane.shape != planes[0].shape for plane in planes):
            raise OpenJpegError("the components have different sizes")
        return planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)


@contextmanager
def _decoded(library, codestream: bytes, *, reduce: int) -> Iterator[_Image]:
    codestream = bytes(codestream)
    # The bytes object's own buffer, read in place (it stays alive, and immutable, for the whole call).
    source = _Source(ctypes.cast(ctypes.c_char_p(codestream), ctypes.c_void_p).value, len(codestream), 0)
    parameters = ctypes.create_string_buffer(_DPARAMETERS_SIZE)
    image = ctypes.POINTER(_Image)()
    codec = stream = None
    try:
        codec = library.opj_create_decompress(OPJ_CODEC_J2K)
        stream = library.opj_stream_create(max(len(codestream), 1), 1)
        if not codec or not stream:
            raise OpenJpegError("OpenJPEG could not start a decoder")
        library.opj_set_default_decoder_parameters(parameters)
        struct.pack_into("<I", parameters, 0, reduce)  # cp_reduce, the first field of opj_dparameters_t
        library.opj_stream_set_read_function(stream, _read)
        library.opj_stream_set_skip_function(stream, _skip)
        library.opj_stream_set_seek_function(stream, _seek)
        library.opj_stream_set_user_data(stream, ctypes.addressof(source), None)
        library.opj_stream_set_user_data_length(stream, len(codestream))
        if not library.opj_setup_decoder(codec, parameters):
            raise OpenJpegError("OpenJPEG rejected the decoder parameters")
        if not library.opj_read_header(stream, codec, ctypes.byref(image)):
            raise OpenJpegError("OpenJPEG could not read the codestream header")
        if not (library.opj_decode(codec, stream, image) and library.opj_end_decompress(codec, stream)):
            raise OpenJpegError("OpenJPEG could not decode the codestream")
        yield image.contents
    finally:
        if image:
            library.opj_image_destroy(image)
        if codec:
            library.opj_destroy_codec(codec)
        if stream:
            library.opj_stream_destroy(stream)


def _planes_equal(image: _Image, samples: np.ndarray) -> bool:
    rows, columns = samples.shape[:2]
    count = samples.shape[2] if samples.ndim == 3 else 1
    if image.numcomps != count:
        return False
    for index in range(count):
        component = image.comps[index]
        if (component.w, component.h, component.dx, component.dy) != (columns, rows, 1, 1) or not component.data:
            return False
        plane = np.ctypeslib.as_array(component.data, shape=(rows, columns))
        expected = samples[..., index] if samples.ndim == 3 else samples
        if not np.array_equal(plane, expected):
            return False
    return True


def _decodes_to_with_wrapper(codestream: bytes, samples: np.ndarray) -> bool:
    import openjpeg

    try:
        decoded = openjpeg.decode(codestream)
    except Exception as e:
        raise OpenJpegError(f"OpenJPEG could not decode the codestream ({e})") from e
    return decoded.shape == samples.shape and bool(np.array_equal(decoded, samples))
