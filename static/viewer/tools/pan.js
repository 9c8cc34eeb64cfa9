// Pan: dragging moves the image on the canvas. Only the drawing moves; the server renders nothing new.

import { BaseTool } from "./base.js";

export class PanTool extends BaseTool {
  constructor() {
    super("pan");
    this.drag = null;
  }

  onPointerDown(viewport, pointer) {
    this.drag = { x: pointer.clientX, y: pointer.clientY, pan: { ...viewport.pan } };
    return true;
  }

  onPointerMove(viewport, pointer) {
    const { x, y, pan } = this.drag;
    viewport.setPan(pan.x + pointer.clientX - x, pan.y + pointer.clientY - y);
  }

  onPointerUp() {
    this.drag = null;
  }
}
