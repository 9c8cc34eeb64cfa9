"""The render service against NumPy references of the DICOM formulas, on real files from ../shared/dicom.

Each file goes through the real import steps (transcode to HTJ2K, normalized metadata), then the render service
decodes the stored frame and maps it to 8 bits; the reference computes the same from pydicom's pixels.
"""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_color_lut, pixel_array

from imaging.codecs.description import PixelDescription
from imaging.pipeline.process import process_bytes
from imaging.pipeline.results import FileResult
from tests.paths import DICOM_DIR
from imaging.render.pixels import GrayscalePipeline, Window, color_to_rgb8, decode_frame, encode_image


def stored(name: str):
    result = process_bytes((DICOM_DIR / name).read_bytes(), FileResult(input_file=name))
    assert result.ok, result.message
    dicom = {**result.levels["Series"], **result.instance["DICOM"]}
    description = PixelDescription.from_dicom(dicom, result.instance["StoredTransferSyntaxUID"])
    frame = decode_frame(result.frames[0].frame_bytes, description)
    return dicom, result.instance.get("DICOMVRs", {}), description, frame


def reference_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, written out plainly."""
    out = np.empty(values.shape)
    low = values <= center - 0.5 - (width - 1) / 2
    high = values > center - 0.5 + (width - 1) / 2
    mid = ~low & ~high
    out[low], out[high] = 0, 255
    out[mid] = ((values[mid] - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", ["ELE__CT_small.dcm", "ELE__MR_small.dcm", "ELE__693_UNCR.dcm",
                                  "J2K90__MR2_J2KR.dcm"])
def test_grayscale_with_the_files_window(name):
    dicom, vrs, description, frame = stored(name)
    source = pydicom.dcmread(DICOM_DIR / name)
    raw = pixel_array(source, as_rgb=False).astype(np.float64)
    slope, intercept = float(source.get("RescaleSlope", 1)), float(source.get("RescaleIntercept", 0))
    pipeline = GrayscalePipeline(dicom, vrs, description)
    window = pipeline.default_window() or Window(float(raw.mean() * slope + intercept), 400.0)
    rendered = pipeline.render(frame, window, invert=False)
    assert np.array_equal(rendered, reference_linear(raw * slope + intercept, window.center, window.width))


def test_explicit_window_functions():
    dicom, vrs, description, frame = stored("ELE__CT_small.dcm")
    pipeline = GrayscalePipeline(dicom, vrs, description)
    values = frame.astype(np.float64) * float(dicom.get("RescaleSlope", 1)) + float(dicom.get("RescaleIntercept", 0))
    exact = pipeline.render(frame, Window(40, 400, "LINEAR_EXACT"), invert=False)
    expected = np.where(values <= 40 - 200, 0, np.where(values > 40 + 200, 255, ((values - 40) / 400 + 0.5) * 255))
    assert np.array_equal(exact, np.clip(np.floor(expected + 0.5), 0, 255).astype(np.uint8))
    sigmoid = pipeline.render(frame, Window(40, 400, "SIGMOID"), invert=False)
    expected = 255 / (1 + np.exp(-4 * (values - 40) / 400))
    assert np.array_equal(sigmoid, np.clip(np.floor(expected + 0.5), 0, 255).astype(np.uint8))


def test_monochrome1_is_inverted():
    name = "hierarchy/77654033_CR1_6154.dcm"
    dicom, vrs, description, frame = stored(name)
    assert description.photometric == "MONOCHROME1"
    pipeline = GrayscalePipeline(dicom, vrs, description)
    window = Window(1000, 2000)
    source = pixel_array(pydicom.dcmread(DICOM_DIR / name), as_rgb=False).astype(np.float64)
    slope = float(dicom.get("RescaleSlope") or 1)
    intercept = float(dicom.get("RescaleIntercept") or 0)
    assert np.array_equal(pipeline.render(frame, window, invert=True),
                          255 - reference_linear(source * slope + intercept, 1000, 2000))


def test_modality_lut_sequence_is_applied():
    dicom, vrs, description, frame = stored("ELE__mlut_18.dcm")
    source = pydicom.dcmread(DICOM_DIR / "ELE__mlut_18.dcm")
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(pixel_array(source, as_rgb=False), source).astype(np.float64)
    pipeline = GrayscalePipeline(dicom, vrs, description)
    assert np.array_equal(pipeline.render(frame, Window(2000, 4000), invert=False), reference_linear(values, 2000, 4000))


def test_rgb_and_ybr():
    for name in ("ELE__SC_rgb.dcm", "ELE__US1_UNCR.dcm"):
        dicom, vrs, description, frame = stored(name)
        expected = pixel_array(pydicom.dcmread(DICOM_DIR / name))  # pydicom converts to RGB
        assert np.array_equal(color_to_rgb8(frame, description, dicom, vrs), expected)
    dicom, vrs, description, frame = stored("ELE__SC_ybr_full_uncompressed.dcm")
    expected = pixel_array(pydicom.dcmread(DICOM_DIR / "ELE__SC_ybr_full_uncompressed.dcm"), as_rgb=True)
    assert np.abs(color_to_rgb8(frame, description, dicom, vrs).astype(int) - expected.astype(int)).max() <= 1


def test_palette_colour():
    name = "ILE__gdcm-US-ALOKA-16.dcm"
    dicom, vrs, description, frame = stored(name)
    source = pydicom.dcmread(DICOM_DIR / name)
    expected = apply_color_lut(pixel_array(source), source)
    expected8 = np.clip(np.floor(expected.astype(np.float64) * 255 / 65535 + 0.5), 0, 255).astype(np.uint8) \
        if expected.dtype != np.uint8 else expected
    assert np.array_equal(color_to_rgb8(frame, description, dicom, vrs), expected8)


def test_outputs_jpeg_and_lossless_png():
    dicom, vrs, description, frame = stored("ELE__CT_small.dcm")
    pixels = GrayscalePipeline(dicom, vrs, description).render(frame, Window(40, 400), invert=False)
    png = encode_image(pixels, fmt="png", quality=90, max_size=None)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), pixels)
    jpeg = encode_image(pixels, fmt="jpeg", quality=90, max_size=(64, 64))
    assert Image.open(io.BytesIO(jpeg)).size == (64, 64)


def test_voi_lut_sequence_is_the_default_when_the_file_has_one():
    from pydicom.pixels import apply_voi_lut

    dicom, vrs, description, frame = stored("ELE__vlut_04.dcm")
    source = pydicom.dcmread(DICOM_DIR / "ELE__vlut_04.dcm")
    pipeline = GrayscalePipeline(dicom, vrs, description)
    assert pipeline.default_window() is None  # vlut_04 carries only the LUT, no window
    values = apply_voi_lut(pixel_array(source, as_rgb=False), source, index=0, prefer_lut=True).astype(np.float64)
    top = float(2 ** int(source.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    expected = np.clip(np.floor(values / top * 255 + 0.5), 0, 255).astype(np.uint8)
    assert np.array_equal(pipeline.render(frame, None, invert=False), expected)


def _description(bits_allocated: int, bits_stored: int, signed: bool = False, rows: int = 301, columns: int = 203):
    from imaging.dicom import uids

    return PixelDescription(rows=rows, columns=columns, samples_per_pixel=1, bits_allocated=bits_allocated,
                            bits_stored=bits_stored, signed=signed, photometric="MONOCHROME2",
                            transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL)


def test_reduced_resolution_renders_carry_no_wrapped_samples():
    """A bright disc on a dark background: the wavelet band undershoots below 0 at the edge, which the decoder
    wraps to ~65,500; the viewer must give the clamped band (what a thumbnail of the full decode shows: black)."""
    from imaging.codecs import htj2k
    from imaging.codecs.wavelet import reduced_resolutions
    from imaging.render.pixels import skip_levels_for

    y, x = np.mgrid[0:301, 0:203]
    frame = np.where((x - 100) ** 2 + (y - 150) ** 2 < 80**2, 4000, 0).astype(np.uint16)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    description = _description(16, 12)
    skip = skip_levels_for(description, (40, 40))
    assert skip == 2
    band = reduced_resolutions(frame, skip)[-1]
    assert band.min() < 0  # there is something to wrap
    decoded = decode_frame(codestream, description, skip_levels=skip)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, np.clip(band, 0, 4095))


@pytest.mark.parametrize("bits_allocated, bits_stored, signed", [(8, 8, False), (16, 16, False), (16, 15, False),
                                                                  (16, 16, True), (16, 12, True)])
def test_reduced_decodes_are_exact_clamped_bands_at_every_depth(bits_allocated, bits_stored, signed):
    """Where OpenJPH would wrap with no spare bits to undo it (8-bit, full 16-bit), the reduced level comes from
    OpenJPEG, which clamps: each level equals the independently computed 5/3 band clamped to the sample range,
    so a large frame of any depth is drawn from the level that fits the canvas."""
    from imaging.codecs import htj2k
    from imaging.codecs.ifrc import sample_range
    from imaging.codecs.wavelet import reduced_resolutions
    from imaging.render.pixels import skip_levels_for

    low, high = sample_range(bits_stored, signed)
    y, x = np.mgrid[0:301, 0:203]
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
    frame = np.where((x - 100) ** 2 + (y - 150) ** 2 < 80**2, high, low).astype(dtype)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    description = _description(bits_allocated, bits_stored, signed)
    bands = reduced_resolutions(frame, htj2k.codestream_levels(codestream))
    assert min(band.min() for band in bands) < low or max(band.max() for band in bands) > high  # would wrap
    for skip, band in enumerate(bands, start=1):
        decoded = decode_frame(codestream, description, skip_levels=skip)
        assert decoded.dtype == dtype and np.array_equal(decoded, np.clip(band, low, high))
    assert skip_levels_for(_description(bits_allocated, bits_stored, signed, rows=1024, columns=1024), (64, 64)) == 4


def test_a_large_frame_on_a_small_canvas_renders_from_the_level_that_fits_and_looks_like_the_full_one():
    """A 4096x4096 8-bit frame on a 1000-pixel canvas is decoded at 1024x1024 (two levels down), never in full,
    and the picture matches the full decode scaled down to the same size."""
    from imaging.codecs import htj2k
    from imaging.dicom import uids
    from imaging.render.pixels import skip_levels_for

    y, x = np.mgrid[0:4096, 0:4096].astype(np.float64)
    noise = np.random.default_rng(11).integers(-6, 7, (4096, 4096))
    frame = np.clip(128 + 90 * np.sin(x / 300) * np.cos(y / 420) + noise, 0, 255).astype(np.uint8)
    codestream = htj2k.encode_lossless(frame, rgb=False)
    description = PixelDescription(rows=4096, columns=4096, samples_per_pixel=1, bits_allocated=8, bits_stored=8,
                              signed=False, photometric="MONOCHROME2", transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL)
    skip = skip_levels_for(description, (1000, 1000))
    assert skip == 2
    reduced = decode_frame(codestream, description, skip_levels=skip)
    assert reduced.shape == (1024, 1024)
    full = np.asarray(Image.fromarray(decode_frame(codestream, description)).resize((1024, 1024), Image.Resampling.BOX))
    difference = np.abs(reduced.astype(np.int32) - full.astype(np.int32))
    assert difference.mean() < 2.0 and difference.max() <= 12, (difference.mean(), difference.max())


@pytest.mark.parametrize("shape, rgb", [((301, 203), False), ((2048, 1536), False), ((500, 700, 3), True)])
def test_a_reduced_level_is_read_from_the_front_of_the_blob_alone(tmp_path, shape, rgb):
    """Only the tile-parts of the kept resolutions are read (a prefix whose length the TLM marker gives), and
    they decode to what the whole codestream decodes to at that level."""
    from imaging.codecs import htj2k
    from imaging.dicom import uids
    from imaging.storage.filesystem import FilesystemBlobStore
    from imaging.render.pixels import stored_codestream

    frame = np.random.default_rng(4).integers(0, 200, shape).astype(np.uint8)
    codestream = htj2k.encode_lossless(frame, rgb=rgb)
    reads: list[tuple[int, int]] = []

    class CountingStore(FilesystemBlobStore):
        def get(self, key):
            reads.append((0, -1))
            return super().get(key)

        def get_range(self, key, start, length):
            reads.append((start, length))
            return super().get_range(key, start, length)

    store = CountingStore(tmp_path)
    store.put("frame", codestream)
    description = PixelDescription(rows=shape[0], columns=shape[1], samples_per_pixel=3 if rgb else 1, bits_allocated=8,
                              bits_stored=8, signed=False, photometric="RGB" if rgb else "MONOCHROME2",
                              transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL)
    for skip in range(1, htj2k.codestream_levels(codestream) + 1):
        reads.clear()
        prefix = stored_codestream(store, "frame", description, skip)
        assert len(prefix) < len(codestream) and all(length >= 0 for _, length in reads)  # never the whole blob
        assert np.array_equal(decode_frame(prefix, description, skip_levels=skip),
                              decode_frame(codestream, description, skip_levels=skip))
    assert stored_codestream(store, "frame", description, 0) == codestream
    assert stored_codestream(store, "missing", description, 1) is None


def test_blob_stores_read_part_of_an_object(tmp_path):
    from imaging.storage.filesystem import FilesystemBlobStore
    from imaging.storage.memory import MemoryBlobStore

    for store in (FilesystemBlobStore(tmp_path), MemoryBlobStore()):
        store.put("a/b", b"0123456789")
        assert store.get_range("a/b", 0, 4) == b"0123"
        assert store.get_range("a/b", 8, 10) == b"89"
        assert store.get_range("a/b", 20, 4) == b""
        assert store.get_range("a/missing", 0, 4) is None


@pytest.mark.live
def test_the_s3_blob_store_reads_part_of_an_object(s3):
    from imaging.storage.s3 import S3BlobStore

    s3.create_bucket(Bucket="ranges")
    store = S3BlobStore(client=s3, bucket="ranges", prefix="p/")
    store.put("a/b", b"0123456789")
    assert store.get_range("a/b", 0, 4) == b"0123"
    assert store.get_range("a/b", 8, 10) == b"89"
    assert store.get_range("a/b", 20, 4) == b""
    assert store.get_range("a/missing", 0, 4) is None


def test_decoded_frames_are_kept_least_recently_used_first_out_within_their_bytes():
    from imaging.render.pixels import DecodedFrameCache

    cache = DecodedFrameCache(limit_bytes=3 * 100)
    frames = {name: np.full(100, index, np.uint8) for index, name in enumerate("abcd")}
    for name in "abc":
        cache.put((name, 0), frames[name])
    assert cache.get(("a", 0)) is frames["a"]  # a is now the most recently used
    cache.put(("d", 0), frames["d"])
    assert cache.get(("b", 0)) is None and cache.size == 300
    assert all(cache.get((name, 0)) is frames[name] for name in "acd")
    cache.put(("a", 0), np.zeros(100, np.uint8))  # a key already held keeps its frame
    assert cache.get(("a", 0)) is frames["a"]
    cache.put(("huge", 0), np.zeros(301, np.uint8))  # larger than the whole cache: not kept, nothing dropped
    assert cache.get(("huge", 0)) is None and cache.size == 300


def test_lookup_tables_are_kept_for_the_sixteen_latest_windows():
    pipeline = GrayscalePipeline({"BitsStored": 8}, {}, PixelDescription(
        rows=1, columns=1, samples_per_pixel=1, bits_allocated=8, bits_stored=8, signed=False,
        photometric="MONOCHROME2", transfer_syntax="1.2.840.10008.1.2.1"))
    first, low = pipeline.table(Window(100.0, 50.0), False, (0.0, 0.0))
    assert low == 0 and first.shape == (256,) and pipeline.table(Window(100.0, 50.0), False, (0.0, 0.0))[0] is first
    for width in range(16):
        pipeline.table(Window(10.0, width + 1.0), False, (0.0, 0.0))
    assert pipeline.table(Window(100.0, 50.0), False, (0.0, 0.0))[0] is not first
