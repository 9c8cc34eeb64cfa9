// Length measurement: while active, a drag draws a line on the image and labels it in millimetres from the
// series' PixelSpacing (in pixels without it). The line belongs to the frame it was drawn on: showing another
// frame, or turning the tool off, clears it.

import { BaseTool } from "./base.js";

const COLOR = "#ffd400";

export class LengthTool extends BaseTool {
  constructor() {
    super("length");
    this.line = null;          // {a, b} in image pixels
    this.lastMm = null;        // the length last labelled in millimetres (the e2e tests read it)
    this.layer = (viewport, context) => this.drawLine(viewport, context);
    this.unsubscribe = null;
  }

  activate(viewport) {
    super.activate(viewport);
    this.line = null;
    viewport.layers.add(this.layer);
    this.unsubscribe = viewport.on("frame", () => { this.line = null; });
    viewport.draw();
  }

  deactivate(viewport) {
    super.deactivate(viewport);
    this.line = null;
    viewport.layers.delete(this.layer);
    if (this.unsubscribe) this.unsubscribe();
    this.unsubscribe = null;
    viewport.draw();
  }

  onPointerDown(viewport, pointer) {
    const point = viewport.imagePoint(pointer.clientX, pointer.clientY);
    if (!point) return false;  // no image drawn yet: nothing to measure on
    this.line = { a: point, b: point };
    return true;
  }

  onPointerMove(viewport, pointer) {
    this.line.b = viewport.imagePoint(pointer.clientX, pointer.clientY);
    viewport.draw();
  }

  drawLine(viewport, context) {
    if (!this.line || !viewport.placement) return;
    const [x1, y1] = viewport.canvasPoint(this.line.a), [x2, y2] = viewport.canvasPoint(this.line.b);
    context.strokeStyle = COLOR;
    context.lineWidth = 2;
    context.beginPath();
    context.moveTo(x1, y1);
    context.lineTo(x2, y2);
    context.stroke();
    context.fillStyle = COLOR;
    context.font = `${14 * (window.devicePixelRatio || 1)}px sans-serif`;
    context.fillText(this.label(viewport), x2 + 6, y2 - 6);
  }

  label(viewport) {
    const dx = this.line.b.x - this.line.a.x, dy = this.line.b.y - this.line.a.y;
    const spacing = viewport.series.spacing;
    if (!spacing) return `${Math.hypot(dx, dy).toFixed(1)} px`;
    const [rowSpacing, columnSpacing] = spacing;
    this.lastMm = Math.hypot(dx * columnSpacing, dy * rowSpacing);
    return `${this.lastMm.toFixed(1)} mm`;
  }
}
