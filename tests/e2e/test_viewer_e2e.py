"""The viewer in Debian's Chromium through Playwright, against a live ASGI server (HTTP and websockets):
log in, search, open a study, open the viewer, scroll, change the window preset, check the canvas against the
reference rendering; then the same study on a phone-sized touch screen."""
from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests import personas
from tests.clients import wait_for
from tests.dicomgen import ct_bytes
from tests.importing import run_import
from imaging.render.pixels import to_uint8, voi_window

pytestmark = [pytest.mark.live, pytest.mark.slow]

SLICES = 12
PASSWORD = "a long clinician passphrase"


def slice_pixels(n: int) -> np.ndarray:
    y, x = np.mgrid[0:128, 0:128]
    disc = ((x - 64) ** 2 + (y - 64) ** 2) < (20 + n * 3) ** 2
    return np.where(disc, 1024 + 60 + n * 10, 1024 - 900).astype(np.uint16)


@pytest.fixture(scope="module")
def study(server, mi, s3):
    datastore_id = mi.create_datastore(datastoreName="e2e")["datastoreId"]
    wait_for(lambda: mi.get_datastore(datastoreId=datastore_id)["datastoreProperties"]["datastoreStatus"] == "ACTIVE")
    study_uid, series_uid = generate_uid(), generate_uid()
    files = {f"{n:03}.dcm": ct_bytes(study_uid=study_uid, series_uid=series_uid, instance_number=n + 1,
                                     patient_name="DOE^E2E", rows=128, columns=128, pixels=slice_pixels(n))
             for n in range(SLICES)}
    run_import(mi, s3, datastore_id, files)
    personas.live_clinician(server, datastore_id, username="clin", password=PASSWORD)
    return {"datastore": datastore_id, "study": study_uid, "series": series_uid}


def log_in(page, server):
    page.goto(server.url + "/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", "clin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/")


def canvas_gray(page) -> np.ndarray:
    """The drawn image region of the canvas, as gray levels."""
    data = page.evaluate("""() => {
        const s = window.apertureViewer, p = s.placement, c = document.getElementById('viewport');
        const img = c.getContext('2d').getImageData(Math.round(p.x), Math.round(p.y), Math.round(p.w), Math.round(p.h));
        return {w: img.width, h: img.height, px: Array.from(img.data.filter((_, i) => i % 4 === 0))};
    }""")
    return np.array(data["px"], dtype=np.float64).reshape(data["h"], data["w"])


def reference(n: int, center: float, width: float, shape) -> np.ndarray:
    from PIL import Image

    rendered = to_uint8(voi_window(slice_pixels(n).astype(np.float64) - 1024, center, width))
    return np.asarray(Image.fromarray(rendered).resize((shape[1], shape[0]), Image.Resampling.BILINEAR), np.float64)


