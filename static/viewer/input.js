// Input for the page's viewports: listens to the DOM (keys, pointer, wheel, touch, toolbar) and hands each event to
// the tool or action the bindings table names, in the tool group of the viewport it is meant for. Nothing here
// decides what an input means: that is bindings.js.
//
// Which viewport: the pointer, the wheel and touch act on the viewport under them. Keys and the toolbar act on the
// active viewport: the one last focused (clicked, touched or tabbed to), at first the first one attached. There is
// one key listener for the whole page, however many viewports it has.

const BUTTONS = { primary: 0, middle: 1, secondary: 2 };

function modifiersMatch(entry, event) {
  return (entry.shift === undefined || entry.shift === event.shiftKey)
    && (entry.ctrl === undefined || entry.ctrl === event.ctrlKey);
}

export class InputRouter {
  /**
   * @param {object} options
   * @param {ReturnType<import("./bindings.js").defaultBindings>} options.bindings
   * @param {HTMLElement} options.toolbar  its buttons act on the active viewport
   */
  constructor({ bindings, toolbar }) {
    this.bindings = bindings;
    this.targets = [];  // {viewport, toolGroup}, in the order attached
    this.active = null;
    document.addEventListener("keydown", (event) => this.#onKey(event));
    for (const binding of bindings.toolbar) {
      for (const button of toolbar.querySelectorAll(binding.selector)) {
        button.addEventListener("click", () => {
          if (this.active) this.active.toolGroup.run(binding.action, (binding.dataArgs || []).map((name) => button.dataset[name]));
        });
      }
    }
  }

  /** Make this viewport the one keys and the toolbar act on (its canvas is marked with the class "active"). */
  setActive(target) {
    this.active = target;
    for (const other of this.targets) other.viewport.canvas.classList.toggle("active", other === target);
  }

  #onKey(event) {
    // Keys reach a viewport when its canvas has the focus, or when nothing does (the page itself): never while
    // the user types into a box or has a button focused.
    const focused = document.activeElement;
    const target = this.targets.find((candidate) => candidate.viewport.canvas === focused)
      || (focused === document.body || focused === null ? this.active : null);
    if (!target) return;
    const entry = this.bindings.keys.find((binding) => binding.key === event.key);
    if (!entry) return;
    if (entry.preventDefault) event.preventDefault();
    target.toolGroup.run(entry.action, entry.args);
  }

  /**
   * Listen to one viewport's canvas.
   * @param {import("./viewport.js").Viewport} viewport
   * @param {import("./tools/toolGroup.js").ToolGroup} toolGroup  that viewport's tools
   */
  attach(viewport, toolGroup) {
    const bindings = this.bindings, target = { viewport, toolGroup };
    const element = viewport.canvas;
    this.targets.push(target);
    if (this.active === null) this.setActive(target);
    element.addEventListener("focus", () => this.setActive(target));

    element.addEventListener("wheel", (event) => {
      event.preventDefault();
      const direction = event.deltaY > 0 ? "down" : event.deltaY < 0 ? "up" : null;
      const entry = bindings.wheel.find((binding) => binding.direction === direction && modifiersMatch(binding, event));
      if (entry) toolGroup.run(entry.action, entry.args);
    }, { passive: false });

    let dragTool = null;
    element.addEventListener("contextmenu", (event) => event.preventDefault());
    element.addEventListener("pointerdown", (event) => {
      if (event.pointerType === "touch") return;  // fingers are gestures (below)
      element.focus();
      element.setPointerCapture(event.pointerId);
      dragTool = null;
      for (const binding of bindings.pointer) {
        if (binding.button !== "any" && BUTTONS[binding.button] !== event.button) continue;
        if (!modifiersMatch(binding, event)) continue;
        if (binding.whenActive && !toolGroup.get(binding.whenActive).active) continue;
        const tool = toolGroup.get(binding.tool);
        if (tool.onPointerDown(viewport, event)) {
          dragTool = tool;
          break;
        }
      }
    });
    element.addEventListener("pointermove", (event) => {
      if (dragTool && event.pointerType !== "touch") dragTool.onPointerMove(viewport, event);
    });
    element.addEventListener("pointerup", (event) => {
      if (dragTool) dragTool.onPointerUp(viewport, event);
      dragTool = null;
    });

    // A gesture: the touch binding for the fingers down, its tool. A finger more passes the gesture to the entry
    // for the new count; a finger less keeps it with its tool until the last finger lifts (bindings.js).
    let gesture = null;  // {binding, tool}
    const gestureFor = (fingers) => bindings.touch.filter((binding) => binding.fingers <= fingers)
      .reduce((best, binding) => (best && best.fingers >= binding.fingers ? best : binding), null);
    const endGesture = () => {
      if (gesture) gesture.tool.onTouchEnd(viewport);
      gesture = null;
    };
    element.addEventListener("touchstart", (event) => {
      event.preventDefault();
      this.setActive(target);
      const binding = gestureFor(event.touches.length);
      if (!gesture || gesture.binding !== binding) {
        endGesture();
        if (!binding) return;
        gesture = { binding, tool: toolGroup.get(binding.tool) };
      }
      gesture.tool.onTouchStart(viewport, event.touches);  // a finger more for the same tool: it starts over from here
    }, { passive: false });
    element.addEventListener("touchmove", (event) => {
      event.preventDefault();
      if (gesture) gesture.tool.onTouchMove(viewport, event.touches);
    }, { passive: false });
    element.addEventListener("touchend", (event) => {
      if (event.touches.length === 0) endGesture();
      // Enough fingers left for the gesture's tool: it goes on from the fingers that are left.
      else if (gesture && event.touches.length >= gesture.binding.fingers) gesture.tool.onTouchStart(viewport, event.touches);
    });
    element.addEventListener("touchcancel", endGesture);
  }
}
