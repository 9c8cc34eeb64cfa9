"""The import graph of imaging/, viewer/ and config/ has no cycle, and dependencies point the way the layers do.

Every .py file is parsed with `ast`, imports at module level and inside functions alike (an import hidden in a
function to dodge a circle is still a circle). Rules: relative imports are resolved against the importing module;
`from pkg import name` where `pkg.name` is a module imports that module; importing `a.b.c` also imports its parent
packages `a` and `a.b`, except the importer's own parent packages: Python has those in sys.modules before the
importer runs, so `imaging.storage.s3` importing `imaging.storage.base` does not re-enter `imaging.storage` (an
explicit `from imaging.storage import X` in it still counts). Only modules of the three packages are nodes.
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.paths import REPO_ROOT

PACKAGES = ("imaging", "viewer", "config")
# The transports call services and selectors and never reach into each other. imaging.aws (the signed-route wrapper
# and the AWS error envelope) sits below api and dicomweb, shared by them, and imports no transport.
TRANSPORTS = ("imaging.admin", "imaging.api", "imaging.dicomweb", "viewer")
BELOW_TRANSPORTS = ("imaging.aws",)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((REPO_ROOT / package).rglob("*.py"))}


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported_names(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Dotted names `module` imports (modules of ours or not), before parent packages are added."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules)
    return names


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        own_parents = set(_ancestors(module))
        edges: set[str] = set()
        for name in _imported_names(module, path, modules):
            edges.update(parent for parent in _ancestors(name) if parent not in own_parents)
            edges.add(name)
        graph[module] = {name for name in edges if name in modules and name != module}
    return graph


def _direct_imports(module: str) -> set[str]:
    modules = _modules()
    return _imported_names(module, modules[module], modules)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        # Iterative, so a long chain of imports cannot exhaust Python's recursion limit.
        work = [(node, iter(sorted(graph[node])))]
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        while work:
            current, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[current] = min(low[current], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[current])
                if low[current] == index[current]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == current:
                            break
                    if len(component) > 1 or current in graph[current]:
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(found)


def test_the_cycle_finder_finds_cycles_and_self_loops():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]


def test_no_import_cycles_in_imaging_viewer_and_config():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(component) for component in found)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_transports_never_import_each_other():
    """api, dicomweb, admin and viewer share only what sits below them; imaging.aws is below api and dicomweb."""
    crossings = []
    for module, imported in sorted(import_graph().items()):
        own = next((package for package in TRANSPORTS + BELOW_TRANSPORTS if _within(module, package)), None)
        if own is None:
            continue
        crossings += [f"{module} -> {name}" for name in sorted(imported)
                      if any(_within(name, other) for other in TRANSPORTS if other != own)]
    assert crossings == []


def test_imaging_and_viewer_never_import_the_project_config():
    offenders = {
        module: sorted(name for name in _direct_imports(module) if name == "config" or name.startswith("config."))
        for module in _modules()
        if module.split(".")[0] in ("imaging", "viewer")
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_dicom_and_codecs_import_no_django():
    """Not directly, nor through a module of ours they import."""
    graph = import_graph()
    imports_django = {module for module in graph if any(name.partition(".")[0] == "django"
                                                        for name in _direct_imports(module))}
    libraries = [module for module in graph
                 if any(module == package or module.startswith(package + ".")
                        for package in ("imaging.dicom", "imaging.codecs"))]
    offenders: dict[str, list[str]] = {}
    for module in libraries:
        reached, todo = {module}, [module]
        while todo:
            for name in graph[todo.pop()] - reached:
                reached.add(name)
                todo.append(name)
        if reached & imports_django:
            offenders[module] = sorted(reached & imports_django)
    assert offenders == {}
