"""Seed inputs and deterministic mutations of real DICOM files, shared by the fuzz targets and their tests.

The seeds are the real files in `../shared/dicom` (next to the repository). A mutation is a pure function of the
seed bytes and an integer, so any failure found by a test or by `bin/fuzz` can be replayed exactly.
"""
from __future__ import annotations

import os
import random
import struct
from functools import lru_cache
from pathlib import Path

SHARED_DICOM = Path(os.environ.get("APERTURE_FUZZ_SEEDS") or Path(__file__).resolve().parents[3] / "shared" / "dicom")
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
# Seeds small enough that a mutated file goes through the whole pipeline in milliseconds.
SMALL_SEED_BYTES = 300_000
# Lengths that break parsers: zero, odd, undefined, past the end, huge.
_HOSTILE_LENGTHS = (0, 1, 3, 0xFFFF, 0xFFFE, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0x10000, 0x100)
_HOSTILE_BYTES = (b"\xff\xfe\xe0\x00", b"\xfe\xff\x00\xe0", b"\xfe\xff\xdd\xe0", b"SQ\x00\x00", b"UN\x00\x00",
                  b"OB\x00\x00", b"\x00" * 8, b"\xff" * 8, b"\\", b"=", b"\x1b$B")


@lru_cache(maxsize=1)
def seed_paths(max_bytes: int | None = SMALL_SEED_BYTES) -> tuple[Path, ...]:
    """The shared DICOM files (sorted, so that seeds are numbered the same on every machine)."""
    if not SHARED_DICOM.is_dir():
        return ()
    paths = sorted(p for p in SHARED_DICOM.glob("*.dcm") if p.is_file())
    return tuple(p for p in paths if max_bytes is None or p.stat().st_size <= max_bytes)


@lru_cache(maxsize=128)
def seed_bytes(name: str) -> bytes:
    return (SHARED_DICOM / name).read_bytes()


def element_offsets(data: bytes, limit: int = 4000) -> list[tuple[int, int]]:
    """(offset of the length field, its size in bytes) of places that look like explicit-VR element headers:
    a two-letter VR after a tag. Cheap and approximate; good enough to aim length corruption at real fields."""
    found: list[tuple[int, int]] = []
    long_vrs = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
    position = 132
    while len(found) < limit:
        position = _next_vr(data, position)
        if position < 0:
            break
        vr = data[position:position + 2]
        if vr in long_vrs:
            found.append((position + 4, 4))
        else:
            found.append((position + 2, 2))
        position += 2
    return found


_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
        b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
        b"UR", b"US", b"UT", b"UV"}


def _next_vr(data: bytes, start: int) -> int:
    for position in range(start, len(data) - 2):
        if position >= 4 and data[position:position + 2] in _VRS and data[position - 3] == 0:
            return position
        if position - start > 20000:
            return -1
    return -1


def mutate(data: bytes, seed: int, *, rounds: int | None = None) -> bytes:
    """A deterministic mutation of `data`: byte flips, truncation, length-field corruption, insertions,
    deletions and copies of chunks (one to three of them)."""
    rng = random.Random(seed)
    buffer = bytearray(data)
    for _ in range(rounds or rng.randint(1, 3)):
        kind = rng.randrange(7)
        if not buffer:
            break
        if kind == 0:  # flip a few bytes, mostly in the header where the structure is
            for _ in range(rng.randint(1, 8)):
                position = _position(rng, len(buffer))
                buffer[position] ^= 1 << rng.randrange(8)
        elif kind == 1:  # truncate
            del buffer[rng.randrange(132, max(133, len(buffer))):]
        elif kind == 2 or kind == 3:  # corrupt an element's length field
            offsets = element_offsets(bytes(buffer), limit=400)
            if not offsets:
                continue
            offset, size = rng.choice(offsets)
            value = rng.choice(_HOSTILE_LENGTHS) if rng.random() < 0.7 else rng.randrange(1 << (8 * size))
            value &= (1 << (8 * size)) - 1
            buffer[offset:offset + size] = struct.pack("<H" if size == 2 else "<I", value)
        elif kind == 4:  # insert hostile or random bytes
            position = _position(rng, len(buffer))
            insert = rng.choice(_HOSTILE_BYTES) if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 16))
            buffer[position:position] = insert
        elif kind == 5:  # delete a chunk
            position = _position(rng, len(buffer))
            del buffer[position:position + rng.randint(1, 64)]
        else:  # copy a chunk of the file elsewhere (duplicated elements, items out of place)
            source = _position(rng, len(buffer))
            chunk = bytes(buffer[source:source + rng.randint(2, 128)])
            position = _position(rng, len(buffer))
            buffer[position:position] = chunk
    return bytes(buffer)


def _position(rng: random.Random, size: int) -> int:
    """Three in four positions fall in the first 2 KB (meta group and header), where structure is dense."""
    if rng.random() < 0.75:
        return rng.randrange(min(size, 2048))
    return rng.randrange(size)


def mutated_corpus(count: int, *, max_bytes: int | None = SMALL_SEED_BYTES,
                   start: int = 0) -> list[tuple[str, int, bytes]]:
    """`count` mutated files, (seed name, mutation number, bytes), spread round-robin over the seeds."""
    paths = seed_paths(max_bytes)
    corpus = []
    for index in range(start, start + count):
        path = paths[index % len(paths)]
        corpus.append((path.name, index, mutate(seed_bytes(path.name), index)))
    return corpus
