"""The render service's pixel work: a stored frame to an 8-bit JPEG, PNG or GIF, on the server. The viewer and
DICOMweb's rendered resources both draw through it (imaging.render.frames picks the frame); it knows no request.

decode (through the codec registry, imaging.codecs.registry; reduced resolutions of HTJ2K frames whenever the frame
is at least twice the size asked for: thumbnails, the first paint, large frames on any canvas) -> Modality LUT
(RescaleSlope/RescaleIntercept, or a Modality LUT Sequence) -> VOI LUT (window from the file by default, linear
function of PS3.3 C.11.2.1.2, LINEAR_EXACT, SIGMOID, or a VOI LUT Sequence) -> MONOCHROME1 inverted -> 8 bits.
For integer samples of up to 16 bits the whole chain is folded into one lookup table over the stored value range,
so a render is one table lookup per pixel whatever the LUT functions are. Colour frames are converted to RGB
(YBR, palette colour). Decoded frames are kept in a bounded LRU (cachetools, sized by bytes).
"""
from __future__ import annotations

import io
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from cachetools import LRUCache
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space

from imaging.codecs import htj2k, openjpeg_check, registry
from imaging.codecs.base import CodecError, UnsupportedTransferSyntax
from imaging.codecs.description import PixelDescription
from imaging.codecs.dimensions import FrameSizeMismatch, check_declared_size
from imaging.codecs.ifrc import sample_range
from imaging.dicom import uids
from imaging.dicom.rebuild import dict_to_dataset
from imaging.storage.base import BlobStore


class RenderError(ValueError):
    """The frame cannot be rendered (unsupported encoding, corrupt data)."""


def decode_frame(data: bytes, description: PixelDescription, *, skip_levels: int = 0) -> np.ndarray:
    """The stored frame as samples: (rows, cols) or (rows, cols, samples), `skip_levels` resolution levels below
    full where its codec can drop them exactly (at most the levels the codestream has). The frame's own header is
    checked against Rows x Columns first (a decompression bomb inside a frame kept as received)."""
    try:
        check_declared_size(data, description.transfer_syntax, description.rows, description.columns)
    except FrameSizeMismatch as e:
        raise RenderError(str(e)) from e
    try:
        return registry.frame_decode(data, description, skip_levels=skip_levels)
    except UnsupportedTransferSyntax as e:
        raise RenderError(f"frames stored as {description.transfer_syntax} cannot be rendered") from e
    except CodecError as e:
        raise RenderError(str(e)) from e


def voi_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """PS3.3 C.11.2.1.2 onto 0..255 (float); callers round half up."""
    values = values.astype(np.float64, copy=False)
    if function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        low, high = center - width / 2.0, center + width / 2.0
        scaled = ((values - center) / width + 0.5) * 255.0
    else:
        width = max(width, 1.0)
        low, high = center - 0.5 - (width - 1) / 2.0, center - 0.5 + (width - 1) / 2.0
        scaled = ((values - (center - 0.5)) / (width - 1) + 0.5) * 255.0 if width > 1 else np.zeros_like(values)
    return np.where(values <= low, 0.0, np.where(values > high, 255.0, scaled))


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"