def test_login_search_open_scroll_and_window(server, study, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    log_in(page, server)
    page.fill("input[type=search]", "doe")
    page.press("input[type=search]", "Enter")
    page.click("text=DOE^E2E")
    page.wait_for_url(f"**/studies/{study['datastore']}/{study['study']}/")
    page.click("a.series-link")
    page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
    assert page.evaluate("window.apertureViewer.count") == SLICES
    page.wait_for_function("window.apertureViewer.lastHeader.window[0] === 40")  # the file's window, full quality

    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.wait_for_function("window.apertureViewer.lastHeader.frame === 2")
    page.keyboard.press("2")  # lung preset
    page.wait_for_function("window.apertureViewer.lastHeader.window[0] === -600 && window.apertureViewer.lastHeader.frame === 2")
    page.wait_for_timeout(100)
    drawn = canvas_gray(page)
    expected = reference(2, -600, 1500, drawn.shape)
    assert np.abs(drawn - expected).mean() < 4, np.abs(drawn - expected).mean()
    overlay = page.inner_text("#overlay-window")
    assert "W 1500 L -600" in overlay and "Image 3 / 12" in page.inner_text("#overlay-slice")

    page.keyboard.press("i")
    page.wait_for_function("window.apertureViewer.lastHeader && window.apertureViewer.invert === true")
    page.keyboard.press("r")
    page.keyboard.press("End")
    page.wait_for_function(f"window.apertureViewer.lastHeader.frame === {SLICES - 1}")

    # Length measurement: 100 image pixels across at PixelSpacing 0.5 mm is 50 mm.
    page.keyboard.press("m")
    box = page.evaluate("""() => { const r = document.getElementById('viewport').getBoundingClientRect(),
        p = window.apertureViewer.placement, k = r.width / document.getElementById('viewport').width;
        return {left: r.left + p.x * k, top: r.top + p.y * k, scale: p.w * k / 128}; }""")
    y = box["top"] + 64 * box["scale"]
    page.mouse.move(box["left"] + 10 * box["scale"], y)
    page.mouse.down()
    page.mouse.move(box["left"] + 110 * box["scale"], y, steps=5)
    page.mouse.up()
    assert abs(page.evaluate("window.apertureViewer.lastMeasurementMm") - 50.0) < 0.5
    page.keyboard.press("m")

    # Cine plays through the series; the client reconnects by itself when the socket drops.
    page.keyboard.press("Home")
    page.keyboard.press("c")
    page.wait_for_function("window.apertureViewer.lastHeader.frame >= 3")
    page.keyboard.press("c")
    first_socket = page.evaluate("window.apertureViewer.requestId")
    page.evaluate("window.apertureViewer.ws.close()")
    page.wait_for_function("window.apertureViewer.ws.readyState === WebSocket.OPEN && "
                           "window.apertureViewer.requestId > %d" % first_socket, timeout=15000)
    page.keyboard.press("ArrowUp")
    page.wait_for_function("window.apertureViewer.shownId === window.apertureViewer.requestId")
    context.close()


def test_phone_touch_swipe_and_pinch(server, study, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page = context.new_page()
    log_in(page, server)
    page.goto(f"{server.url}/view/{study['datastore']}/{_image_set(server, study)}/?series={study['series']}")
    page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
    swipe = """([y0, y1, fingers]) => {
        const c = document.getElementById('viewport'), r = c.getBoundingClientRect();
        const touches = (y) => Array.from({length: fingers}, (_, i) => new Touch({identifier: i, target: c,
            clientX: r.left + r.width / 2 + (fingers > 1 ? (i ? 1 : -1) * (y - y0 + 40) : 0), clientY: r.top + y}));
        c.dispatchEvent(new TouchEvent('touchstart', {touches: touches(y0), bubbles: true, cancelable: true}));
        c.dispatchEvent(new TouchEvent('touchmove', {touches: touches(y1), bubbles: true, cancelable: true}));
        c.dispatchEvent(new TouchEvent('touchend', {touches: [], bubbles: true, cancelable: true}));
    }"""
    page.evaluate(swipe, [300, 250, 1])  # swipe up: next slices
    page.wait_for_function("window.apertureViewer.frame > 0 && window.apertureViewer.lastHeader.frame > 0")
    page.evaluate(swipe, [300, 380, 2])  # fingers apart: zoom in
    assert page.evaluate("window.apertureViewer.zoom") > 1.5
    context.close()


def _image_set(server, study) -> str:
    from tests.clients import imaging_client

    client = imaging_client(server.url, server.admin_key)
    found = client.search_image_sets(datastoreId=study["datastore"], searchCriteria={"filters": [
        {"operator": "EQUAL", "values": [{"DICOMSeriesInstanceUID": study["series"]}]}]})
    return found["imageSetsMetadataSummaries"][0]["imageSetId"]


def open_viewer(page, server, study, query: str = "", *, logged_in: bool = False) -> list[str]:
    """Log in and open the series; returns the list that collects the page's uncaught errors."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    if not logged_in:
        log_in(page, server)
    page.goto(f"{server.url}/view/{study['datastore']}/{_image_set(server, study)}/?series={study['series']}{query}")
    page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
    return errors


def drag_on_canvas(page, dx: float, dy: float) -> None:
    box = page.locator("#viewport").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=5)
    page.mouse.up()  # the browser's click event follows the release


def test_clicks_run_no_preset_and_a_drag_keeps_its_window(server, study, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = open_viewer(page, server, study)
    page.locator("#viewport").click()
    page.locator(".toolbar").click(position={"x": 2, "y": 2})  # the toolbar's background, between buttons
    assert errors == []

    page = context.new_page()
    errors = open_viewer(page, server, study, "&preset=2", logged_in=True)
    page.wait_for_function("window.apertureViewer.lastHeader.window[0] === -600")  # the lung preset from the URL
    drag_on_canvas(page, 50, 30)  # window/level: +2 per pixel down on the level, +4 per pixel right on the width
    assert page.evaluate("window.apertureViewer.window") == [-540, 1700]
    page.wait_for_function("window.apertureViewer.shownId === window.apertureViewer.requestId")
    assert page.evaluate("window.apertureViewer.lastHeader.window") == [-540, 1700]
    assert page.evaluate("window.apertureViewer.window") == [-540, 1700]  # not snapped back to the preset
    assert "W 1700 L -540" in page.inner_text("#overlay-window")
    page.click("button[data-preset='3']")  # the buttons still apply their presets
    assert page.evaluate("window.apertureViewer.window") == [480, 2500]
    assert errors == []
    context.close()


@pytest.mark.parametrize("size", [{"width": 1280, "height": 800}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_the_viewer_fits_the_window_and_overlays_clear_the_toolbar(server, study, browser, size, tmp_path):
    phone = size["width"] < 600
    context = browser.new_context(viewport=size, has_touch=phone, is_mobile=phone)
    page = context.new_page()
    errors = open_viewer(page, server, study)
    page.wait_for_function("window.apertureViewer.shownId === window.apertureViewer.requestId")
    layout = page.evaluate("""() => ({
        scrollHeight: document.scrollingElement.scrollHeight, innerHeight: window.innerHeight,
        scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth,
        canvas: document.getElementById('viewport').getBoundingClientRect().toJSON(),
        backing: [document.getElementById('viewport').width, document.getElementById('viewport').height],
        ratio: window.devicePixelRatio,
        overlays: Array.from(document.querySelectorAll('.overlay'), (e) => e.getBoundingClientRect().toJSON()),
        controls: Array.from(document.querySelectorAll('.toolbar button, .toolbar label'),
                             (e) => e.getBoundingClientRect().toJSON()),
    })""")
    page.screenshot(path=str(tmp_path / f"viewer-{size['width']}x{size['height']}.png"))
    assert layout["scrollHeight"] <= layout["innerHeight"], layout
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    canvas = layout["canvas"]
    assert canvas["height"] > size["height"] / 3 and canvas["bottom"] <= size["height"]
    assert layout["backing"] == [round(canvas["width"] * layout["ratio"]), round(canvas["height"] * layout["ratio"])]

    def overlap(a, b) -> bool:
        return a["left"] < b["right"] and b["left"] < a["right"] and a["top"] < b["bottom"] and b["top"] < a["bottom"]

    for overlay in layout["overlays"]:
        assert overlay["top"] >= canvas["top"] and overlay["bottom"] <= canvas["bottom"], (overlay, canvas)
        assert not any(overlap(overlay, control) for control in layout["controls"]), overlay
    assert errors == []
    context.close()


def test_admin_share_link_message_copies_the_absolute_link(server, study, browser):
    from playwright.sync_api import expect

    personas.live_admin(server, "share-admin", password=PASSWORD)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    page.goto(server.url + "/admin/imaging/sharelink/add/")
    page.fill("input[name=username]", "share-admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.select_option("select[name=datastore]", study["datastore"])
    page.fill("input[name=study_instance_uid]", "1.2.3.4")
    page.click("input[name=_save]")
    assert "No such study in this data store" in page.inner_text(".errorlist")
    page.fill("input[name=study_instance_uid]", study["study"])
    page.click("input[name=_save]")
    page.wait_for_load_state()  # copy_link.js has set up the Copy buttons and the link field
    message = page.locator(".messagelist .success")
    assert "Share link created" in message.inner_text()
    link = message.locator("input.share-link").input_value()
    assert link.startswith(server.url + "/share/")
    message.locator("button[data-copy-link]").click()
    expect(message.locator("button[data-copy-link]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == link
    expect(page.locator("div.field-link input.share-link")).to_have_value(link)  # the change page's field too
    page.goto(link)
    page.wait_for_function("window.apertureViewer && window.apertureViewer.rendered > 0")
    context.close()


def test_bindings_for_wheel_zoom_pan_and_drags(server, study, browser):
    """The bindings the first tests do not press: the wheel, ctrl+wheel, +/-, fit, the right and middle buttons,
    shift+drag and the toolbar's Invert and Fit; zoom stops at the viewport's one set of limits."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = open_viewer(page, server, study)
    viewer = "window.apertureViewer"
    wheel = """([deltaY, ctrlKey]) => document.getElementById('viewport').dispatchEvent(
        new WheelEvent('wheel', {deltaY, ctrlKey, bubbles: true, cancelable: true}))"""
    page.evaluate(wheel, [100, False])
    page.evaluate(wheel, [100, False])
    page.evaluate(wheel, [-100, False])
    assert page.evaluate(f"{viewer}.frame") == 1
    page.evaluate(wheel, [-100, True])
    assert page.evaluate(f"{viewer}.zoom") == pytest.approx(1.1)
    for _ in range(30):
        page.keyboard.press("+")
    assert page.evaluate(f"{viewer}.zoom") == 20
    page.keyboard.press("-")
    assert page.evaluate(f"{viewer}.zoom") == pytest.approx(16)
    for _ in range(30):
        page.keyboard.press("-")
    assert page.evaluate(f"{viewer}.zoom") == pytest.approx(0.2)
    page.keyboard.press("f")
    assert page.evaluate(f"{viewer}.zoom") == 1

    page.wait_for_function(f"{viewer}.shownId === {viewer}.requestId")
    before = page.evaluate(f"{viewer}.placement")
    page.keyboard.down("Shift")
    drag_on_canvas(page, 40, 20)
    page.keyboard.up("Shift")
    moved = page.evaluate(f"{viewer}.placement")
    ratio = page.evaluate("window.devicePixelRatio")
    assert (moved["x"] - before["x"], moved["y"] - before["y"]) == pytest.approx((40 * ratio, 20 * ratio), abs=1)
    assert page.evaluate(f"{viewer}.window") is None  # shift+drag pans, it does not window
    box = page.locator("#viewport").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down(button="middle")
    page.mouse.move(x - 40, y - 20, steps=4)
    page.mouse.up(button="middle")
    assert page.evaluate(f"{viewer}.placement")["x"] == pytest.approx(before["x"], abs=1)
    page.click(".toolbar button[data-action='fit']")
    assert page.evaluate(f"{viewer}.placement") == before

    page.mouse.move(x, y)
    page.mouse.down(button="right")  # one frame per 8 pixels down
    page.mouse.move(x, y + 40, steps=5)
    page.mouse.up(button="right")
    assert page.evaluate(f"{viewer}.frame") == 6
    page.wait_for_function(f"{viewer}.lastHeader.frame === 6")
    page.click(".toolbar button[data-action='invert']")
    page.wait_for_function(f"{viewer}.invert === true && {viewer}.shownId === {viewer}.requestId")
    assert "inverted" in page.inner_text("#overlay-window")
    assert errors == []
    context.close()


def test_a_socket_the_server_ended_stays_closed(server, study, browser):
    """Logging out ends the session's sockets ("ended", close code 4401): the viewer says so and does not
    reconnect."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    open_viewer(page, server, study)
    assert page.evaluate("window.apertureViewer.connection") == "open"
    other = context.new_page()
    other.goto(server.url + "/")
    other.click("header form button[type=submit]")
    other.wait_for_url("**/accounts/login/")
    page.wait_for_function("window.apertureViewer.connection === 'ended'", timeout=15000)
    page.wait_for_timeout(1500)  # longer than the first reconnect delay
    assert page.evaluate("window.apertureViewer.connection") == "ended"
    assert page.evaluate("window.apertureViewer.ws.readyState === WebSocket.CLOSED")
    assert page.inner_text("#status") != ""
    context.close()


def test_two_viewports_keep_their_own_window_keys_and_cine(server, study, browser):
    """?layout=1x2: two viewports of the series, each with its own tools and render socket. A drag windows only
    the viewport it is on, keys go to the viewport last focused, and cine switched on in one does not play (or get
    switched off) in the other."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors = open_viewer(page, server, study, "&layout=1x2")
    viewer = "window.apertureViewer"
    a, b = f"{viewer}.viewports[0]", f"{viewer}.viewports[1]"
    page.wait_for_function(f"{b}.rendered > 0 && {a}.shownId === {a}.requestId && {b}.shownId === {b}.requestId")
    canvases = page.locator(".viewport-stage canvas")
    assert canvases.count() == 2 and page.evaluate(f"{viewer}.viewports.length") == 2
    assert page.evaluate(f"{a}.ws !== {b}.ws && {a}.connection === 'open' && {b}.connection === 'open'")
    assert page.evaluate(f"{viewer}.active") == 0 and page.evaluate(f"{viewer}.frame") == 0  # the hook is the first

    def drag(locator, dx: float, dy: float) -> None:
        box = locator.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x + dx, y + dy, steps=5)
        page.mouse.up()

    # Window/level in the second viewport leaves the first one's window alone.
    drag(canvases.nth(1), 50, 30)
    assert page.evaluate(f"{viewer}.active") == 1
    page.wait_for_function(f"{b}.window !== null && {b}.shownId === {b}.requestId")
    b_window = page.evaluate(f"{b}.window")
    assert page.evaluate(f"{b}.lastHeader.window") == b_window
    assert page.evaluate(f"{a}.window") is None and page.evaluate(f"{a}.lastHeader.window[0]") == 40

    # Keys go to the focused viewport only: the second one now, then the first one once it is clicked.
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("2")  # lung preset
    page.wait_for_function(f"{b}.lastHeader.frame === 2 && {b}.lastHeader.window[0] === -600")
    assert page.evaluate(f"{a}.frame") == 0 and page.evaluate(f"{a}.window") is None
    canvases.nth(0).click()
    assert page.evaluate(f"{viewer}.active") == 0
    page.keyboard.press("End")
    page.wait_for_function(f"{a}.lastHeader.frame === {SLICES - 1}")
    assert page.evaluate(f"{b}.frame") == 2 and page.evaluate(f"{b}.window") == [-600, 1500]
    page.click(".toolbar button[data-action='invert']")  # the toolbar acts on the active viewport too
    assert page.evaluate(f"{a}.invert") is True and page.evaluate(f"{b}.invert") is False

    # Cine: on in the first viewport only; switching it on and off in the second leaves the first one playing.
    canvases.nth(0).focus()  # keys do not reach a viewport while a toolbar button has the focus
    page.keyboard.press("Home")
    page.keyboard.press("c")
    page.wait_for_function(f"{a}.lastHeader.frame >= 3")
    assert page.evaluate(f"{a}.cinePlaying") is True and page.evaluate(f"{b}.cinePlaying") is False
    assert page.evaluate(f"{b}.frame") == 2
    canvases.nth(1).focus()
    page.keyboard.press("c")
    page.wait_for_function(f"{b}.frame !== 2")
    page.keyboard.press("c")
    assert page.evaluate(f"{b}.cinePlaying") is False and page.evaluate(f"{a}.cinePlaying") is True
    stopped_at = page.evaluate(f"{b}.frame")
    started_at = page.evaluate(f"{a}.frame")
    page.wait_for_function(f"{a}.frame !== {started_at}")  # still playing
    page.wait_for_timeout(300)  # several cine ticks at 15 fps
    assert page.evaluate(f"{b}.frame") == stopped_at
    canvases.nth(0).focus()
    page.keyboard.press("c")
    assert page.evaluate(f"{a}.cinePlaying") is False

    # Leaving closes both sockets on purpose (pagehide), with no reconnect; coming back from the back/forward cache
    # (pageshow, persisted) opens both again. Headless Chromium does not keep this page in that cache, so the events
    # are sent by hand first, then a real navigation away and back.
    page.evaluate("window.dispatchEvent(new PageTransitionEvent('pagehide', {persisted: true}))")
    page.wait_for_function(f"{a}.connection === 'closed' && {b}.connection === 'closed'")
    page.wait_for_timeout(1000)  # longer than the first reconnect delay
    assert page.evaluate(f"[{a}.connection, {b}.connection, {a}.ws.readyState]") == ["closed", "closed", 3]
    requested = page.evaluate(f"{b}.requestId")
    page.evaluate("window.dispatchEvent(new PageTransitionEvent('pageshow', {persisted: true}))")
    page.wait_for_function(f"{a}.connection === 'open' && {b}.connection === 'open' && {b}.requestId > {requested}")
    page.goto(server.url + "/")
    page.go_back()
    page.wait_for_function(f"{a}.connection === 'open' && {b}.connection === 'open' && {a}.ws !== {b}.ws")
    page.wait_for_function(f"{a}.shownId === {a}.requestId && {b}.shownId === {b}.requestId && {b}.rendered > 0")
    assert errors == []
    context.close()
