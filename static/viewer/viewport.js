// A viewport: one canvas showing one frame of a series, and everything about how it is shown (which frame, the
// VOI window, inversion, zoom and pan, where the image landed on the canvas). All of its state is declared in the
// constructor; nothing else adds fields to it. It draws, converts between screen and image coordinates and says
// when something changed; it does not talk to the server (frames.js does) nor read input (input.js does).
//
// Events (viewport.on(name, listener) returns a function that unsubscribes):
//   "change"  something shown changed (overlays refresh)      "frame"  the frame index changed
//   "render"  the server must render a new image: frame, window, inversion or the size in device pixels changed

// Zoom is limited here and only here: every tool and gesture goes through setZoom.
export const ZOOM_LIMITS = Object.freeze({ min: 0.2, max: 20 });
// The size the server is asked to render, in device pixels (the consumer refuses larger).
const RENDER_SIZE_LIMITS = Object.freeze({ min: 16, max: 4096 });
// Shown until the server has sent a frame with its own window.
const FALLBACK_WINDOW = Object.freeze([128, 256]);

const clamp = (value, low, high) => Math.max(low, Math.min(high, value));

export class Viewport {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.context = canvas.getContext("2d");
    // What is shown: the series ({count, frames, spacing, rows, columns, defaultWindow, patient, study,
    // attributes}, null until the server opened it) and which of its frames.
    this.series = null;
    this.frame = 0;
    // How it is shown: the user's window [center, width] (null: the server's), inversion, zoom and pan.
    this.window = null;
    this.invert = false;
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    // The rendering on screen (an ImageBitmap), its header from the server ({id, frame, window, …}) and where it
    // was drawn on the canvas in device pixels ({x, y, w, h}).
    this.image = null;
    this.imageHeader = null;
    this.placement = null;
    // Drawn over the image on every draw: functions (viewport, context2d) that tools add and remove.
    this.layers = new Set();
    this.listeners = new Map();
  }

  on(name, listener) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(listener);
    return () => this.listeners.get(name).delete(listener);
  }

  emit(name) {
    for (const listener of this.listeners.get(name) || []) listener(this);
  }

  get count() {
    return this.series ? this.series.count : 0;
  }

  /** A series was opened: show it from the frame with `sop`, or from the frame shown before (clamped). */
  setSeries(series, { sop = null } = {}) {
    this.series = series;
    const wanted = series.frames.findIndex((frame) => frame.sop === sop);
    if (wanted >= 0) this.frame = wanted;
    this.frame = Math.min(this.frame, Math.max(0, series.count - 1));
  }

  /** Show frame `index` (clamped to the series); false when that is the frame already shown. */
  setFrame(index) {
    if (!this.count) return false;
    const next = clamp(index, 0, this.count - 1);
    if (next === this.frame) return false;
    this.frame = next;
    this.emit("frame");
    this.emit("change");
    this.emit("render");
    return true;
  }

  scrollBy(step) {
    return this.setFrame(this.frame + step);
  }

  /** The user's window [center, width], or null to go back to the one the server chooses. */
  setWindow(voiWindow, { render = true } = {}) {
    this.window = voiWindow;
    this.emit("change");
    if (render) this.emit("render");
  }

  /** The window on screen: the user's, else the rendering's, else the series' default. A copy. */
  currentWindow() {
    const shown = this.imageHeader && this.imageHeader.window;
    return (this.window || shown || (this.series && this.series.defaultWindow) || FALLBACK_WINDOW).slice();
  }

  setInvert(invert) {
    this.invert = invert;
    this.emit("render");
    this.emit("change");
  }

  /** Zoom to `zoom` within ZOOM_LIMITS. A gesture in progress passes render: false and calls requestRender at
   * its end, so the server renders the final size only. */
  setZoom(zoom, { render = true } = {}) {
    this.zoom = clamp(zoom, ZOOM_LIMITS.min, ZOOM_LIMITS.max);
    this.draw();
    if (render) this.emit("render");
  }

  setPan(x, y) {
    this.pan = { x, y };
    this.draw();
  }

  /** Fit the image to the canvas: no zoom, no pan. */
  fit() {
    this.zoom = 1;
    this.pan = { x: 0, y: 0 };
    this.draw();
    this.emit("render");
  }

  requestRender() {
    this.emit("render");
  }

  /** The canvas's backing store follows its box on the page, in device pixels. */
  resize() {
    const box = this.canvas.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.max(64, Math.round(box.width * ratio));
    this.canvas.height = Math.max(64, Math.round(box.height * ratio));
    this.draw();
    this.emit("render");
  }

  /** The size [width, height] to ask the server for: the canvas at the current zoom. */
  renderSize() {
    return [this.canvas.width, this.canvas.height].map(
      (pixels) => clamp(Math.round(pixels * this.zoom), RENDER_SIZE_LIMITS.min, RENDER_SIZE_LIMITS.max));
  }

  /** A rendering arrived from the server. */
  setImage(image, header) {
    this.image = image;
    this.imageHeader = header;
    this.draw();
  }

  draw() {
    const { canvas, context } = this;
    context.fillStyle = "#000";
    context.fillRect(0, 0, canvas.width, canvas.height);
    if (this.image) {
      const scale = Math.min(canvas.width / this.image.width, canvas.height / this.image.height) * this.zoom;
      const w = this.image.width * scale, h = this.image.height * scale;
      const x = (canvas.width - w) / 2 + this.pan.x, y = (canvas.height - h) / 2 + this.pan.y;
      this.placement = { x, y, w, h };
      context.imageSmoothingEnabled = true;
      context.drawImage(this.image, x, y, w, h);
    }
    for (const layer of this.layers) layer(this, context);
    this.emit("change");
  }

  /** A point on the page (clientX, clientY) in image pixels ({x, y}) and canvas pixels ({cx, cy}); null before
   * the first image is drawn. */
  imagePoint(clientX, clientY) {
    const placement = this.placement;
    if (!placement || !this.series) return null;
    const rect = this.canvas.getBoundingClientRect(), ratio = this.canvas.width / rect.width;
    const cx = (clientX - rect.left) * ratio, cy = (clientY - rect.top) * ratio;
    return {
      x: ((cx - placement.x) / placement.w) * this.series.columns,
      y: ((cy - placement.y) / placement.h) * this.series.rows,
      cx, cy,
    };
  }

  /** An image point ({x, y} in image pixels) on the canvas, [x, y] in device pixels. */
  canvasPoint(point) {
    const placement = this.placement;
    return [placement.x + (point.x / this.series.columns) * placement.w,
            placement.y + (point.y / this.series.rows) * placement.h];
  }
}
