// Zoom: actions zoom by a factor or fit the image to the canvas; a two-finger pinch zooms with the fingers and
// asks the server for the new size once the fingers lift. The limits are the viewport's (ZOOM_LIMITS).

import { BaseTool } from "./base.js";

const fingerDistance = (touches) =>
  Math.hypot(touches[0].clientX - touches[1].clientX, touches[0].clientY - touches[1].clientY);

export class ZoomTool extends BaseTool {
  constructor() {
    super("zoom");
    this.pinch = null;
    this.actions = {
      ...this.actions,
      by: (viewport, factor) => viewport.setZoom(viewport.zoom * factor),
      fit: (viewport) => viewport.fit(),
    };
  }

  onTouchStart(viewport, touches) {
    this.pinch = { distance: fingerDistance(touches), zoom: viewport.zoom };
  }

  onTouchMove(viewport, touches) {
    if (touches.length !== 2) return;
    viewport.setZoom(this.pinch.zoom * fingerDistance(touches) / this.pinch.distance, { render: false });
  }

  onTouchEnd(viewport) {
    this.pinch = null;
    viewport.requestRender();
  }
}