class GrayscalePipeline:
    """Modality and VOI LUTs of one instance, folded into cached 8-bit tables."""

    def __init__(self, dicom: dict[str, Any], vrs: dict[str, str], description: PixelDescription) -> None:
        self.description = description
        self.dicom = dicom
        relevant = {k: v for k, v in dicom.items() if k in (
            "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence", "VOILUTSequence",
            "WindowCenter", "WindowWidth", "VOILUTFunction", "PixelRepresentation", "BitsStored", "BitsAllocated",
            "PhotometricInterpretation")}
        self.dataset = lut_dataset({**relevant, "DICOMVRs": vrs}, signed=description.signed)
        self.tables: LRUCache[tuple, np.ndarray] = LRUCache(maxsize=16)
        self.lock = threading.Lock()

    def default_window(self) -> Window | None:
        center, width = self.dicom.get("WindowCenter"), self.dicom.get("WindowWidth")
        center = center[0] if isinstance(center, list) else center
        width = width[0] if isinstance(width, list) else width
        try:
            center, width = float(center), float(width)
        except (TypeError, ValueError):
            return None
        if width <= 0:
            return None
        return Window(center, width, str(self.dicom.get("VOILUTFunction") or "LINEAR").strip())

    def modality(self, stored: np.ndarray) -> np.ndarray:
        if "ModalityLUTSequence" in self.dataset:
            return apply_modality_lut(stored, self.dataset).astype(np.float64)
        slope = float(self.dicom.get("RescaleSlope") or 1.0)
        intercept = float(self.dicom.get("RescaleIntercept") or 0.0)
        return stored.astype(np.float64) * slope + intercept

    def voi(self, values: np.ndarray, window: Window | None, frame_range: tuple[float, float]) -> np.ndarray:
        if window is None and "VOILUTSequence" in self.dataset:
            # The LUT is indexed by integer modality values.
            lut_out = apply_voi_lut(np.rint(values).astype(np.int64), self.dataset, index=0,
                                    prefer_lut=True).astype(np.float64)
            descriptor = self.dataset.VOILUTSequence[0].LUTDescriptor
            top = float(2 ** int(descriptor[2]) - 1)
            return lut_out / top * 255.0
        if window is None:
            low, high = frame_range
            window = Window((low + high) / 2.0, max(high - low, 1.0), "LINEAR_EXACT")
        return voi_window(values, window.center, window.width, window.function)

    def table(self, window: Window | None, invert: bool, frame_range: tuple[float, float]) -> tuple[np.ndarray, int]:
        # Tables cover integer samples of at most 16 bits (render() computes wider data directly).
        low, high = sample_range(min(self.description.bits_stored, 16), self.description.signed)
        key = (window, invert, frame_range if window is None else None)
        with self.lock:
            cached = self.tables.get(key)
        if cached is not None:
            return cached, low
        domain = np.arange(low, high + 1, dtype=np.int64)
        table = to_uint8(self.voi(self.modality(domain), window, frame_range))
        if invert:
            table = 255 - table
        with self.lock:
            self.tables[key] = table
        return table, low

    def render(self, stored: np.ndarray, window: Window | None, invert: bool) -> np.ndarray:
        if stored.dtype.kind in "iu" and self.description.bits_allocated <= 16:
            frame_range = (0.0, 0.0)
            if window is None and "VOILUTSequence" not in self.dataset:
                values = self.modality(np.array([stored.min(), stored.max()]))
                frame_range = (float(values.min()), float(values.max()))
            table, low = self.table(window, invert, frame_range)
            return table[stored.astype(np.int32) - low] if low else table[stored]
        values = self.modality(stored)  # 32-bit and float data: computed directly
        out = to_uint8(self.voi(values, window, (float(values.min()), float(values.max()))))
        return 255 - out if invert else out


def lut_dataset(values: dict[str, Any], *, signed: bool = False):
    """A dataset of LUT attributes for pydicom's LUT functions; binary LUT data is little endian as stored."""
    dataset = dict_to_dataset(values, signed=signed)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = uids.EXPLICIT_LE
    return dataset


def color_to_rgb8(frame: np.ndarray, description: PixelDescription, dicom: dict[str, Any],
                  vrs: dict[str, str]) -> np.ndarray:
    photometric = description.decoded_photometric
    if photometric == "PALETTE COLOR":
        dataset = lut_dataset({k: v for k, v in dicom.items() if "Palette" in k or k in (
            "BitsStored", "BitsAllocated", "PhotometricInterpretation", "PixelRepresentation")} | {"DICOMVRs": vrs})
        rgb = apply_color_lut(frame, dataset)
        top = float(rgb.max()) if rgb.dtype != np.uint8 else 255.0
        return rgb if rgb.dtype == np.uint8 else to_uint8(rgb.astype(np.float64) * 255.0 / (65535.0 if top > 255 else 255.0))
    if photometric in ("YBR_FULL", "YBR_FULL_422") and frame.ndim == 3:
        frame = convert_color_space(frame, "YBR_FULL", "RGB")
    if frame.dtype != np.uint8:
        shift = max(description.bits_stored - 8, 0)
        frame = (frame >> shift).astype(np.uint8) if frame.dtype.kind in "iu" else to_uint8(frame)
    return frame


