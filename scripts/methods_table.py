"""Write docs/methods-table.md, the table of every built-in pruner, from the registry.

    python scripts/methods_table.py            # rewrite docs/methods-table.md
    python scripts/methods_table.py --check    # exit 1 when the committed table is stale

Run it after adding a pruner or changing its options (``tests/test_docs.py`` fails while the committed
table differs from the registry). Third-party pruners (entry points, plugins) are left out: the table
documents this repository.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "methods-table.md"

HEADER = """\
# Methods table (generated)

Generated from the pruner registry by `python scripts/methods_table.py`: do not edit by hand
(`tests/test_docs.py` fails when this table and the registry differ). Every option is set with
`--set key=value` on the command line or `options = {...}` in a study file. What each method does and how
it departs from its authors' code: [pruners.md](pruners.md), [methods.md](methods.md), [orderdp.md](orderdp.md)
and each class's docstring.

Granularity: `static` scores once (from a proxy run) and trains on a fixed subset; `epoch` plans a subset
each epoch; `batch` selects within each candidate batch.

| name | granularity | what (paper) | options (default) | file |
|---|---|---|---|---|
"""


def _default(field: dataclasses.Field) -> str:  # type: ignore[type-arg]
    if field.default is not dataclasses.MISSING:
        return repr(field.default)
    if field.default_factory is not dataclasses.MISSING:
        return repr(field.default_factory())
    return "required"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """The markdown of docs/methods-table.md for the current registry (built-in pruners only)."""
    from prunebench.pruners import get_pruner_class, list_pruners

    rows = []
    for name in list_pruners():
        cls = get_pruner_class(name)
        module = cls.__module__
        if not module.startswith("prunebench.pruners."):
            continue
        options = ", ".join(f"`{f.name}={_default(f)}`" for f in dataclasses.fields(cls.Options)) or "-"
        path = module.replace(".", "/") + ".py"
        rows.append(
            f"| `{name}` | {cls.granularity} | {_cell(cls.description)} | {_cell(options)} "
            f"| [{Path(path).name}](../{path}) |"
        )
    return HEADER + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/methods-table.md is stale")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/methods_table.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
