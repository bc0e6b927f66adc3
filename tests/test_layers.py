"""Modules talk in one direction: cli -> studies -> reports -> harness -> pruners -> datasets.

Every module of prunebench/ is parsed with ``ast`` (nothing is imported) and every ``import`` of a
prunebench module, at module level or inside a function, is checked against the floors below
(docs/architecture.md). Shared leaf modules (errors, safety, seeding, options, the static registry index)
may be imported from any floor and import only each other. No module imports another package's private
names (``from prunebench.x import _y`` where x is not the importer's own package).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "prunebench"

# higher imports lower; equal floors only within one package
FLOORS = {"datasets": 0, "pruners": 1, "harness": 2, "reports": 3, "studies": 4, "testing": 4, "cli": 5, "__main__": 6}
# imported from anywhere; they import only leaves. `prunebench` is the package's __init__ (version, errors).
LEAVES = {"prunebench", "errors", "safety", "seeding", "options", "catalog", "catalog_data", "plugins"}
# an import that goes against the floors, with the reason it is allowed: (importing module, function) -> why
EXCEPTIONS = {
    ("prunebench.catalog", "live"): "regenerates catalog_data.py from the real registries "
    "(python -m prunebench.catalog); nothing in the package calls it",
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str:
    """The floor-bearing unit of a module: its subpackage, or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "prunebench"


def _is_submodule(pkg: Path, name: str) -> bool:
    return (pkg / f"{name}.py").exists() or (pkg / name / "__init__.py").exists()


def _imports(path: Path, root: Path = ROOT) -> list[tuple[str, list[str], str | None, int]]:
    """(target module, imported names, enclosing top-level function or None, line) of each prunebench import."""
    module = _module_name(path, root)
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, list[str], str | None, int]] = []

    def visit(node: ast.AST, func: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            f = child.name if func is None and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else func
            if isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolve against the importing module's package
                    base = module.split(".") if is_pkg else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == "prunebench" or target.startswith("prunebench."):
                    names = [a.name for a in child.names]
                    if target == "prunebench":  # `from prunebench import catalog` imports a submodule
                        out.extend(
                            (f"prunebench.{n}", [], f, child.lineno)
                            for n in names
                            if _is_submodule(root / "prunebench", n)
                        )
                        names = [n for n in names if not _is_submodule(root / "prunebench", n)]
                    out.append((target, names, f, child.lineno))
            elif isinstance(child, ast.Import):
                out.extend(
                    (a.name, [], f, child.lineno)
                    for a in child.names
                    if a.name == "prunebench" or a.name.startswith("prunebench.")
                )
            visit(child, f)

    visit(ast.parse(path.read_text(), filename=str(path)), None)
    return out


def _violations(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of ``path`` against the floors, and private names imported from another package."""
    module = _module_name(path, root)
    src = _unit(module)
    bad = []
    for target, names, func, line in _imports(path, root):
        dst = _unit(target)
        where = f"{path.relative_to(root)}:{line}"
        bad += [
            f"{where} imports the private name {n} of {target}"
            for n in names
            if n.startswith("_") and not n.startswith("__") and dst != src
        ]
        if dst == src or (module, func) in EXCEPTIONS:
            continue
        ok = dst in LEAVES if src in LEAVES else dst in LEAVES or FLOORS[dst] < FLOORS[src]
        if not ok:
            bad.append(f"{where} ({src}) imports {target} ({dst}): against the floors")
    return bad


MODULES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_floor_or_is_a_leaf():
    units = {_unit(_module_name(p)) for p in MODULES}
    unknown = units - set(FLOORS) - LEAVES
    assert not unknown, (
        f"modules without a floor: {sorted(unknown)}: add them to FLOORS or LEAVES and docs/architecture.md"
    )
    assert len(MODULES) > 50


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_down_only_and_no_private_names_cross_packages(path):
    bad = _violations(path)
    assert not bad, "cli -> studies -> reports -> harness -> pruners -> datasets; leaves import leaves:\n" + "\n".join(
        bad
    )


def test_exceptions_name_real_functions():
    for (module, func), why in EXCEPTIONS.items():
        path = ROOT / (module.replace(".", "/") + ".py")
        assert f"def {func}(" in path.read_text() and why


@pytest.mark.parametrize(
    "src, expected",
    [
        (
            "from prunebench.harness import train\n",
            "(pruners) imports prunebench.harness (harness): against the floors",
        ),
        ("def f():\n    from prunebench.studies import load_study\n", "imports prunebench.studies (studies)"),
        ("import prunebench.reports.stats\n", "imports prunebench.reports.stats (reports)"),
        ("from ..harness.loop import Trainer\n", "imports prunebench.harness.loop (harness)"),
        (
            "from prunebench.datasets.base import _private\n",
            "imports the private name _private of prunebench.datasets.base",
        ),
    ],
)
def test_the_checker_rejects(tmp_path, src, expected):
    path = tmp_path / "prunebench" / "pruners" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(src)
    bad = _violations(path, tmp_path)
    assert len(bad) == 1 and expected in bad[0], bad


@pytest.mark.parametrize(
    "src",
    [
        "from prunebench.datasets import load_dataset\n",  # down
        "from prunebench.pruners.rules import topk\n",  # own package
        "from prunebench.pruners.base import _helper\n",  # own package's private name
        "from prunebench.errors import ConfigError\n",  # a leaf
        "from prunebench import seeding\n",
    ],
)
def test_the_checker_accepts(tmp_path, src):
    path = tmp_path / "prunebench" / "pruners" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(src)
    (tmp_path / "prunebench" / "seeding.py").write_text("")
    assert _violations(path, tmp_path) == []


def test_a_leaf_importing_a_floor_is_rejected(tmp_path):
    path = tmp_path / "prunebench" / "safety.py"
    path.parent.mkdir(parents=True)
    path.write_text("from prunebench.harness.config import RunConfig\n")
    assert "(safety) imports prunebench.harness.config (harness)" in _violations(path, tmp_path)[0]
