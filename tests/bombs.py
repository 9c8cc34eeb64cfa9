"""Decompression bombs for tests and the bench: small Deflated Explicit VR Little Endian files that inflate to
far more than they weigh, built without ever holding the inflated bytes (so the process that builds one stays
small, and a measurement of the process that reads one is not blurred by it)."""
from __future__ import annotations

import io
import struct
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from tests.dicomgen import CT_IMAGE_STORAGE

MIB = 1024 * 1024
_ZERO_BLOCK = bytes(MIB)


def bomb_header(*, rows: int = 0, columns: int = 0, bits: int = 8) -> Dataset:
    """A valid instance's attributes; with rows and columns, an image pixel module for one frame of that size."""
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "BOMB^TEST"
    ds.PatientID = "BOMB-1"
    ds.Modality = "OT"
    if rows and columns:
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = 0
    return ds


def deflated_bomb(header: Dataset, zero_elements: list[tuple[int, str, int]], trailing: bytes = b"") -> bytes:
    """A P10 file whose deflated body is `header` followed by elements of zeros: (tag, VR, length) each, in
    ascending tag order after the header's, then `trailing` bytes as they are. Each MiB of zeros is one
    independently compressed block (a full flush resets the compressor), so the same compressed block is repeated
    instead of compressing it again."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = header.SOPClassUID
    meta.MediaStorageSOPInstanceUID = header.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1499.99"
    out = io.BytesIO()
    out.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = False, True
    write_dataset(body, header)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out.write(compressor.compress(body.getvalue()))
    out.write(compressor.flush(zlib.Z_FULL_FLUSH))
    zero_block = compressor.compress(_ZERO_BLOCK) + compressor.flush(zlib.Z_FULL_FLUSH)
    for tag, vr, length in zero_elements:
        out.write(compressor.compress(struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr.encode(), 0, length)))
        out.write(compressor.flush(zlib.Z_FULL_FLUSH))
        whole, rest = divmod(length, MIB)
        for _ in range(whole):
            out.write(zero_block)
        out.write(compressor.compress(bytes(rest)))
        out.write(compressor.flush(zlib.Z_FULL_FLUSH))
    out.write(compressor.compress(trailing))
    out.write(compressor.flush())
    return out.getvalue()


def private_ob_bomb(size: int, *, elements: int = 1) -> bytes:
    """Private OB elements of zeros, `size` bytes in all (the issue's 2 GiB one is `private_ob_bomb(2 << 30)`)."""
    header = bomb_header()
    header.add_new(0x00090010, "LO", "BOMB")
    each = size // elements
    return deflated_bomb(header, [(0x00091000 + n, "OB", each) for n in range(elements)])


def pixel_bomb(rows: int = 32768, columns: int = 32768) -> bytes:
    """One 8-bit frame of rows x columns zeros (the issue's 32768x32768 file: 1 GiB inflated)."""
    return deflated_bomb(bomb_header(rows=rows, columns=columns), [(0x7FE00010, "OB", rows * columns)])


def inflated_size(data: bytes) -> int:
    """What a file's deflated body inflates to, counted in steps (for checking the bombs themselves)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    source = io.BytesIO(data)
    read_preamble(source, False)
    _read_file_meta_info(source)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size, pending = 0, source.read()
    while pending:
        size += len(inflater.decompress(pending, 16 * MIB))
        pending = inflater.unconsumed_tail
    return size + len(inflater.flush())
