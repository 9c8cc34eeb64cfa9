"""The independent verification decode: OpenJPEG's planes read in place through its C API give the same verdict as
pylibjpeg-openjpeg's own `openjpeg.decode`, for every kind of frame the pipeline encodes."""
from __future__ import annotations

import imagecodecs
import numpy as np
import openjpeg
import pytest

from imaging.codecs import htj2k, openjpeg_check
from imaging.codecs.openjpeg_check import OpenJpegError, decodes_to

RNG = np.random.default_rng(11)


def _frames() -> dict[str, np.ndarray]:
    return {
        "u8 mono": RNG.integers(0, 256, (64, 80), dtype=np.uint8),
        "u16 12-bit": RNG.integers(0, 4096, (129, 67), dtype=np.uint16),
        "u16 full range": RNG.integers(0, 65536, (40, 41), dtype=np.uint16),
        "i16 signed": RNG.integers(-32768, 32768, (33, 90), dtype=np.int16),
        "rgb u8": RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8),
        "rgb u16": RNG.integers(0, 1024, (31, 17, 3), dtype=np.uint16),
        "one pixel": np.array([[7]], dtype=np.uint16),
        "one row": RNG.integers(0, 256, (1, 300), dtype=np.uint8),
    }


FRAMES = _frames()


@pytest.fixture(params=["C API", "openjpeg.decode"])
def path(request, monkeypatch):
    """Both ways of asking OpenJPEG; the first must really be the C API on this build."""
    if request.param == "C API":
        assert openjpeg_check._library() is not None
    else:
        monkeypatch.setattr(openjpeg_check, "_library", lambda: None)
    return request.param


@pytest.mark.parametrize("name", FRAMES)
def test_an_encoded_frame_decodes_to_its_samples(name, path):
    frame = FRAMES[name]
    codestream = htj2k.encode_lossless(frame, rgb=frame.ndim == 3)
    assert np.array_equal(openjpeg.decode(codestream).reshape(frame.shape), frame)  # the reference verdict
    assert decodes_to(codestream, frame) is True


@pytest.mark.parametrize("name", FRAMES)
def test_one_sample_off_is_a_mismatch(name, path):
    frame = FRAMES[name]
    codestream = htj2k.encode_lossless(frame, rgb=frame.ndim == 3)
    other = frame.copy()
    other.flat[other.size // 2] ^= 1
    assert decodes_to(codestream, other) is False


def test_shape_and_component_count_must_match(path):
    frame = FRAMES["u16 12-bit"]
    codestream = htj2k.encode_lossless(frame, rgb=False)
    assert decodes_to(codestream, np.ascontiguousarray(frame.T)) is False
    assert decodes_to(codestream, np.stack([frame] * 3, axis=-1)) is False
    rgb = FRAMES["rgb u8"]
    assert decodes_to(htj2k.encode_lossless(rgb, rgb=True), rgb[..., 0]) is False


def test_values_beyond_the_source_type_are_not_folded_into_it(path):
    """A 16-bit codestream whose samples exceed 8 bits does not verify 8-bit samples equal to them modulo 256."""
    wide = np.array([[256, 257], [258, 300]], dtype=np.uint16)
    assert decodes_to(htj2k.encode_lossless(wide, rgb=False), (wide % 256).astype(np.uint8)) is False


def test_jpeg_2000_part_1_codestreams_too(path):
    frame = FRAMES["u16 12-bit"]
    codestream = bytes(imagecodecs.jpeg2k_encode(frame, level=0, codecformat="J2K", reversible=True))
    assert decodes_to(codestream, frame) is True


@pytest.mark.parametrize("codestream", [b"", b"not a codestream", b"\xff\x4f\xff\x51" + b"\x00" * 40],
                         ids=["empty", "text", "broken SIZ"])
def test_what_is_not_a_codestream_raises(codestream, path):
    with pytest.raises(OpenJpegError):
        decodes_to(codestream, FRAMES["u8 mono"])


def test_a_truncated_codestream_never_verifies(path):
    frame = FRAMES["u16 12-bit"]
    codestream = htj2k.encode_lossless(frame, rgb=False)
    for length in (len(codestream) // 3, len(codestream) - 10):
        try:
            assert decodes_to(codestream[:length], frame) is False
        except OpenJpegError:
            pass
