// Aperture viewer, the page's entry point (templates/viewer/viewer.html loads it with <script type="module">):
// makes one viewport for each .viewport-stage on the page, each with its own tool group, render socket, frame
// loader and overlay, and one input router that sends keys and toolbar clicks to the active viewport. It holds no
// state of its own and maps no input. A tool is a factory in TOOLS (every viewport gets its own instance); a
// viewport is another .viewport-stage in the template (createViewport does the rest).
//
// The page gives it: #viewer's data-datastore, data-image-set, data-series, data-initial-preset (a preset key),
// data-share (a share link token) and data-socket-path (the render websocket's path, reversed from its named route
// in viewer/routing.py); the window presets as JSON in #window-presets (json_script, from
// imaging/dicom/window_presets.py); in each .viewport-stage a canvas, the overlays ([data-overlay=patient|study|
// slice|window]) and a .status line. The first stage's elements also have ids (#viewport, #overlay-…, #status).
//
// Test hook: window.apertureViewer, read-only, for the browser tests (tests/e2e/test_viewer_e2e.py,
// tests/e2e/test_roles_live.py) and bench/viewer_bench.py. Keep these names working:
//   count, frame, window, invert, zoom, placement   the viewport (placement: where the image lies on the canvas)
//   lastHeader                                      the header of the rendering on screen ({id, frame, window, …})
//   requestId, shownId, rendered, firstPaintAt      the frame loader (newest request sent / answer shown, …)
//   ws, connection                                  the current WebSocket (tests close it to see the client
//                                                   reconnect) and the socket's state ("open", "ended", …)
//   lastMeasurementMm                               the length tool's last label in millimetres
//   cinePlaying                                     whether the cine tool is on
// on the hook itself for the first viewport, and for every viewport in viewports[i] (page order); active is the
// index of the viewport that keys and the toolbar act on.

import { defaultBindings } from "./bindings.js";
import { FrameLoader } from "./frames.js";
import { InputRouter } from "./input.js";
import { attachOverlay } from "./overlay.js";
import { RenderSocket } from "./socket.js";
import { CineTool } from "./tools/cine.js";
import { LengthTool } from "./tools/length.js";
import { PanTool } from "./tools/pan.js";
import { StackScrollTool } from "./tools/stackScroll.js";
import { ToolGroup } from "./tools/toolGroup.js";
import { WindowLevelTool } from "./tools/windowLevel.js";
import { ZoomTool } from "./tools/zoom.js";
import { Viewport } from "./viewport.js";

const root = document.getElementById("viewer");
const presets = JSON.parse(document.getElementById("window-presets").textContent);
const fps = document.getElementById("fps");

// The tools, as factories: each viewport's tool group makes its own instance of each.
const TOOLS = [
  () => new WindowLevelTool({ presets }),
  () => new PanTool(),
  () => new ZoomTool(),
  () => new StackScrollTool(),
  () => new LengthTool(),
  () => new CineTool({ framesPerSecond: () => fps.value }),
];
// Drag tools are always on; the bindings decide which button reaches which. Length and cine are switched by
// their toggle actions.
const ALWAYS_ON = ["windowLevel", "pan", "zoom", "stackScroll"];

const input = new InputRouter({ bindings: defaultBindings({ presets }), toolbar: root.querySelector(".toolbar") });

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const share = root.dataset.share ? `?share=${encodeURIComponent(root.dataset.share)}` : "";
  return `${scheme}://${location.host}${root.dataset.socketPath}${share}`;
}

/** One viewport in its .viewport-stage, with its own tools, render socket (the server opens one image set per
 * socket), frame loader and overlay. */
function createViewport(stage) {
  const canvas = stage.querySelector("canvas");
  const statusLine = stage.querySelector(".status");
  const showStatus = (text) => { statusLine.textContent = text || ""; };
  const viewport = new Viewport(canvas);
  const toolGroup = new ToolGroup(viewport, TOOLS);
  for (const name of ALWAYS_ON) toolGroup.activate(name);

  function onOpened(message) {
    viewport.setSeries({
      count: message.count, frames: message.frames, spacing: message.spacing, rows: message.rows,
      columns: message.columns, defaultWindow: message.defaultWindow,
      patient: message.patient || {}, study: message.study || {}, attributes: message.series || {},
    }, { sop: new URLSearchParams(location.hash.slice(1)).get("sop") });
    const initialWindow = toolGroup.get("windowLevel").presetWindow(root.dataset.initialPreset);
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

  const overlay = (name) => stage.querySelector(`[data-overlay="${name}"]`);
  attachOverlay(viewport, {
    patient: overlay("patient"), study: overlay("study"), slice: overlay("slice"), window: overlay("window"),
  });
  input.attach(viewport, toolGroup);
  // The canvas's box follows the window and the layout around it (a toolbar that wraps, the series strip).
  new ResizeObserver(() => viewport.resize()).observe(canvas);
  viewport.resize();
  return { viewport, toolGroup, socket, loader };
}

const panes = Array.from(root.querySelectorAll(".viewport-stage"), createViewport);

function hookFor({ viewport, toolGroup, socket, loader }) {
  return Object.freeze({
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
    get lastMeasurementMm() { return toolGroup.get("length").lastMm; },
    get cinePlaying() { return toolGroup.get("cine").active; },
  });
}

const viewportHooks = Object.freeze(panes.map(hookFor));
window.apertureViewer = Object.freeze(Object.create(viewportHooks[0], {
  viewports: { value: viewportHooks, enumerable: true },
  active: { get: () => panes.findIndex((pane) => input.active && pane.viewport === input.active.viewport), enumerable: true },
}));

// Leaving the page closes the sockets on purpose (no reconnect follows, and a page without open websockets may go
// into the back/forward cache); coming back from that cache opens them again.
window.addEventListener("pagehide", () => { for (const pane of panes) pane.socket.close(); });
window.addEventListener("pageshow", (event) => {
  if (event.persisted) for (const pane of panes) pane.socket.connect();
});

for (const pane of panes) pane.socket.connect();
panes[0].viewport.canvas.focus();
