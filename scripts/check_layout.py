"""Check the package's shape: module and class sizes, and import cycles between modules.

Run by ``make lint``:

- No module of ``src/authpulse`` over :data:`MAX_MODULE_LINES` lines and no class
  over :data:`MAX_CLASS_LINES`. :data:`OVER` lists those still over the limit with
  the most lines each may have: it may only shrink (a listed module that grows
  fails, and one that comes under the limit must be taken off the list).
- No import cycle between modules, counting imports inside functions (lazy
  imports) and leaving out those under ``if TYPE_CHECKING:``. import-linter's
  contracts (``lint-imports``) check the layers and the core's forbidden modules;
  this check covers every pair of modules, whatever package they are in.

Exit status 0 when the package is in shape, 1 with one line per finding.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "authpulse"
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 300

#: Modules and classes still over the limits, with the most lines each may have
#: (empty: every module and class is within them; keep it so).
OVER: dict[str, int] = {}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str, path: Path, tree: ast.Module) -> Iterator[str]:
    """The authpulse modules ``module`` imports, lazy ones included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and is_type_checking(node.test):
            for branch in node.orelse:
                yield from visit(branch)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] == PACKAGE:
                yield target
                for alias in node.names:  # "from . import x" may name a module
                    yield f"{target}.{alias.name}"  # (kept only if it is one)
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(tree)


def sizes(module: str, path: Path, tree: ast.Module, lines: int) -> Iterator[tuple[str, int]]:
    yield module, lines
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
            yield f"{module}.{node.name}", node.end_lineno - node.lineno + 1


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def main() -> int:
    problems: list[str] = []
    graph: dict[str, set[str]] = {}
    seen: set[str] = set()
    parsed = list(modules())
    names = {module for module, _ in parsed}
    for module, path in parsed:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text, filename=str(path))
        # a package's own __init__ is not an edge to itself
        found = set(imports(module, path, tree))
        # "from .pkg import mod" is an edge to pkg.mod, not to pkg's __init__
        graph[module] = {
            m
            for m in found
            if m in names and m != module and not any(n.startswith(m + ".") for n in found & names)
        }
        for name, count in sizes(module, path, tree, len(text.splitlines())):
            limit = MAX_CLASS_LINES if name != module else MAX_MODULE_LINES
            allowed = OVER.get(name)
            if allowed is not None:
                seen.add(name)
                if count <= limit:
                    problems.append(f"{name}: {count} lines, under the limit: take it off OVER")
                elif count > allowed:
                    problems.append(f"{name}: {count} lines, more than the {allowed} allowed")
            elif count > limit:
                kind = "class" if name != module else "module"
                problems.append(f"{name}: {count} lines, over the {kind} limit of {limit}")
    problems += [f"{name}: on OVER but not found" for name in sorted(set(OVER) - seen)]
    for component in cycles(graph):
        problems.append("import cycle: " + " <-> ".join(component))
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
