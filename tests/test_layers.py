"""The layer rules, read from the source's own imports (module level and inside functions alike).

* The device side (runtime/, pipeline/, ops/, predictor) never imports export/ or models/: a bundle runs where
  neither PyTorch nor the converters are installed.
* check/ never imports export/: checking compares artifacts; it never compiles them.
* No import cycles between edgevision's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgevision"
DEVICE_SIDE = ("edgevision.runtime", "edgevision.pipeline", "edgevision.ops", "edgevision.predictor")
FORBIDDEN = [(DEVICE_SIDE, ("edgevision.export", "edgevision.models")),
             (("edgevision.check",), ("edgevision.export",))]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Lines inside ``if TYPE_CHECKING:`` blocks: imports there never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """edgevision module -> the edgevision modules it imports (submodules resolved when they exist)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for sources, banned in FORBIDDEN:
        for mod, deps in graph.items():
            if not any(mod == s or mod.startswith(s + ".") for s in sources):
                continue
            for dep in sorted(deps):
                if any(dep == b or dep.startswith(b + ".") for b in banned):
                    found.append(f"{mod} imports {dep}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Drop edges from a module to its own package's __init__ (``from edgevision.check import x`` inside check/
    is not a cycle worth reporting: Python resolves it once the package has started importing)."""
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_layers_hold():
    graph = import_graph()
    assert len(graph) > 40 and "edgevision.runtime.base" in graph
    assert violations(graph) == []


def test_no_import_cycles():
    assert cycles(_package_edges(import_graph())) == []


def test_the_checks_see_a_forbidden_import_and_a_cycle():
    graph = import_graph()
    graph["edgevision.runtime.onnxruntime"] = graph["edgevision.runtime.onnxruntime"] | {"edgevision.export.cpu"}
    graph["edgevision.check.golden"] = graph["edgevision.check.golden"] | {"edgevision.export.onnx_graph"}
    found = violations(graph)
    assert "edgevision.runtime.onnxruntime imports edgevision.export.cpu" in found
    assert "edgevision.check.golden imports edgevision.export.onnx_graph" in found
    graph["edgevision.ops.preprocess"] = graph["edgevision.ops.preprocess"] | {"edgevision.predictor"}
    assert any({"edgevision.ops.preprocess", "edgevision.predictor"} <= set(c) for c in cycles(_package_edges(graph)))
