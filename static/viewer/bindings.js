// The bindings table: the one place where keys, mouse buttons, the wheel, touch gestures and toolbar buttons are
// mapped to tools and actions. input.js reads it and maps nothing itself; tools never look at raw input.
//
// An action is "<tool>.<action>" with optional args, run on the viewport as tool.actions[action](viewport, ...args).
// A pointer or touch entry names the tool that takes the drag or gesture. In each list the first entry that matches
// wins; a modifier (shift, ctrl) an entry does not name is not looked at.

const ZOOM_STEP_KEY = 1.25;
const ZOOM_STEP_WHEEL = 1.1;

/** @param {{presets: {key: string}[]}} options  the window presets from the server (json_script) */
export function defaultBindings({ presets }) {
  return {
    // KeyboardEvent.key → action. preventDefault keeps the page from scrolling as well.
    keys: [
      { key: "ArrowDown", action: "stackScroll.by", args: [1], preventDefault: true },
      { key: "ArrowRight", action: "stackScroll.by", args: [1], preventDefault: true },
      { key: "ArrowUp", action: "stackScroll.by", args: [-1], preventDefault: true },
      { key: "ArrowLeft", action: "stackScroll.by", args: [-1], preventDefault: true },
      { key: "PageDown", action: "stackScroll.by", args: [10], preventDefault: true },
      { key: "PageUp", action: "stackScroll.by", args: [-10], preventDefault: true },
      { key: "Home", action: "stackScroll.first" },
      { key: "End", action: "stackScroll.last" },
      ...presets.map((preset) => ({ key: preset.key, action: "windowLevel.preset", args: [preset.key] })),
      { key: "r", action: "windowLevel.reset" },
      { key: "i", action: "windowLevel.invert" },
      { key: "f", action: "zoom.fit" },
      { key: "+", action: "zoom.by", args: [ZOOM_STEP_KEY] },
      { key: "=", action: "zoom.by", args: [ZOOM_STEP_KEY] },
      { key: "-", action: "zoom.by", args: [1 / ZOOM_STEP_KEY] },
      { key: "c", action: "cine.toggle" },
      { key: "m", action: "length.toggle" },
    ],
    // A button pressed on the viewport → the tool that takes the drag. whenActive: only while that tool is on.
    pointer: [
      { button: "any", whenActive: "length", tool: "length" },
      { button: "secondary", tool: "stackScroll" },
      { button: "middle", tool: "pan" },
      { button: "any", shift: true, tool: "pan" },
      { button: "any", tool: "windowLevel" },
    ],
    // The wheel, by direction (down: towards the user) → action.
    wheel: [
      { direction: "up", ctrl: true, action: "zoom.by", args: [ZOOM_STEP_WHEEL] },
      { direction: "down", ctrl: true, action: "zoom.by", args: [1 / ZOOM_STEP_WHEEL] },
      { direction: "down", action: "stackScroll.by", args: [1] },
      { direction: "up", action: "stackScroll.by", args: [-1] },
    ],
    // Fingers on the viewport → the tool that takes the gesture. A gesture that gains fingers passes to the
    // entry for the new count; one that loses fingers stays with its tool until every finger lifts (a pinch that
    // lifts one finger first does not turn into a swipe). input.js does this.
    touch: [
      { fingers: 1, tool: "stackScroll" },  // swipe through the frames
      { fingers: 2, tool: "zoom" },         // pinch
    ],
    // Toolbar buttons (CSS selector inside the toolbar) → action; dataArgs: data-* attributes passed as args.
    toolbar: [
      { selector: "[data-preset]", action: "windowLevel.preset", dataArgs: ["preset"] },
      { selector: "[data-action='reset']", action: "windowLevel.reset" },
      { selector: "[data-action='invert']", action: "windowLevel.invert" },
      { selector: "[data-action='fit']", action: "zoom.fit" },
      { selector: "[data-action='measure']", action: "length.toggle" },
      { selector: "[data-action='cine']", action: "cine.toggle" },
    ],
  };
}
