// What every tool is (after cornerstone3D's BaseTool): a small object with a name, activate/deactivate, pointer
// and touch handlers that receive the viewport they act on, and named actions that keys and buttons can run.
// Which input reaches which tool is decided by the bindings table (../bindings.js), never by a tool; a tool
// changes viewports only through their methods, and never calls another tool.
//
// One instance serves one viewport: each viewport's tool group (toolGroup.js) makes its own instances, so a tool
// may keep the state of an interaction (a drag, a timer) on itself. The viewport passed to every method is always
// that group's viewport.

export class BaseTool {
  /** @param {string} name  how the bindings table names this tool */
  constructor(name) {
    this.name = name;
    this.active = false;
    // Actions by name, each (viewport, ...args) => void; bindings name them "<tool>.<action>".
    this.actions = { toggle: (viewport) => this.toggle(viewport) };
  }

  activate(viewport) {
    this.active = true;
  }

  deactivate(viewport) {
    this.active = false;
  }

  toggle(viewport) {
    if (this.active) this.deactivate(viewport);
    else this.activate(viewport);
  }

  /** A button went down on the viewport (a PointerEvent). Return true to take the drag that follows; false lets
   * the next binding in the table have it. */
  onPointerDown(viewport, pointer) {
    return false;
  }

  onPointerMove(viewport, pointer) {}

  onPointerUp(viewport, pointer) {}

  /** A touch gesture bound to this tool began (touches: a TouchList), moved, ended. */
  onTouchStart(viewport, touches) {}

  onTouchMove(viewport, touches) {}

  onTouchEnd(viewport) {}
}
