"""The code version in the proxy cache's key: prunebench's version plus a digest of every source file that
produces a proxy's records (:mod:`prunebench.harness.proxy`), so that a code change invalidates the cache."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import prunebench

#: packages whose code produces the proxy's records (with every prunebench module they import)
CODE_PACKAGES = ("harness", "pruners", "datasets")


def code_files() -> list[str]:
    """Every source file (relative to the package root) that a proxy run executes: all ``.py`` files of
    :data:`CODE_PACKAGES`, found by walking them, plus the prunebench modules they import (closed under
    import), so that no file split or new module can leave the cache key stale."""
    root = Path(prunebench.__file__).parent
    todo = [p.relative_to(root).as_posix() for pkg in CODE_PACKAGES for p in (root / pkg).rglob("*.py")]
    todo.append("__init__.py")
    files: set[str] = set()
    while todo:
        rel = todo.pop()
        if rel in files or not (root / rel).is_file():
            continue
        files.add(rel)
        for node in ast.walk(ast.parse((root / rel).read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                parts = name.split(".")
                if parts[0] == "prunebench" and len(parts) > 1:
                    todo += ["/".join(parts[1:]) + ".py", "/".join(parts[1:]) + "/__init__.py"]
    return sorted(files)


def code_version() -> str:
    """prunebench's version plus a digest of the source files that produce the proxy's records."""
    root = Path(prunebench.__file__).parent
    h = hashlib.sha256()
    for rel in code_files():
        h.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return f"{prunebench.__version__}+{h.hexdigest()[:12]}"
