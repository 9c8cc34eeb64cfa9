"""imaging.codecs: HTJ2K as we write it, checksums of every resolution, a received dataset's pixels, and the codec
registry (every transfer syntax of the shared sample files decodes through it, or is refused by name)."""
from __future__ import annotations

import csv
import io
import struct
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from imaging.codecs import htj2k, registry
from imaging.codecs.base import FrameDecodeError, UnsupportedTransferSyntax
from imaging.codecs.dataset_pixels import describe, iter_decoded_frames
from imaging.codecs.description import PixelDescription, decoded_photometric
from imaging.codecs.ifrc import canonical_bytes, frame_checksums
from imaging.dicom import uids
from tests.paths import DICOM_DIR
from tests.dicomgen import ct_bytes, ct_dataset, to_bytes

MANIFEST = list(csv.DictReader(open(DICOM_DIR / "MANIFEST.tsv"), delimiter="\t"))


@pytest.mark.parametrize("size, levels", [((640, 480), 3), ((512, 512), 3), ((1024, 1024), 4), ((64, 64), 0),
                                          ((127, 4000), 5), ((100, 100), 0), ((128, 128), 1), ((4096, 4096), 5)])
def test_decomposition_levels(size, levels):
    assert htj2k.decomposition_levels(*size) == levels


def markers(codestream: bytes) -> dict:
    found = {"SOT": codestream.count(b"\xff\x90")}
    position = codestream.find(b"\xff\x52")
    found["progression"] = codestream[position + 5]
    found["levels"] = codestream[position + 9]
    found["TLM"] = b"\xff\x55" in codestream[: codestream.find(b"\xff\x90")]
    siz = codestream.find(b"\xff\x51")
    found["precision"] = (codestream[siz + 2 + 38] & 0x7F) + 1
    return found


def test_codestream_is_rpcl_with_tlm_and_a_tile_part_per_resolution():
    frame = np.random.default_rng(1).integers(-1024, 3000, (512, 512)).astype(np.int16)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    found = markers(codestream)
    assert found == {"SOT": 4, "progression": 2, "levels": 3, "TLM": True, "precision": 16}
    assert np.array_equal(htj2k.decode(codestream), frame)
    assert htj2k.decode(codestream, skip_levels=3).shape == (64, 64)


def test_checksums_from_base_to_full_resolution():
    frame = np.random.default_rng(2).integers(0, 4096, (480, 640)).astype(np.uint16)
    entries = frame_checksums(frame, levels=3, rct=False, bits_allocated=16, bits_stored=12, signed=False)
    assert [(e["Width"], e["Height"]) for e in entries] == [(80, 60), (160, 120), (320, 240), (640, 480)]
    assert entries[-1]["Checksum"] == zlib.crc32(frame.astype("<u2").tobytes())


def test_reduced_resolutions_equal_a_real_decoders_wherever_it_does_not_wrap():
    """OpenJPH decoding the stored codestream at reduced resolutions gives the computed bands exactly, except
    where a band leaves the container type: there it wraps (a value just below 0 comes back near 65,535), which
    is why the checksums use the computed bands."""
    from imaging.codecs.wavelet import reduced_resolutions

    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:301, 0:203]
    frame = np.where((x - 100) ** 2 + (y - 150) ** 2 < 80**2, 4000, 10).astype(np.int32)
    frame = np.clip(frame + rng.integers(-8, 9, frame.shape), 0, 4095).astype(np.uint16)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    bands = reduced_resolutions(frame, htj2k.codestream_levels(codestream))
    wrapped = 0
    for skip, band in enumerate(bands, start=1):
        decoded = htj2k.decode(codestream, skip_levels=skip).astype(np.int64)
        assert decoded.shape == band.shape
        inside = (band >= 0) & (band <= 65535)
        assert np.array_equal(decoded[inside], band[inside])
        assert np.array_equal(decoded[~inside], band[~inside] % 65536)
        wrapped += int((~inside).sum())
    assert wrapped > 0  # the edge of the disc undershoots below 0


