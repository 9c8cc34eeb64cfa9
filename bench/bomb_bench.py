"""Decompression bombs and large frames (issue 11 item 2): peak worker memory while importing bomb files with the
default limits, and the time to draw a 32768x32768 HTJ2K frame on a 1,000-pixel canvas against a full decode.

    .venv/bin/python bench/bomb_bench.py [--side 32768] [--skip-render]

Each bomb goes through a real import worker process (the pool's forkserver worker, `process_batch`), which
reports how far its peak resident memory (VmHWM, reset through /proc/self/clear_refs before each file) rose. The
render part encodes one 8-bit frame of `--side` pixels square (a smooth picture with noise), stores it in a
filesystem blob store and times the viewer's path (read the tile-parts that hold the level fitting the canvas,
decode, window, JPEG) against decoding the whole frame and scaling it down. Prints one table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MIB = 1024 * 1024


def _status_kib(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def measured_batch(items, s3, storage_format, sink, **options):
    """The pool's worker function, one file at a time, each result carrying (peak RSS growth, seconds)."""
    from imaging.pipeline.pool import process_batch

    results = []
    for item in items:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before, started = _status_kib("VmHWM"), time.perf_counter()
        [result] = process_batch([item], s3, storage_format, sink, **options)
        result.warnings = [{"peak_growth": (_status_kib("VmHWM") - before) * 1024,
                            "seconds": time.perf_counter() - started}]
        results.append(result)
    return results


def bomb_rows() -> list[tuple[str, str]]:
    from imaging.dicom.reader import DecodeLimits
    from imaging.pipeline.pool import process_all
    from imaging.pipeline.sources import S3Settings, SourceObject
    from tests.bombs import inflated_size, pixel_bomb, private_ob_bomb

    bombs = {
        "2 GiB private OB, one element (issue)": private_ob_bomb(2 << 30),
        "2 GiB private OB, 2048 elements of 1 MiB": private_ob_bomb(2 << 30, elements=2048),
        "32768x32768 8-bit pixel data (issue)": pixel_bomb(32768, 32768),
    }
    folder = Path(tempfile.mkdtemp(prefix="bombs-"))
    objects = []
    for index, (label, data) in enumerate(bombs.items()):
        path = folder / f"{index}.dcm"
        path.write_bytes(data)
        objects.append(SourceObject(uri=path.as_uri(), display_name=label, size=len(data)))
    limits = DecodeLimits()  # the defaults: 1 GiB inflated, 2^28 pixels per frame
    rows = []
    for result in process_all(objects, s3=S3Settings("", "", "", "us-east-1"), storage_format="HTJ2K",
                              concurrency=1, worker=measured_batch, limits=limits):
        figures = result.warnings[0]
        size = next(o.size for o in objects if o.display_name == result.input_file)
        inflated = inflated_size(bombs[result.input_file])
        rows.append((f"import: {result.input_file} ({size / MIB:.1f} MiB file, {inflated / MIB:,.0f} MiB inflated)",
                     f"peak worker RSS +{figures['peak_growth'] / MIB:,.0f} MiB in {figures['seconds']:.2f} s: "
                     f"{result.message}"))
    return rows


def picture(side: int):
    """A smooth 8-bit picture with a little noise, built in stripes (a float image of this size would not fit)."""
    import numpy as np

    frame = np.empty((side, side), np.uint8)
    columns = np.sin(np.arange(side, dtype=np.float32) / (side / 11)) * 90
    noise = np.random.default_rng(1).integers(-4, 5, (1024, side), dtype=np.int16)
    for top in range(0, side, 1024):
        rows = np.cos(np.arange(top, min(top + 1024, side), dtype=np.float32) / (side / 7))[:, None]
        stripe = 128 + rows * columns + noise[: len(rows)]
        frame[top : top + len(rows)] = np.clip(stripe, 0, 255)
    return frame


def render_rows(side: int, canvas: int = 1000) -> list[tuple[str, str]]:
    import numpy as np
    from PIL import Image

    from imaging.codecs import htj2k
    from imaging.codecs.description import PixelDescription
    from imaging.dicom import uids
    from imaging.storage.filesystem import FilesystemBlobStore
    from imaging.render.pixels import (GrayscalePipeline, Window, decode_frame, encode_image,
                               skip_levels_for, stored_codestream)

    frame = picture(side)
    started = time.perf_counter()
    codestream = htj2k.encode_lossless(frame, rgb=False)
    encode_seconds = time.perf_counter() - started
    del frame
    store = FilesystemBlobStore(tempfile.mkdtemp(prefix="bomb-render-"))
    store.put("frame", codestream)
    description = PixelDescription(rows=side, columns=side, samples_per_pixel=1, bits_allocated=8, bits_stored=8,
                              signed=False, photometric="MONOCHROME2", transfer_syntax=uids.HTJ2K_LOSSLESS_RPCL)
    pipeline = GrayscalePipeline({"WindowCenter": "128", "WindowWidth": "256"}, {}, description)
    window = Window(128.0, 256.0)
    size = (canvas, canvas)

    started = time.perf_counter()
    skip = skip_levels_for(description, size)
    data = stored_codestream(store, "frame", description, skip)
    reduced = decode_frame(data, description, skip_levels=skip)
    body = encode_image(pipeline.render(reduced, window, False), fmt="jpeg", quality=90, max_size=size)
    reduced_seconds = time.perf_counter() - started

    started = time.perf_counter()
    full = decode_frame(store.get("frame"), description)
    full_decode_seconds = time.perf_counter() - started
    scaled = np.asarray(Image.fromarray(full).resize(reduced.shape[::-1], Image.Resampling.BOX))
    full_body = encode_image(pipeline.render(full, window, False), fmt="jpeg", quality=90, max_size=size)
    full_seconds = time.perf_counter() - started
    difference = np.abs(reduced.astype(np.int16) - scaled.astype(np.int16))
    return [
        (f"render: {side}x{side} 8-bit HTJ2K frame", f"{len(codestream) / MIB:,.1f} MiB codestream, "
         f"{htj2k.codestream_levels(codestream)} levels, encoded in {encode_seconds:.1f} s"),
        (f"render: on a {canvas}-px canvas (level that fits)",
         f"{reduced_seconds * 1000:,.0f} ms: {skip} levels down, {reduced.shape[1]}x{reduced.shape[0]} decoded from "
         f"{len(data) / 1024:,.0f} KiB read, {len(body) / 1024:.0f} KiB JPEG"),
        (f"render: on a {canvas}-px canvas (full decode)",
         f"{full_seconds * 1000:,.0f} ms ({full_decode_seconds * 1000:,.0f} ms of it decoding), "
         f"{len(full_body) / 1024:.0f} KiB JPEG"),
        ("render: level vs full decode scaled down", f"mean |difference| {difference.mean():.2f}, "
         f"max {int(difference.max())} (of 255)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=32768, help="side of the square frame rendered (pixels)")
    parser.add_argument("--skip-render", action="store_true")
    arguments = parser.parse_args()
    rows = bomb_rows()
    if not arguments.skip_render:
        rows += render_rows(arguments.side)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
