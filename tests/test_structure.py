"""The shape of the code stays readable: harness files and every prunebench function stay short, and no prunebench
module imports (at any depth, lazily or not) a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "prunebench"
MAX_FILE_LINES, MAX_FUNCTION_LINES = 350, 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    """Module -> the prunebench modules it imports anywhere in its body (``from pkg import mod`` counts
    as importing ``pkg.mod`` when that is a module, else ``pkg``)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                for a in node.names:
                    if f"{base}.{a.name}" in mods:
                        deps.add(f"{base}.{a.name}")
                    elif base in mods:
                        deps.add(base)
        graph[name] = deps - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if d not in state and (c := visit(d)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_cycle_in_prunebench():
    graph = import_graph()
    assert "prunebench.harness.loop" in graph and "prunebench.harness.proxy" in graph["prunebench.harness.loop"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in ``source`` longer than ``limit`` lines, from its
    ``def`` line to its last line (docstring and decorators' arguments included, decorators not)."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit
    ]


@pytest.mark.parametrize("path", sorted((ROOT / "harness").glob("*.py")), ids=lambda p: p.name)
def test_harness_files_are_short(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_FILE_LINES, f"{path.name}: {len(lines)} lines (at most {MAX_FILE_LINES})"


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_functions_are_short(path):
    long = long_functions(path.read_text(encoding="utf-8"))
    assert not long, "; ".join(
        f"{path.relative_to(ROOT)}: {n}() is {k} lines (at most {MAX_FUNCTION_LINES})" for n, k in long
    )


def test_long_function_finder_counts_docstrings_and_nested_functions():
    body = "\n".join(f"    x{i} = {i}" for i in range(57))
    short = f'def f():\n    """doc"""\n{body}\n    return x0\n'  # 60 lines
    assert long_functions(short) == []
    longer = f'def f():\n    """doc\n    more"""\n{body}\n    return x0\n'  # 61 lines: the docstring counts
    assert long_functions(longer) == [("f", 61)]
    nested = "class A:\n    def g(self):\n" + "\n".join("        " + line for line in longer.splitlines())
    assert ("f", 61) in long_functions(nested) and ("g", 62) in long_functions(nested)


def test_proxy_cache_key_covers_every_module_a_proxy_run_imports():
    """The proxy records' cache key hashes the code that produces them: every harness, pruner and dataset
    module, and every prunebench module those import, so a moved or new file cannot leave it stale."""
    from prunebench.harness.code_digest import code_files

    covered = set(code_files())
    harness = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("*.py")}
    assert harness <= covered, sorted(harness - covered)
    graph, mods = import_graph(), _modules()
    for rel in covered:
        name = _module_name(ROOT / rel)
        for dep in graph[name]:
            assert mods[dep].relative_to(ROOT).as_posix() in covered, f"{rel} imports {dep}, not in the cache key"
    assert "cli.py" not in covered and not any(r.startswith(("studies/", "reports/")) for r in covered)