def test_reduced_resolutions_of_rgb_go_through_the_colour_transform_like_a_decoder():
    from imaging.codecs.wavelet import reduced_resolutions

    y, x = np.mgrid[0:200, 0:260]
    rgb = np.stack([(x % 200) + 20, (y % 180) + 30, ((x + y) % 150) + 40], axis=-1).astype(np.uint8)
    codestream = htj2k.encode_lossless(rgb, rgb=True)
    for skip, band in enumerate(reduced_resolutions(rgb, htj2k.codestream_levels(codestream), rct=True), start=1):
        assert 0 <= band.min() and band.max() <= 255  # a smooth image: nothing for the decoder to wrap
        assert np.array_equal(htj2k.decode(codestream, skip_levels=skip), band)


def test_rgb_checksum_interleaves_components_and_uses_one_byte():
    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    assert canonical_bytes(rgb, bits_allocated=8, signed=False) == rgb.tobytes()
    signed = np.array([[-1, 2]], dtype=np.int16)
    assert canonical_bytes(signed, bits_allocated=16, signed=True) == struct.pack("<hh", -1, 2)


def test_bits_above_bits_stored_are_masked():
    ds = ct_dataset(study_uid="1.2", series_uid="1.2.3", pixels=np.full((64, 64), 0xF123, dtype=np.uint16))
    ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    description = describe(ds, str(ds.file_meta.TransferSyntaxUID))
    frame = next(iter_decoded_frames(ds, description))
    assert int(frame.max()) == 0x123


def test_small_images_get_the_fewest_levels_the_encoder_can_write():
    frame = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    assert htj2k.codestream_levels(codestream) == 1
    assert np.array_equal(htj2k.decode(codestream), frame)


def test_signed_samples_below_the_container_are_sign_extended_and_clean_frames_are_not_copied():
    raw = np.array([[0x0FFF, 0x0800, 0x07FF, 5]], dtype=np.int16)  # 12-bit two's complement, high bits clear
    ds = ct_dataset(study_uid="1.2", series_uid="1.2.3", rows=1, columns=4, pixels=raw.view(np.uint16))
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
    ds = pydicom.dcmread(io.BytesIO(to_bytes(ds)))
    frame = next(iter_decoded_frames(ds, describe(ds, str(ds.file_meta.TransferSyntaxUID))))
    assert frame.tolist() == [[-1, -2048, 2047, 5]]
    clean = pydicom.dcmread(io.BytesIO(ct_bytes(study_uid="1.2", series_uid="1.2.4")))
    frame = next(iter_decoded_frames(clean, describe(clean, str(clean.file_meta.TransferSyntaxUID))))
    assert not frame.flags.owndata  # a view of the PixelData bytes: nothing was rewritten


NATIVE_SHARED = [row["file"] for row in MANIFEST
                 if row["ts_uid"] in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99")
                 and row["frames"] != "0" and row["has_file_meta"] == "yes"
                 and row["bits_alloc_stored"].split("/")[0] in ("8", "16") and row["photometric"] != "YBR_FULL_422"]


@pytest.mark.parametrize("name", NATIVE_SHARED)
def test_uncompressed_frames_read_without_pydicom_equal_pydicoms_pixels(name):
    """The view-based reader for uncompressed little-endian data must give exactly what pydicom's decoder gives."""
    from pydicom.pixels import iter_pixels

    from imaging.codecs.dataset_pixels import _mask, _native_frames

    ds = pydicom.dcmread(DICOM_DIR / name)
    description = describe(ds, str(ds.file_meta.TransferSyntaxUID))
    native = _native_frames(ds, description)
    assert native is not None
    expected = [_mask(np.asarray(frame), description) for frame in iter_pixels(ds, as_rgb=False)]
    assert len(native) == len(expected)
    for got, want in zip(native, expected):
        got = _mask(got, description)
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("shape, signed", [((301, 203), False), ((512, 512), True), ((130, 700), False)])
def test_reduced_level_checksums_equal_an_independent_5_3_wavelet(shape, signed):
    from tests.dicomgen import reduced_resolution

    rng = np.random.default_rng(sum(shape))
    low, high = (-2048, 2047) if signed else (0, 4095)
    frame = rng.integers(low, high + 1, shape).astype(np.int16 if signed else np.uint16)
    levels = htj2k.codestream_levels(htj2k.encode_lossless(frame, rgb=False))
    entries = frame_checksums(frame, levels=levels, rct=False, bits_allocated=16, bits_stored=12, signed=signed)
    assert len(entries) == levels + 1 and levels >= 1
    for skip, entry in zip(range(levels, 0, -1), entries):
        expected = np.clip(reduced_resolution(frame, skip), low, high).astype("<i2" if signed else "<u2")
        assert (entry["Height"], entry["Width"]) == expected.shape
        assert entry["Checksum"] == zlib.crc32(expected.tobytes())


