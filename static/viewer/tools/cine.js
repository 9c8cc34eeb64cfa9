// Cine: while active, plays through the series at the frames per second the page's fps box says (1-60, 15 when
// empty), starting over after the last frame.

import { BaseTool } from "./base.js";

const DEFAULT_FPS = 15;
const FPS_LIMITS = Object.freeze({ min: 1, max: 60 });

export class CineTool extends BaseTool {
  /** @param {{framesPerSecond: () => string | number}} options  reads the fps the user asked for */
  constructor({ framesPerSecond }) {
    super("cine");
    this.framesPerSecond = framesPerSecond;
    this.timer = null;
  }

  activate(viewport) {
    super.activate(viewport);
    const fps = Math.max(FPS_LIMITS.min, Math.min(FPS_LIMITS.max, Number(this.framesPerSecond()) || DEFAULT_FPS));
    this.timer = setInterval(() => viewport.setFrame((viewport.frame + 1) % Math.max(1, viewport.count)), 1000 / fps);
  }

  deactivate(viewport) {
    super.deactivate(viewport);
    clearInterval(this.timer);
    this.timer = null;
  }
}
