// Input for one viewport: listens to the DOM (keys, pointer, wheel, touch, toolbar) and hands each event to the
// tool or action the bindings table names. Nothing here decides what an input means: that is bindings.js.

const BUTTONS = { primary: 0, middle: 1, secondary: 2 };

function modifiersMatch(entry, event) {
  return (entry.shift === undefined || entry.shift === event.shiftKey)
    && (entry.ctrl === undefined || entry.ctrl === event.ctrlKey);
}

/**
 * @param {object} options
 * @param {import("./viewport.js").Viewport} options.viewport
 * @param {Map<string, import("./tools/base.js").BaseTool>} options.tools  by name
 * @param {ReturnType<import("./bindings.js").defaultBindings>} options.bindings
 * @param {HTMLElement} options.toolbar
 */
export function attachInput({ viewport, tools, bindings, toolbar }) {
  const element = viewport.canvas;

  const run = (action, args = []) => {
    const [toolName, actionName] = action.split(".");
    const tool = tools.get(toolName);
    const handler = tool && tool.actions[actionName];
    if (!handler) throw new Error(`The bindings name an action no tool has: ${action}`);
    handler(viewport, ...args);
  };

  element.addEventListener("keydown", (event) => {
    const entry = bindings.keys.find((binding) => binding.key === event.key);
    if (!entry) return;
    if (entry.preventDefault) event.preventDefault();
    run(entry.action, entry.args);
  });
  // Keyboard shortcuts work as soon as the page has focus, not only the canvas.
  document.addEventListener("keydown", (event) => {
    if (document.activeElement === document.body) element.dispatchEvent(new KeyboardEvent("keydown", { key: event.key }));
  });

  element.addEventListener("wheel", (event) => {
    event.preventDefault();
    const direction = event.deltaY > 0 ? "down" : event.deltaY < 0 ? "up" : null;
    const entry = bindings.wheel.find((binding) => binding.direction === direction && modifiersMatch(binding, event));
    if (entry) run(entry.action, entry.args);
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
      if (binding.whenActive && !tools.get(binding.whenActive).active) continue;
      const tool = tools.get(binding.tool);
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

  let gesture = null;  // {tool, fingers}
  const gestureFor = (fingers) => bindings.touch.filter((binding) => binding.fingers <= fingers)
    .reduce((best, binding) => (best && best.fingers >= binding.fingers ? best : binding), null);
  element.addEventListener("touchstart", (event) => {
    event.preventDefault();
    const binding = gestureFor(event.touches.length);
    gesture = binding ? { tool: tools.get(binding.tool), fingers: binding.fingers } : null;
    if (gesture) gesture.tool.onTouchStart(viewport, event.touches);
  }, { passive: false });
  element.addEventListener("touchmove", (event) => {
    event.preventDefault();
    if (!gesture) return;
    const grown = bindings.touch.find((binding) => binding.fingers === event.touches.length);
    if (grown && grown.fingers > gesture.fingers) {
      gesture = { tool: tools.get(grown.tool), fingers: grown.fingers };
      gesture.tool.onTouchStart(viewport, event.touches);
    }
    gesture.tool.onTouchMove(viewport, event.touches);
  }, { passive: false });
  element.addEventListener("touchend", () => {
    if (gesture) gesture.tool.onTouchEnd(viewport);
    gesture = null;
  });

  for (const binding of bindings.toolbar) {
    for (const button of toolbar.querySelectorAll(binding.selector)) {
      button.addEventListener("click", () => run(binding.action, (binding.dataArgs || []).map((name) => button.dataset[name])));
    }
  }
}
