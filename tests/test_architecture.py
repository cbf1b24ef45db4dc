"""The package's shape: no import cycle, no private name across modules, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sklearn_mmlgnet"
# Private modules whose names any module may import: shared checks and file writing.
SHARED_PRIVATE = {"sklearn_mmlgnet._validation", "sklearn_mmlgnet._io"}
MAX_LINES = 600


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name, path):
    """(imported module, imported names) for every import in the file, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def _graph():
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target, names in _imports(name, path):
            for candidate in [f"{target}.{n}" for n in names] + [target]:
                if candidate in modules and candidate != name:
                    deps.add(candidate)
                    break
        graph[name] = deps
    return graph


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package imports its own submodules; that is not a cycle between modules.
    for name in graph:
        graph[name] = {d for d in graph[name] if not d.startswith(name + ".")}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_private_name_is_imported_across_modules():
    offenders = []
    for name, path in _modules().items():
        for target, names in _imports(name, path):
            if not target.startswith("sklearn_mmlgnet") or target in SHARED_PRIVATE:
                continue
            same_package = target.rpartition(".")[0] == name.rpartition(".")[0] or \
                target.startswith(name + ".") or name.startswith(target + ".")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and not same_package:
                offenders.append(f"{name} imports {private} from {target}")
    assert not offenders


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_module_is_over_600_lines(name):
    n_lines = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert n_lines <= MAX_LINES, f"{name} has {n_lines} lines"


def test_the_library_holds_no_per_dataset_tuned_constant():
    hits = [str(p) for p in PACKAGE.rglob("*.py") if "NETWORK_" in p.read_text(encoding="utf-8")]
    assert not hits