def _extreme_patterns(low: int, high: int, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Inputs that push 5/3 lifting to its largest overshoots: alternating extremes, isolated spikes, noise."""
    y, x = np.indices(shape)
    rng = np.random.default_rng(high - low)
    return {
        "checkerboard": np.where((x + y) % 2 == 0, high, low),
        "stripes": np.where((x // 2 + y // 3) % 2 == 0, high, low),
        "spikes": np.where((x % 7 == 3) & (y % 5 == 1), high, low),
        "dips": np.where((x % 4 == 1) | (y % 4 == 2), low, high),
        "noise": rng.integers(low, high + 1, shape),
    }


@pytest.mark.parametrize("bits, signed", [(8, False), (12, False), (13, False), (14, False), (15, False),
                                          (16, False), (12, True), (14, True), (16, True)])
def test_reduced_resolutions_are_exact_whatever_type_each_pass_runs_in(bits, signed):
    """Passes run in int16 where their bounds prove no overflow, in int32 otherwise: the bands equal an int64
    reference on the patterns that overshoot most, at every level, at the edge of each bit depth."""
    from imaging.codecs.wavelet import reduced_resolutions
    from tests.dicomgen import reduced_resolution

    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = (np.int8 if signed else np.uint8) if bits <= 8 else (np.int16 if signed else np.uint16)
    for name, pattern in _extreme_patterns(low, high, (197, 262)).items():
        frame = pattern.astype(dtype)
        for skip, band in enumerate(reduced_resolutions(frame, 4), start=1):
            assert band.dtype == np.int32
            assert np.array_equal(band, reduced_resolution(frame, skip)), (name, skip)


def test_int16_passes_are_chosen_only_where_they_fit():
    from imaging.codecs.wavelet import _fits_int16, _low_pass_bounds

    assert _fits_int16((0, 4095)) and _fits_int16(_low_pass_bounds((0, 4095)))  # level 1 of 12-bit data
    assert not _fits_int16((0, 65535)) and not _fits_int16((-32768, 32767)) and not _fits_int16(None)
    bounds = (0, 4095)
    for _ in range(6):
        bounds = _low_pass_bounds(bounds)
    assert not _fits_int16(bounds)  # the range grows each pass; deep levels go back to int32


# The codec registry.

REGISTERED = [
    # transfer syntax, lossless, media type, encodes
    pytest.param(uids.EXPLICIT_LE, True, "application/octet-stream", True, id="explicit-le"),
    pytest.param(uids.HTJ2K_LOSSLESS_RPCL, True, "image/jph", True, id="htj2k-lossless-rpcl"),
    pytest.param(uids.HTJ2K_LOSSLESS, True, "image/jph", False, id="htj2k-lossless"),
    pytest.param(uids.HTJ2K, False, "image/jphc", False, id="htj2k"),
    pytest.param(uids.J2K_LOSSLESS, True, "image/j2c", True, id="j2k-lossless"),
    pytest.param(uids.J2K, False, "image/j2c", False, id="j2k"),
    pytest.param(uids.JPEG_BASELINE, False, "image/jpeg", False, id="jpeg-baseline"),
]


@pytest.mark.parametrize("transfer_syntax, lossless, media_type, encodes", REGISTERED)
def test_the_registry_answers_for_each_syntax_it_decodes(transfer_syntax, lossless, media_type, encodes):
    assert registry.codec_for(transfer_syntax).is_available()
    assert registry.is_lossless(transfer_syntax) is lossless
    assert registry.media_type(transfer_syntax) == media_type == registry.frame_media_type(transfer_syntax)
    assert registry.can_encode(transfer_syntax) is encodes


def test_the_registry_decodes_exactly_the_syntaxes_stored_frames_are_in():
    assert registry.supported_syntaxes() == {param.values[0] for param in REGISTERED}
    assert uids.AS_RECEIVED <= registry.supported_syntaxes()


def test_an_unknown_syntax_is_refused_by_name():
    description = PixelDescription(rows=1, columns=1, samples_per_pixel=1, bits_allocated=8, bits_stored=8,
                                   signed=False, photometric="MONOCHROME2", transfer_syntax=uids.RLE_LOSSLESS)
    with pytest.raises(UnsupportedTransferSyntax, match="frames encoded as 1.2.840.10008.1.2.5"):
        registry.frame_decode(b"\x00", description)
    with pytest.raises(UnsupportedTransferSyntax, match="No codec encodes frames as 1.2.840.10008.1.2.4.91"):
        registry.frame_encode(np.zeros((4, 4), np.uint8), transfer_syntax=uids.J2K)
    assert registry.frame_reducible_levels(description) == 0


def test_a_syntax_has_one_codec():
    with pytest.raises(ValueError, match="already has a codec"):
        registry.codec_register(registry.codec_for(uids.J2K))


def test_bytes_a_codec_refuses_raise_a_frame_decode_error():
    description = PixelDescription(rows=8, columns=8, samples_per_pixel=1, bits_allocated=16, bits_stored=16,
                                   signed=False, photometric="MONOCHROME2", transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL)
    with pytest.raises(FrameDecodeError, match="the frame cannot be decoded"):
        registry.frame_decode(b"not a codestream", description)


@pytest.mark.parametrize("transfer_syntax", [uids.HTJ2K_LOSSLESS_RPCL, uids.J2K_LOSSLESS, uids.EXPLICIT_LE])
@pytest.mark.parametrize("shape, dtype, rgb", [((67, 129), np.int16, False), ((64, 80), np.uint16, False),
                                               ((40, 50, 3), np.uint8, True)], ids=["signed", "unsigned", "rgb"])
def test_every_encoder_round_trips_through_its_decoder(transfer_syntax, shape, dtype, rgb):
    info = np.iinfo(dtype)
    samples = np.random.default_rng(7).integers(info.min, info.max + 1, shape).astype(dtype)
    description = PixelDescription(rows=shape[0], columns=shape[1], samples_per_pixel=3 if rgb else 1,
                                   bits_allocated=info.bits, bits_stored=info.bits, signed=info.min < 0,
                                   photometric="RGB" if rgb else "MONOCHROME2", transfer_syntax=transfer_syntax)
    frame_bytes = registry.frame_encode(samples, transfer_syntax=transfer_syntax, rgb=rgb)
    decoded = registry.frame_decode(frame_bytes, description)
    assert decoded.dtype == samples.dtype and np.array_equal(decoded, samples)


def test_htj2k_decodes_reduced_levels_and_other_codecs_decode_in_full():
    samples = np.random.default_rng(8).integers(0, 4096, (512, 512)).astype(np.uint16)
    for transfer_syntax in (uids.HTJ2K_LOSSLESS_RPCL, uids.J2K_LOSSLESS):
        description = PixelDescription(rows=512, columns=512, samples_per_pixel=1, bits_allocated=16,
                                       bits_stored=12, signed=False, photometric="MONOCHROME2",
                                       transfer_syntax=transfer_syntax)
        frame_bytes = registry.frame_encode(samples, transfer_syntax=transfer_syntax)
        reduced = registry.frame_decode(frame_bytes, description, skip_levels=2)
        if transfer_syntax == uids.HTJ2K_LOSSLESS_RPCL:
            assert registry.frame_reducible_levels(description) == 3 and reduced.shape == (128, 128)
        else:
            assert registry.frame_reducible_levels(description) == 0 and np.array_equal(reduced, samples)


def test_one_photometric_table_for_what_decoded_frames_hold():
    assert decoded_photometric("YBR_FULL_422") == "YBR_FULL"
    assert decoded_photometric("YBR_RCT") == decoded_photometric("YBR_ICT") == "RGB"
    assert decoded_photometric("YBR_PARTIAL_420") == "YBR_PARTIAL_420"  # no codec here converts it: still YCbCr
    lossy_colour = PixelDescription(rows=1, columns=1, samples_per_pixel=3, bits_allocated=8, bits_stored=8,
                                    signed=False, photometric="YBR_FULL_422", transfer_syntax=uids.JPEG_BASELINE)
    assert lossy_colour.decoded_photometric == "RGB"  # libjpeg converts as it decodes


def test_a_description_from_stored_metadata_takes_the_defaults_of_absent_values():
    description = PixelDescription.from_dicom({"Rows": 2, "Columns": 3, "NumberOfFrames": "4"}, None)
    assert description == PixelDescription(rows=2, columns=3, samples_per_pixel=1, bits_allocated=8, bits_stored=8,
                                           signed=False, photometric="MONOCHROME2",
                                           transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL, number_of_frames=4)
    assert PixelDescription.from_dicom({"NumberOfFrames": "x"}, uids.EXPLICIT_LE).number_of_frames == 1


FRAME_ROWS = [row for row in MANIFEST if row["frames"] != "0" and row["has_file_meta"] == "yes"]
# The codestream is unsigned where PixelRepresentation says signed: pydicom follows the dataset, imagecodecs the
# codestream. Only the shape is compared; the store never keeps such a frame (received J2K lossless is transcoded).
SIGNEDNESS_MISMATCH = {"J2K90__J2K_pixelrep_mismatch.dcm"}


def _first_frame(dataset: pydicom.Dataset, description: PixelDescription) -> bytes:
    """The first frame's bytes: an encapsulated fragment, or native samples little endian as the store keeps them."""
    from imaging.codecs.dataset_pixels import native_frame_bytes

    if description.transfer_syntax in uids.NATIVE:
        return native_frame_bytes(dataset, description)[0]
    return next(generate_frames(dataset.PixelData, number_of_frames=description.number_of_frames))


@pytest.mark.parametrize("row", FRAME_ROWS, ids=lambda row: row["file"])
def test_every_sample_syntax_decodes_through_the_registry_or_is_refused_by_name(row):
    """A syntax with a codec decodes the file's first frame to Rows x Columns (lossless ones to exactly the samples
    pydicom's plugins give at import); the others are refused with their UID, and the store never holds frames in
    them: pydicom decodes such files whole at import and they are stored as lossless HTJ2K."""
    from imaging.codecs.dataset_pixels import _mask

    dataset = pydicom.dcmread(DICOM_DIR / row["file"])
    transfer_syntax = str(dataset.file_meta.TransferSyntaxUID)
    description = describe(dataset, transfer_syntax)
    frame_bytes = _first_frame(dataset, description)
    if transfer_syntax not in registry.supported_syntaxes():
        assert transfer_syntax in uids.TRANSCODED
        with pytest.raises(UnsupportedTransferSyntax, match=transfer_syntax.replace(".", r"\.")):
            registry.frame_decode(frame_bytes, description)
        return
    decoded = registry.frame_decode(frame_bytes, description)
    samples = (description.samples_per_pixel,) if description.samples_per_pixel > 1 else ()
    assert decoded.shape == (description.rows, description.columns, *samples)
    if (registry.is_lossless(transfer_syntax) and description.samples_per_pixel == 1
            and description.bits_allocated in (8, 16) and not description.is_float
            and row["file"] not in SIGNEDNESS_MISMATCH):
        assert np.array_equal(_mask(decoded, description), next(iter_decoded_frames(dataset, description)))
