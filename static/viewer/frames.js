// Frames for one viewport, rendered by the server: asks the render socket for the viewport's frame at its window,
// inversion and size, and puts each answer on the viewport unless a newer one is already there. It decides
// nothing about what to show (the viewport and the tools do) and reads no input.
//
// Wire format of an answer (viewer/consumers.py): 4-byte big-endian header length, the JSON header
// ({"id", "frame", "window", …}), then the JPEG bytes.

const QUICK_QUALITY = 70;  // the first paint of a series: half size, lower quality, then the full frame
const FULL_QUALITY = 90;

export class FrameLoader {
  /**
   * @param {object} options
   * @param {import("./socket.js").RenderSocket} options.socket
   * @param {import("./viewport.js").Viewport} options.viewport
   */
  constructor({ socket, viewport }) {
    this.socket = socket;
    this.viewport = viewport;
    this.requestId = 0;      // the newest request sent
    this.shownId = 0;        // the newest answer accepted; older answers are dropped
    this.rendered = 0;       // answers drawn
    this.firstPaintAt = null;  // ms since navigation start when the first answer was drawn
    viewport.on("render", () => this.request());
  }

  /** Ask for the viewport's current frame; with firstPaint a quick half-size rendering comes first. */
  request({ firstPaint = false } = {}) {
    const viewport = this.viewport;
    if (!this.socket.isOpen || !viewport.series || viewport.count === 0) return;
    this.requestId += 1;
    const size = viewport.renderSize();
    this.socket.send({
      type: "render", id: this.requestId, frame: viewport.frame, window: viewport.window, invert: viewport.invert,
      size: firstPaint ? size.map((pixels) => Math.max(16, Math.round(pixels / 2))) : size,
      quality: firstPaint ? QUICK_QUALITY : FULL_QUALITY, format: "jpeg",
    });
    if (firstPaint) setTimeout(() => this.request(), 0);  // the full-quality frame follows the quick one
  }

  /** A binary answer from the socket. */
  receive(buffer) {
    const length = new DataView(buffer).getUint32(0);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
    if (header.id < this.shownId) return;  // an answer older than what is on screen
    this.shownId = header.id;
    const jpeg = new Blob([new Uint8Array(buffer, 4 + length)], { type: "image/jpeg" });
    createImageBitmap(jpeg).then((bitmap) => {
      if (header.id < this.shownId) return;
      this.rendered += 1;
      if (this.firstPaintAt === null) this.firstPaintAt = performance.now();
      this.viewport.setImage(bitmap, header);
    });
  }
}
