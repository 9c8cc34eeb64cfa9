// Window/level: dragging changes the VOI window (down raises the level, right widens the window); actions apply
// a preset from the server's table (imaging/dicom/window_presets.py), go back to the server's window, or invert.

import { BaseTool } from "./base.js";

const LEVEL_PER_PIXEL = 2;
const WIDTH_PER_PIXEL = 4;
const NARROWEST_WIDTH = 1;

export class WindowLevelTool extends BaseTool {
  /** @param {{presets: {key: string, center: number, width: number}[]}} options */
  constructor({ presets }) {
    super("windowLevel");
    this.presets = new Map(presets.map((preset) => [preset.key, [preset.center, preset.width]]));
    this.drag = null;
    this.actions = {
      ...this.actions,
      preset: (viewport, key) => {
        const preset = this.presetWindow(key);
        if (preset) viewport.setWindow(preset);
      },
      reset: (viewport) => viewport.setWindow(null),
      invert: (viewport) => viewport.setInvert(!viewport.invert),
    };
  }

  /** The window [center, width] of the preset with this key, or null. */
  presetWindow(key) {
    const preset = this.presets.get(key);
    return preset ? preset.slice() : null;
  }

  onPointerDown(viewport, pointer) {
    this.drag = { x: pointer.clientX, y: pointer.clientY, window: viewport.currentWindow() };
    return true;
  }

  onPointerMove(viewport, pointer) {
    const [center, width] = this.drag.window;
    const dx = pointer.clientX - this.drag.x, dy = pointer.clientY - this.drag.y;
    viewport.setWindow([center + dy * LEVEL_PER_PIXEL, Math.max(NARROWEST_WIDTH, width + dx * WIDTH_PER_PIXEL)]);
  }

  onPointerUp() {
    this.drag = null;
  }
}
