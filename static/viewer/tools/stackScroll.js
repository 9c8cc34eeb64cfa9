// Stack scroll: moves through the frames of the series. Actions step by a count or go to the first or last
// frame; a drag moves one frame per 8 pixels, a one-finger swipe one frame per 12 pixels (up: next).

import { BaseTool } from "./base.js";

const PIXELS_PER_FRAME_DRAG = 8;
const PIXELS_PER_FRAME_SWIPE = 12;

export class StackScrollTool extends BaseTool {
  constructor() {
    super("stackScroll");
    this.drag = null;
    this.swipe = null;
    this.actions = {
      ...this.actions,
      by: (viewport, step) => viewport.scrollBy(step),
      first: (viewport) => viewport.setFrame(0),
      last: (viewport) => viewport.setFrame(viewport.count - 1),
    };
  }

  onPointerDown(viewport, pointer) {
    this.drag = { y: pointer.clientY, frame: viewport.frame };
    return true;
  }

  onPointerMove(viewport, pointer) {
    viewport.setFrame(this.drag.frame + Math.round((pointer.clientY - this.drag.y) / PIXELS_PER_FRAME_DRAG));
  }

  onPointerUp() {
    this.drag = null;
  }

  onTouchStart(viewport, touches) {
    this.swipe = { y: touches[0].clientY, frame: viewport.frame };
  }

  onTouchMove(viewport, touches) {
    if (touches.length !== 1) return;
    viewport.setFrame(this.swipe.frame + Math.round((this.swipe.y - touches[0].clientY) / PIXELS_PER_FRAME_SWIPE));
  }

  onTouchEnd() {
    this.swipe = null;
  }
}
