"""Write docs/methods-table.md, the table of every built-in pruner, from the registry.

    python scripts/methods_table.py            # rewrite docs/methods-table.md
    python scripts/methods_table.py --check    # exit 1 when the committed table is stale

Run it after adding a pruner or changing its options (``tests/test_docs.py`` fails while the committed
table differs from the registry). Third-party pruners (entry points, plugins) are left out: the table
documents this repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "methods-table.md"

HEADER = """\
# Methods table (generated)

Generated from the pruner registry by `python scripts/methods_table.py`: do not edit by hand
(`tests/test_docs.py` fails when this table and the registry differ; `prunebench list --long` prints the
same). Every option is set with `--set key=value` on the command line or `options = {...}` in a study
file. What each method does and how it departs from its authors' code: [pruners.md](pruners.md),
[methods.md](methods.md), [orderdp.md](orderdp.md) and each class's docstring.

Cost: what a method spends besides training on its kept samples (`proxy run`: a shared training run on
full data that scores every sample; `extra forwards`: no-grad forward passes of candidates; `none`:
nothing), all of it counted in `relative_compute`. Weights: whether it trains with per-sample loss
weights.
"""

#: methods a reader of the OrderDP paper expects that are not built in, and why (issue 21: where a paper's
#: definition cannot be found in the stored material, say so rather than guess)
NOT_IMPLEMENTED = """\
## Requested but not implemented

| method | why |
|---|---|
| RePB (ICLR 2026, "Inconsistency Biases in Dynamic Data Pruning": score-drift and gradient-bias corrections) | its definition is not in the material this project can read: the OpenReview abstract (forum Zw1Uw7u6Su) and a paper summary name its parts (local window pruning, uniform resampling, cumulative temporal reweighting by historical selection frequency) but give no equations, window size or weight formula, and its code (github mrazhou/RePB) has no stored snapshot. Not registered rather than guessed. |
"""

GRANULARITIES = {
    "static": "Static: score once (from a proxy run) and train on a fixed subset",
    "epoch": "Per epoch: plan a subset each epoch",
    "batch": "Per batch: select within each candidate batch",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _builtin() -> list[tuple[dict, str]]:
    """(catalog entry, source path) of every built-in pruner, by name."""
    from prunebench.catalog import pruner_entry
    from prunebench.pruners import get_pruner_class, list_pruners

    out = []
    for name in list_pruners():
        cls = get_pruner_class(name)
        if cls.__module__.startswith("prunebench.pruners."):
            out.append((pruner_entry(name, cls), cls.__module__.replace(".", "/") + ".py"))
    return out


def render() -> str:
    """The markdown of docs/methods-table.md for the current registry (built-in pruners only)."""
    entries = _builtin()
    parts = [HEADER]
    for gran, title in GRANULARITIES.items():
        rows = [
            f"| `{p['name']}` | {_cell(p['family'])} | {', '.join(p['cost_profile']) or 'none'} "
            f"| {'yes' if p['uses_weights'] else 'no'} | {_cell(p['description'])} "
            f"| {_cell(', '.join(f'`{k}={v}`' for k, v in p['defaults'].items()) or '-')} |"
            for p, _ in entries
            if p["granularity"] == gran
        ]
        if rows:
            head = "| name | family | cost | weights | what | options (default) |\n|---|---|---|---|---|---|\n"
            parts.append(f"## {title}\n\n" + head + "\n".join(rows) + "\n")
    rows = [
        f"| `{p['name']}` | {_cell(p['paper'])} | {_cell(p['defaults_source'])} | [{Path(path).name}](../{path}) |"
        for p, path in entries
    ]
    head = "| name | paper | where the defaults come from | file |\n|---|---|---|---|\n"
    parts.append("## Papers and the sources of the defaults\n\n" + head + "\n".join(rows) + "\n")
    parts.append(NOT_IMPLEMENTED)
    return "\n".join(parts)


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