def encode_image(pixels: np.ndarray, *, fmt: str, quality: int, max_size: tuple[int, int] | None,
                 enlarge: bool = False) -> bytes:
    """8-bit samples as a JPEG, PNG or GIF, shrunk to fit within `max_size` keeping the aspect ratio (and, with
    `enlarge`, grown to fit it too: DICOMweb's viewport is the size of the picture asked for)."""
    image = Image.fromarray(pixels)
    if max_size and (image.width > max_size[0] or image.height > max_size[1]):
        image.thumbnail(max_size, Image.Resampling.BILINEAR)
    elif max_size and enlarge and image.width < max_size[0] and image.height < max_size[1]:
        scale = min(max_size[0] / image.width, max_size[1] / image.height)
        width = max(1, min(max_size[0], round(image.width * scale)))
        height = max(1, min(max_size[1], round(image.height * scale)))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=1)
    elif fmt == "gif":
        image.save(buffer, format="GIF")
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class Region:
    """A part of a frame in full-resolution pixels (PS3.18 viewport sx,sy,sw,sh): the top left corner and a signed
    size; a negative width or height flips the picture along that axis."""

    x: int
    y: int
    width: int
    height: int


def region_crop(pixels: np.ndarray, region: Region, *, skip_levels: int) -> np.ndarray:
    """The region out of a frame decoded `skip_levels` resolution levels below full (coordinates halved per level),
    flipped where its width or height is negative. A region reaching past the frame is cut at its edge."""
    scale = 2 ** skip_levels
    rows, columns = pixels.shape[:2]
    x0, x1 = sorted((region.x, region.x + region.width))
    y0, y1 = sorted((region.y, region.y + region.height))
    left, right = min(columns, max(0, x0) // scale), min(columns, -(-max(0, x1) // scale))
    top, bottom = min(rows, max(0, y0) // scale), min(rows, -(-max(0, y1) // scale))
    cropped = pixels[top:max(bottom, top + 1), left:max(right, left + 1)]
    if region.width < 0:
        cropped = cropped[:, ::-1]
    if region.height < 0:
        cropped = cropped[::-1]
    return np.ascontiguousarray(cropped)


def skip_levels_for(description: PixelDescription, max_size: tuple[int, int] | None, *,
                    region: Region | None = None) -> int:
    """How many resolution levels can be dropped and still cover `max_size` (where the codec can drop them
    exactly: HTJ2K): a 32768x32768 frame on a 1,000-pixel canvas is decoded at 1024x1024, never in full. With a
    `region`, that part of the frame must still cover `max_size`. 0 where there is no exact reduced decode: the
    frame is decoded in full (and cached as such)."""
    if not max_size:
        return 0
    levels = registry.frame_reducible_levels(description)
    if not levels:
        return 0
    columns, rows = (abs(region.width), abs(region.height)) if region else (description.columns, description.rows)
    # The picture fits within max_size keeping its aspect ratio: the axis that shrinks most sets the scale.
    ratio = max(columns / max(max_size[0], 1), rows / max(max_size[1], 1))
    if ratio < 2:
        return 0
    return max(0, min(int(math.log2(ratio)), levels))


# The front of a codestream read first to find its tile-parts: the main header with its TLM marker fits easily.
CODESTREAM_HEAD_BYTES = 64 * 1024


def stored_codestream(store: BlobStore, blob_key: str, description: PixelDescription,
                      skip_levels: int) -> bytes | None:
    """The frame's stored bytes, or for a reduced resolution of one of our HTJ2K codestreams only the tile-parts
    that hold it (one per resolution, lengths in the TLM marker: SPEC 6.1), so that a 32768x32768 frame drawn at
    1024x1024 reads a few hundred KB, not the whole blob. None when the blob is missing."""
    if (not skip_levels or description.transfer_syntax != uids.HTJ2K_LOSSLESS_RPCL
            or not openjpeg_check.available()):
        return store.get(blob_key)
    head = store.get_range(blob_key, 0, CODESTREAM_HEAD_BYTES)
    if head is None:
        return None
    length = htj2k.reduced_prefix_length(head, skip_levels)
    if length is None:
        return store.get(blob_key)
    if length <= len(head):
        return htj2k.reduced_codestream(head[:length])
    rest = store.get_range(blob_key, len(head), length - len(head))
    return None if rest is None else htj2k.reduced_codestream(head + rest)


class DecodedFrameCache:
    """Decoded frames by (frame id, skipped levels), least recently used first out, bounded by their bytes."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.items: LRUCache[tuple[str, int], np.ndarray] = LRUCache(maxsize=limit_bytes, getsizeof=_frame_bytes)
        self.lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self.items.currsize)

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        with self.lock:
            return self.items.get(key)

    def put(self, key: tuple[str, int], frame: np.ndarray) -> None:
        if frame.nbytes > self.limit:
            return  # it would push every other frame out and then itself
        with self.lock:
            if key not in self.items:
                self.items[key] = frame


def _frame_bytes(frame: np.ndarray) -> int:
    return frame.nbytes
