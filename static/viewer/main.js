// Aperture viewer, the page's entry point (templates/viewer/viewer.html loads it with <script type="module">):
// wires one viewport, its frame loader, the render socket, the tools, the bindings and the overlay together.
// It holds no state of its own and maps no input; adding a viewport or a tool happens here and in bindings.js.
//
// The page gives it: #viewer's data-datastore, data-image-set, data-series, data-initial-preset (a preset key),
// data-share (a share link token) and data-socket-path (the render websocket's path, reversed from its named route
// in viewer/routing.py); the window presets as JSON in #window-presets (json_script, from
// imaging/dicom/window_presets.py).
//
// Test hook: window.apertureViewer, read-only, for the browser tests (tests/test_viewer_e2e.py,
// tests/test_roles_live.py) and bench/viewer_bench.py. Keep these names working:
//   count, frame, window, invert, zoom, placement   the viewport (placement: where the image lies on the canvas)
//   lastHeader                                      the header of the rendering on screen ({id, frame, window, …})
//   requestId, shownId, rendered, firstPaintAt      the frame loader (newest request sent / answer shown, …)
//   ws, connection                                  the current WebSocket (tests close it to see the client
//                                                   reconnect) and the socket's state ("open", "ended", …)
//   lastMeasurementMm                               the length tool's last label in millimetres

import { defaultBindings } from "./bindings.js";
import { FrameLoader } from "./frames.js";
import { attachInput } from "./input.js";
import { attachOverlay } from "./overlay.js";
import { RenderSocket } from "./socket.js";
import { CineTool } from "./tools/cine.js";
import { LengthTool } from "./tools/length.js";
import { PanTool } from "./tools/pan.js";
import { StackScrollTool } from "./tools/stackScroll.js";
import { WindowLevelTool } from "./tools/windowLevel.js";
import { ZoomTool } from "./tools/zoom.js";
import { Viewport } from "./viewport.js";

const root = document.getElementById("viewer");
const canvas = document.getElementById("viewport");
const statusLine = document.getElementById("status");
const presets = JSON.parse(document.getElementById("window-presets").textContent);

const viewport = new Viewport(canvas);
const windowLevel = new WindowLevelTool({ presets });
const length = new LengthTool();
const tools = new Map([
  windowLevel, new PanTool(), new ZoomTool(), new StackScrollTool(), length,
  new CineTool({ framesPerSecond: () => document.getElementById("fps").value }),
].map((tool) => [tool.name, tool]));
// Drag tools are always on; the bindings decide which button reaches which. Length and cine are switched by
// their toggle actions.
for (const name of ["windowLevel", "pan", "zoom", "stackScroll"]) tools.get(name).activate(viewport);

const showStatus = (text) => { statusLine.textContent = text || ""; };

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const share = root.dataset.share ? `?share=${encodeURIComponent(root.dataset.share)}` : "";
  return `${scheme}://${location.host}${root.dataset.socketPath}${share}`;
}

function onOpened(message) {
  viewport.setSeries({
    count: message.count, frames: message.frames, spacing: message.spacing, rows: message.rows,
    columns: message.columns, defaultWindow: message.defaultWindow,
    patient: message.patient || {}, study: message.study || {}, attributes: message.series || {},
  }, { sop: new URLSearchParams(location.hash.slice(1)).get("sop") });
  const initialWindow = windowLevel.presetWindow(root.dataset.initialPreset);
  if (initialWindow) viewport.setWindow(initialWindow, { render: false });
  loader.request({ firstPaint: true });
}

const socket = new RenderSocket({
  url: socketUrl(),
  onOpen: () => socket.send({ type: "open", datastore: root.dataset.datastore, imageSet: root.dataset.imageSet,
                              series: root.dataset.series || null }),
  onText: (message) => {
    if (message.type === "opened") onOpened(message);
    else if (message.type === "error") showStatus(message.message);
  },
  onBinary: (buffer) => loader.receive(buffer),
  onStatus: showStatus,
});
const loader = new FrameLoader({ socket, viewport });

attachOverlay(viewport, {
  patient: document.getElementById("overlay-patient"), study: document.getElementById("overlay-study"),
  slice: document.getElementById("overlay-slice"), window: document.getElementById("overlay-window"),
});
attachInput({ viewport, tools, bindings: defaultBindings({ presets }), toolbar: root.querySelector(".toolbar") });

window.apertureViewer = Object.freeze({
  get count() { return viewport.count; },
  get frame() { return viewport.frame; },
  get window() { return viewport.window; },
  get invert() { return viewport.invert; },
  get zoom() { return viewport.zoom; },
  get placement() { return viewport.placement; },
  get lastHeader() { return viewport.imageHeader; },
  get requestId() { return loader.requestId; },
  get shownId() { return loader.shownId; },
  get rendered() { return loader.rendered; },
  get firstPaintAt() { return loader.firstPaintAt; },
  get ws() { return socket.ws; },
  get connection() { return socket.state; },
  get lastMeasurementMm() { return length.lastMm; },
});

// The canvas's box follows the window and the layout around it (a toolbar that wraps, the series strip).
new ResizeObserver(() => viewport.resize()).observe(canvas);
viewport.resize();
socket.connect();
canvas.focus();
