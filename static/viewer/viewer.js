// Aperture viewer: a canvas viewport fed by server-rendered frames over a websocket.
// Scroll (wheel, arrows, PageUp/PageDown, drag with the right button, swipe), window/level (left drag),
// presets 1-6, reset (r), invert (i), zoom (ctrl+wheel, +/-, pinch), pan (shift+drag, two-finger drag), fit (f),
// cine (c), length measurement (m) in millimetres from PixelSpacing.
(function () {
  "use strict";
  const root = document.getElementById("viewer");
  const canvas = document.getElementById("viewport");
  const ctx = canvas.getContext("2d");
  const PRESETS = { 1: [40, 400], 2: [-600, 1500], 3: [480, 2500], 4: [40, 80], 5: [90, 150], 6: [50, 350] };
  const state = {
    ws: null, opened: null, frame: 0, count: 0, window: null, defaultWindow: null, invert: false,
    zoom: 1, panX: 0, panY: 0, image: null, imageFrame: -1, requestId: 0, shownId: 0, cine: null,
    measure: false, measureLine: null, retry: 500, endedMessage: null, frames: [], spacing: null, rows: 0, columns: 0,
    lastHeader: null, rendered: 0, firstPaintAt: null,
  };
  window.apertureViewer = state;

  function status(text) { document.getElementById("status").textContent = text || ""; }

  function resize() {
    // The stylesheet gives the canvas the space the window has left beside the toolbar and the series strip;
    // the backing store follows that box in device pixels.
    const box = canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.max(64, Math.round(box.width * ratio));
    canvas.height = Math.max(64, Math.round(box.height * ratio));
    draw();
    request();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const share = root.dataset.share ? `?share=${encodeURIComponent(root.dataset.share)}` : "";
    const ws = new WebSocket(`${scheme}://${location.host}/ws/render/${share}`);
    ws.binaryType = "arraybuffer";
    state.ws = ws;
    ws.onopen = () => {
      state.retry = 500;
      status("");
      ws.send(JSON.stringify({ type: "open", datastore: root.dataset.datastore, imageSet: root.dataset.imageSet,
                               series: root.dataset.series || null }));
    };
    ws.onmessage = (event) => (typeof event.data === "string" ? onText(JSON.parse(event.data)) : onImage(event.data));
    ws.onclose = (event) => {
      if (event.code === 4401) {  // the session or share link behind the socket has ended: retrying cannot help
        if (!state.endedMessage) status("Your session has ended. Reload the page to sign in again.");
        return;
      }
      status("Reconnecting…");
      setTimeout(connect, state.retry);  // the client reconnects by itself, backing off
      state.retry = Math.min(state.retry * 2, 8000);
    };
  }

  function onText(message) {
    if (message.type === "opened") {
      state.opened = message;
      state.count = message.count;
      state.frames = message.frames;
      state.spacing = message.spacing;
      state.rows = message.rows;
      state.columns = message.columns;
      state.defaultWindow = message.defaultWindow;
      const hash = new URLSearchParams(location.hash.slice(1));
      const wanted = state.frames.findIndex((f) => f.sop === hash.get("sop"));
      if (wanted >= 0) state.frame = wanted;
      state.frame = Math.min(state.frame, Math.max(0, state.count - 1));
      const preset = root.dataset.initialPreset;
      if (preset && PRESETS[preset]) state.window = PRESETS[preset].slice();
      request(true);
    } else if (message.type === "error") {
      status(message.message);
    } else if (message.type === "ended") {
      state.endedMessage = message.message;
      status(message.message);
    }
  }

  function onImage(buffer) {
    const view = new DataView(buffer);
    const length = view.getUint32(0);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
    if (header.id < state.shownId) return;  // an answer older than what is on screen
    state.shownId = header.id;
    const blob = new Blob([new Uint8Array(buffer, 4 + length)], { type: "image/jpeg" });
    createImageBitmap(blob).then((bitmap) => {
      if (header.id < state.shownId) return;
      state.image = bitmap;
      state.imageFrame = header.frame;
      state.lastHeader = header;
      state.rendered += 1;
      if (state.firstPaintAt === null) state.firstPaintAt = performance.now();  // since navigation start
      draw();
    });
  }

  function request(firstPaint) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN || !state.opened || state.count === 0) return;
    state.requestId += 1;
    const size = [canvas.width, canvas.height].map((v) => Math.max(16, Math.min(4096, Math.round(v * state.zoom))));
    const quick = firstPaint ? size.map((v) => Math.max(16, Math.round(v / 2))) : size;
    state.ws.send(JSON.stringify({ type: "render", id: state.requestId, frame: state.frame, window: state.window,
                                   invert: state.invert, size: quick, quality: firstPaint ? 70 : 90, format: "jpeg" }));
    if (firstPaint) setTimeout(() => request(false), 0);  // the full-quality frame follows the quick first paint
  }

  function draw() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    if (state.image) {
      const scale = Math.min(canvas.width / state.image.width, canvas.height / state.image.height) * state.zoom;
      const w = state.image.width * scale, h = state.image.height * scale;
      const x = (canvas.width - w) / 2 + state.panX, y = (canvas.height - h) / 2 + state.panY;
      state.placement = { x, y, w, h };
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(state.image, x, y, w, h);
    }
    drawMeasurement();
    overlay();
  }

  function overlay() {
    const o = state.opened || { patient: {}, study: {}, series: {} };
    const frame = state.frames[state.frame] || {};
    const win = state.window || (state.lastHeader && state.lastHeader.window) || state.defaultWindow;
    document.getElementById("overlay-patient").textContent =
      `${o.patient.PatientName || ""}  ${o.patient.PatientID || ""}`;
    document.getElementById("overlay-study").textContent =
      `${o.study.StudyDescription || ""} ${o.study.StudyDate || ""} · ${o.series.Modality || ""} ${o.series.SeriesDescription || ""}`;
    document.getElementById("overlay-slice").textContent =
      `Image ${state.frame + 1} / ${state.count}` + (frame.position != null ? ` · ${Number(frame.position).toFixed(1)} mm` : "");
    document.getElementById("overlay-window").textContent =
      win ? `W ${Math.round(win[1])} L ${Math.round(win[0])}${state.invert ? " · inverted" : ""}` : "";
  }

  function imagePoint(clientX, clientY) {
    const rect = canvas.getBoundingClientRect(), ratio = canvas.width / rect.width, p = state.placement;
    if (!p) return null;
    const cx = (clientX - rect.left) * ratio, cy = (clientY - rect.top) * ratio;
    return { x: ((cx - p.x) / p.w) * state.columns, y: ((cy - p.y) / p.h) * state.rows, cx, cy };
  }

  function drawMeasurement() {
    const line = state.measureLine;
    if (!line || !state.placement) return;
    const p = state.placement;
    const toCanvas = (pt) => [p.x + (pt.x / state.columns) * p.w, p.y + (pt.y / state.rows) * p.h];
    const [x1, y1] = toCanvas(line.a), [x2, y2] = toCanvas(line.b);
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    ctx.fillStyle = "#ffd400";
    ctx.font = `${14 * (window.devicePixelRatio || 1)}px sans-serif`;
    ctx.fillText(measureText(line), x2 + 6, y2 - 6);
  }

  function measureText(line) {
    const dx = line.b.x - line.a.x, dy = line.b.y - line.a.y;
    if (!state.spacing) return `${Math.hypot(dx, dy).toFixed(1)} px`;
    const [rowSpacing, colSpacing] = state.spacing;
    const mm = Math.hypot(dx * colSpacing, dy * rowSpacing);
    state.lastMeasurementMm = mm;
    return `${mm.toFixed(1)} mm`;
  }

  function scroll(step) {
    if (!state.count) return;
    const next = Math.max(0, Math.min(state.count - 1, state.frame + step));
    if (next === state.frame) return;
    state.frame = next;
    state.measureLine = null;
    overlay();
    request(false);
  }

  function setWindow(win) { state.window = win; overlay(); request(false); }
  function currentWindow() {
    return (state.window || (state.lastHeader && state.lastHeader.window) || state.defaultWindow || [128, 256]).slice();
  }
  function toggleCine() {
    if (state.cine) { clearInterval(state.cine); state.cine = null; return; }
    const fps = Math.max(1, Math.min(60, Number(document.getElementById("fps").value) || 15));
    state.cine = setInterval(() => { state.frame = (state.frame + 1) % Math.max(1, state.count); overlay(); request(false); },
                             1000 / fps);
  }
  function act(action) {
    if (action === "reset") { state.window = null; request(false); overlay(); }
    else if (action === "invert") { state.invert = !state.invert; request(false); overlay(); }
    else if (action === "fit") { state.zoom = 1; state.panX = state.panY = 0; draw(); request(false); }
    else if (action === "measure") { state.measure = !state.measure; state.measureLine = null; draw(); }
    else if (action === "cine") toggleCine();
  }

  document.querySelectorAll(".toolbar [data-preset]").forEach((b) => b.addEventListener("click", () => setWindow(PRESETS[b.dataset.preset].slice())));
  document.querySelectorAll(".toolbar [data-action]").forEach((b) => b.addEventListener("click", () => act(b.dataset.action)));

  canvas.addEventListener("keydown", (e) => {
    const keys = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 10, PageUp: -10 };
    if (e.key in keys) { scroll(keys[e.key]); e.preventDefault(); }
    else if (PRESETS[e.key]) setWindow(PRESETS[e.key].slice());
    else if (e.key === "r") act("reset");
    else if (e.key === "i") act("invert");
    else if (e.key === "f") act("fit");
    else if (e.key === "c") act("cine");
    else if (e.key === "m") act("measure");
    else if (e.key === "+" || e.key === "=") { state.zoom *= 1.25; draw(); request(false); }
    else if (e.key === "-") { state.zoom /= 1.25; draw(); request(false); }
    else if (e.key === "Home") scroll(-state.count);
    else if (e.key === "End") scroll(state.count);
  });
  // Keyboard shortcuts work as soon as the viewer has focus.
  document.addEventListener("keydown", (e) => {
    if (document.activeElement === document.body) canvas.dispatchEvent(new KeyboardEvent("keydown", { key: e.key }));
  });

  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    if (e.ctrlKey) { state.zoom *= e.deltaY < 0 ? 1.1 : 1 / 1.1; draw(); request(false); }
    else scroll(e.deltaY > 0 ? 1 : -1);
  }, { passive: false });

  let drag = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "touch") return;
    canvas.focus();
    canvas.setPointerCapture(e.pointerId);
    const point = imagePoint(e.clientX, e.clientY);
    if (state.measure && point) { state.measureLine = { a: point, b: point }; drag = { mode: "measure" }; return; }
    const mode = e.button === 2 ? "scroll" : e.shiftKey || e.button === 1 ? "pan" : "window";
    drag = { mode, x: e.clientX, y: e.clientY, window: currentWindow(), frame: state.frame, panX: state.panX, panY: state.panY };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerType === "touch") return;
    if (drag.mode === "measure") { state.measureLine.b = imagePoint(e.clientX, e.clientY); draw(); return; }
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (drag.mode === "window") setWindow([drag.window[0] + dy * 2, Math.max(1, drag.window[1] + dx * 4)]);
    else if (drag.mode === "pan") { state.panX = drag.panX + dx; state.panY = drag.panY + dy; draw(); }
    else { const target = drag.frame + Math.round(dy / 8); scroll(target - state.frame); }
  });
  canvas.addEventListener("pointerup", () => { drag = null; });

  // Touch: one finger swipes through slices, two fingers pinch to zoom and pan.
  let touch = null;
  canvas.addEventListener("touchstart", (e) => {
    e.preventDefault();
    const t = e.touches;
    touch = t.length === 1 ? { mode: "scroll", y: t[0].clientY, frame: state.frame }
      : { mode: "pinch", distance: Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY), zoom: state.zoom };
  }, { passive: false });
  canvas.addEventListener("touchmove", (e) => {
    e.preventDefault();
    const t = e.touches;
    if (!touch) return;
    if (touch.mode === "scroll" && t.length === 1) { scroll(touch.frame + Math.round((touch.y - t[0].clientY) / 12) - state.frame); }
    else if (t.length === 2) {
      const distance = Math.hypot(t[0].clientX - t[1].clientX, t[0].clientY - t[1].clientY);
      if (touch.mode !== "pinch") touch = { mode: "pinch", distance, zoom: state.zoom };
      state.zoom = Math.max(0.2, Math.min(20, touch.zoom * distance / touch.distance));
      draw();
    }
  }, { passive: false });
  canvas.addEventListener("touchend", () => { if (touch && touch.mode === "pinch") request(false); touch = null; });

  // The canvas's box follows the window and the layout around it (a toolbar that wraps, the series strip).
  new ResizeObserver(() => resize()).observe(canvas);
  resize();
  connect();
  canvas.focus();
})();
