// A tool group (after cornerstone3D's ToolGroup): the tools of one viewport. Every viewport gets its own group and
// the group makes its own tool instances from the page's list of factories, so whatever a tool keeps between
// events (a drag, a measured line, a cine timer, whether it is on) belongs to that viewport alone: switching a tool
// in one viewport never touches another. The group runs the actions the bindings name ("<tool>.<action>"); which
// input reaches which group is input.js's business.

export class ToolGroup {
  /**
   * @param {import("../viewport.js").Viewport} viewport  the one viewport these tools act on
   * @param {(() => import("./base.js").BaseTool)[]} factories  each makes one new tool
   */
  constructor(viewport, factories) {
    this.viewport = viewport;
    this.tools = new Map();
    for (const make of factories) {
      const tool = make();
      if (this.tools.has(tool.name)) throw new Error(`Two tools are named ${tool.name}`);
      this.tools.set(tool.name, tool);
    }
  }

  /** The tool with this name; an error when the group has none (the bindings name a tool that does not exist). */
  get(name) {
    const tool = this.tools.get(name);
    if (!tool) throw new Error(`No tool is named ${name}`);
    return tool;
  }

  activate(name) {
    this.get(name).activate(this.viewport);
  }

  /** Run "<tool>.<action>" with args on this group's viewport. */
  run(action, args = []) {
    const [toolName, actionName] = action.split(".");
    const handler = this.tools.has(toolName) && this.tools.get(toolName).actions[actionName];
    if (!handler) throw new Error(`The bindings name an action no tool has: ${action}`);
    handler(this.viewport, ...args);
  }
}
