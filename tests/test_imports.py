"""The package's import graph has no cycle.

Every module of ``pyfastdl`` is parsed with :mod:`ast` (nothing is imported), and every import of
another ``pyfastdl`` module is an edge: module-level imports and the ones inside functions alike
(an import inside a function is how a circle hides), except those under ``if TYPE_CHECKING:``,
which never run. ``from pkg import name`` counts as an edge to ``pkg.name`` where that is a module,
and to ``pkg`` (its ``__init__``) otherwise. Importing ``a.b.c`` runs ``a/__init__`` and
``a/b/__init__`` first, so every edge also reaches the parent packages of its target, except the
importer's own parents (they are already importing when it runs).
"""

from __future__ import annotations

import ast
import pathlib

import pyfastdl

PACKAGE = "pyfastdl"
ROOT = pathlib.Path(pyfastdl.__file__).resolve().parent


def _modules() -> dict[str, pathlib.Path]:
    """Module name -> file, for every .py file of the package and its compiled extensions (``_C``,
    a leaf: it imports no Python module of the package)."""
    found = {}
    for path in sorted([*ROOT.rglob("*.py"), *ROOT.rglob("*.so"), *ROOT.rglob("*.pyd")]):
        parts = list(path.relative_to(ROOT).parts)
        parts[-1] = parts[-1].split(".")[0]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join([PACKAGE, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node in ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _with_parents(name: str, modules) -> set[str]:
    """``name`` and the packages above it that are in the package (importing it runs them all)."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(modules)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (with their parent packages)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        if path.suffix != ".py":
            graph[name] = set()
            continue
        is_package = path.name == "__init__.py"
        here = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
                continue
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
        # The packages above this module have started importing before it runs: reaching them
        # implicitly (as parents of a target) adds nothing; naming one (``from .. import Tensor``)
        # is a real edge, since it needs what that package's __init__ defines.
        ancestors = _with_parents(name, modules) - {name}
        edges = set()
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                edges |= (_with_parents(target, modules) - ancestors) | ({target} & set(modules))
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        # Iterative Tarjan: recursion would be deep enough on a big graph to matter.
        work = [(v, iter(sorted(graph[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def _a_cycle(graph, component) -> list[str]:
    """One closed path through ``component`` (breadth-first from its first module back to it)."""
    start, members = component[0], set(component)
    previous, frontier = {start: None}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, v, start]
                if w not in previous:
                    previous[w] = v
                    nxt.append(w)
        frontier = nxt
    return component


def test_graph_sees_function_level_imports():
    graph = import_graph()
    assert "pyfastdl.tensor" in graph["pyfastdl"]  # module level
    assert "pyfastdl.train.sweep" in graph["pyfastdl.cli"]  # inside _cmd_sweep
    assert {"pyfastdl.train", "pyfastdl.train.registry"} <= graph["pyfastdl.models"]  # inside list_models, with
    assert "pyfastdl._C" in graph["pyfastdl._core"]  # the parent package; the extension is a module too


def test_cycles_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _a_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    found = cycles(graph)
    report = "\n".join(f"{len(c)} modules: {' -> '.join(_a_cycle(graph, c))}\n  all: {', '.join(c)}"
                       for c in found)
    assert not found, f"import cycles in {PACKAGE}:\n{report}"


def test_the_layers_import_downwards():
    """The training loop knows no task and no model; a task knows no model (pyfastdl/tasks/__init__.py);
    the vision and text utilities know none of them."""
    graph = import_graph()

    def under(prefix):
        return {m for m in graph if m == prefix or m.startswith(prefix + ".")}

    pairs = [("pyfastdl.train", "pyfastdl.tasks"), ("pyfastdl.train", "pyfastdl.models"),
             ("pyfastdl.tasks", "pyfastdl.models")]
    pairs += [(lower, upper) for lower in ("pyfastdl.vision", "pyfastdl.text")
              for upper in ("pyfastdl.train", "pyfastdl.tasks", "pyfastdl.models")]
    for lower, upper in pairs:
        wrong = sorted(f"{m} -> {t}" for m in under(lower) for t in graph[m] & under(upper))
        assert not wrong, f"{lower} imports {upper}: {wrong}"
