"""Viewer speed: one server render against pure decode + JPEG encode, first image on opening a 512x512 CT series,
and scrolling frame rate through a 300-slice series in Chromium.

    .venv/bin/python bench/viewer_bench.py [--slices 300]

Starts a real server (ASGI, websockets) on a throw-away data directory, imports a generated CT series with
`manage.py import_dicom`, and drives Debian's Chromium with Playwright. Prints one table.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "benchmark passphrase 123"


def render_figures(frame_count: int = 50) -> tuple[float, float]:
    """ms per render through the render service vs ms per (HTJ2K decode + JPEG encode) of the same frames."""
    import numpy as np
    from PIL import Image

    from bench.import_bench import phantom_series
    from imaging.codecs import htj2k
    from imaging.codecs.description import PixelDescription
    from imaging.pipeline.process import process_bytes
    from imaging.pipeline.results import FileResult
    from imaging.render.pixels import GrayscalePipeline, decode_frame, encode_image

    folder = Path(tempfile.mkdtemp()) / "r"
    phantom_series(folder, frame_count)
    prepared = []
    for path in sorted(folder.glob("*.dcm")):
        result = process_bytes(path.read_bytes(), FileResult(input_file=path.name))
        dicom = {**result.levels["Series"], **result.instance["DICOM"]}
        prepared.append((result.frames[0].frame_bytes, dicom))
    description = PixelDescription.from_dicom(prepared[0][1], "1.2.840.10008.1.2.4.202")
    pipeline = GrayscalePipeline(prepared[0][1], {}, description)
    window = pipeline.default_window()
    pipeline.render(decode_frame(prepared[0][0], description), window, False)  # build the table once, as a session does

    start = time.perf_counter()
    for data, _ in prepared:
        Image.fromarray(np.clip(htj2k.decode(data) >> 4, 0, 255).astype(np.uint8)).save(io.BytesIO(), "JPEG", quality=90)
    baseline = (time.perf_counter() - start) / len(prepared) * 1000
    start = time.perf_counter()
    for data, _ in prepared:
        encode_image(pipeline.render(decode_frame(data, description), window, False), fmt="jpeg", quality=90, max_size=None)
    service = (time.perf_counter() - start) / len(prepared) * 1000
    return service, baseline


def browser_figures(slices: int) -> tuple[float, float]:
    from playwright.sync_api import sync_playwright

    from bench.import_bench import phantom_series
    from tests.servers import ApertureServer

    server = ApertureServer().start()
    try:
        folder = server.data_dir / "series"
        phantom_series(folder, slices)
        datastore_id = server.manage("shell", "-c", (
            "from django.conf import settings;"
            "settings.APERTURE_TASK_BACKEND=settings.APERTURE_TASK_BACKEND_ALIASES['eager'];"
            "from imaging.services.datastores import datastore_create;"
            "print(datastore_create(client_token='bench', name='bench')['datastoreId'])")).stdout.split()[-1]
        server.manage("import_dicom", "--datastore", datastore_id, str(folder))
        image_set_id = server.manage("shell", "-c", (
            "from django.contrib.auth import get_user_model; from imaging.models import ImageSet;"
            f"get_user_model().objects.create_superuser('bench', '', '{PASSWORD}');"
            f"print(ImageSet.objects.get(datastore_id='{datastore_id}').id)")).stdout.split()[-1]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(server.url + "/accounts/login/")
            page.fill("input[name=username]", "bench")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(server.url + "/")
            url = f"{server.url}/view/{datastore_id}/{image_set_id}/"
            page.goto(url)  # warm: server caches, browser connection
            page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
            first = []
            for _ in range(5):
                page.goto(url)
                page.wait_for_function("window.apertureViewer && window.apertureViewer.firstPaintAt !== null")
                first.append(page.evaluate("window.apertureViewer.firstPaintAt"))
            first_paint = sorted(first)[len(first) // 2]
            # Scroll through every slice as fast as frames arrive: one wheel step per animation frame.
            fps = page.evaluate("""(count) => new Promise((done) => {
                const s = window.apertureViewer, canvas = document.getElementById('viewport');
                const start = performance.now(), before = s.rendered; let steps = 0;
                function tick() {
                    if (steps < count - 1) {
                        canvas.dispatchEvent(new WheelEvent('wheel', {deltaY: 100, bubbles: true, cancelable: true}));
                        steps += 1; requestAnimationFrame(tick);
                    } else {
                        const wait = () => (s.lastHeader.frame === count - 1 ? done((s.rendered - before) * 1000 /
                                            (performance.now() - start)) : setTimeout(wait, 5));
                        wait();
                    }
                }
                requestAnimationFrame(tick);
            })""", slices)
            browser.close()
        return first_paint, fps
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("APERTURE_DATA_DIR", tempfile.mkdtemp(prefix="aperture-viewer-bench-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    service, baseline = render_figures()
    first_paint, fps = browser_figures(args.slices)
    print(f"{'measure':<46}{'value':>10}{'target':>12}")
    print(f"{'render 512x512 (decode, window, JPEG) ms':<46}{service:>10.2f}{'':>12}")
    print(f"{'pure HTJ2K decode + JPEG encode ms':<46}{baseline:>10.2f}{'':>12}")
    print(f"{'ratio render / baseline':<46}{service / baseline:>10.2f}{'<= 1.5':>12}")
    print(f"{'first image on opening the series ms':<46}{first_paint:>10.0f}{'<= 300':>12}")
    print(f"{'scrolling %d slices, frames painted per s' % args.slices:<46}{fps:>10.1f}{'>= 30':>12}")


if __name__ == "__main__":
    main()
