"""Imports flow one way through the layers, and no module imports itself through a cycle.

Layer order (a module may import only from its own package or a lower layer; function-level
imports count): errors → solvers, execution, checkpointing, data, uncertainty → network → physics →
formulation → problems → evaluation, learning → methods → report → cli. The exact evaluation and
the statistical bounds sit below the methods because PH (final evaluation of x̄) and SPAR
(Mak–Morton–Wood bounds) use them; evaluation never imports a method.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gridrecourse

PACKAGE = Path(gridrecourse.__file__).parent

RANK = {
    "__init__": 12,
    "errors": 0,
    "solvers": 1,
    "execution": 1,
    "checkpointing": 1,  # the Checkpoint protocol: used by evaluation and methods
    "data": 1,
    "uncertainty": 1,
    "network": 2,
    "physics": 3,
    "formulation": 4,
    "problems": 5,
    "evaluation": 6,
    "learning": 6,
    "methods": 7,
    "report": 8,
    "api": 8,
    "cli_common": 9,
    "cli_expand": 10,
    "cli_siting": 10,
    "cli_voltvar": 10,
    "cli_operate": 10,
    "cli_export": 10.5,  # builds problems with the other commands' builders
    "cli": 11,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except the bodies of ``if TYPE_CHECKING:`` blocks (no runtime import)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _walk(node: ast.AST):
    yield node
    yield from _runtime_nodes(node)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("gridrecourse."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gridrecourse.")}
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_is_ranked():
    tops = {_top(m) for m in _graph()}
    assert tops <= set(RANK), f"add a layer rank for {sorted(tops - set(RANK))}"


def test_imports_only_go_down_the_layers():
    violations = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _top(target) != _top(module) and RANK[_top(target)] >= RANK[_top(module)]
    ]
    assert not violations, "\n".join(sorted(violations))


def test_no_import_cycles():
    graph = _graph()
    known = set(graph)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            # "from gridrecourse.pkg import module" names the package; resolve to known modules
            target = target if target in known else target.rsplit(".", 1)[0]
            if target not in known or target == node:
                continue
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)
