"""Wall-clock of the ``prunebench`` command: git main (or any ref) against the working tree, side by side.

    python benchmarks/cli_startup.py                 # main vs working tree, 5 repeats, interleaved
    python benchmarks/cli_startup.py --ref HEAD~3 --repeats 9 --json out.json

Each variant runs as a fresh ``python -m prunebench ...`` subprocess (the console script does the same)
with ``PYTHONPATH`` pointing at its source tree (the reference is extracted with ``git archive`` into a
temporary folder); the variants alternate within each repeat and the median is reported. Commands:
``--help``, ``list``, two bad inputs, and the default ``run`` (digits, orderdp, MLflow to a fresh
``sqlite:///mlflow.db`` in a temporary working directory). Targets (issue 22): ``list``, ``--help`` and
bad input under 1 s; the default ``run`` under 6 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "list": ["list"],
    "run --pruner nope (bad input)": ["run", "--pruner", "nope"],
    "run --set nope=1 (bad input)": ["run", "--set", "nope=1"],
    "run (default, MLflow)": ["run", "--quiet"],
}
TARGET = {"run (default, MLflow)": 6.0}


def _time(src: Path, argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(src))
    env.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as work:
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "prunebench", *argv], cwd=work, env=env, capture_output=True, text=True
        )
        dt = time.perf_counter() - t0
    if r.returncode not in (0, 2):
        raise SystemExit(f"{src}: prunebench {' '.join(argv)} failed ({r.returncode}): {r.stderr[-500:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="main", help="git ref to compare with (default main)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-run", action="store_true", help="only the instant commands")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref_src = Path(tmp) / "ref"
        ref_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", a.ref, "prunebench"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(ref_src)], input=archive, check=True)
        variants = {a.ref: ref_src, "working tree": ROOT}
        times: dict[str, dict[str, list[float]]] = {c: {v: [] for v in variants} for c in COMMANDS}
        for _ in range(a.repeats):
            for cmd, argv in COMMANDS.items():
                if a.skip_run and cmd.startswith("run (default"):
                    continue
                for v, src in variants.items():
                    times[cmd][v].append(_time(src, argv))
    rows = []
    print(f"{'command':<32} {a.ref + ' (s)':>12} {'working tree (s)':>17} {'target':>8}")
    for cmd, per in times.items():
        if not per["working tree"]:
            continue
        ref, new = statistics.median(per[a.ref]), statistics.median(per["working tree"])
        target = TARGET.get(cmd, 1.0)
        print(f"{cmd:<32} {ref:>12.2f} {new:>17.2f} {'< ' + format(target, 'g'):>8}")
        rows.append(
            {
                "command": cmd,
                "ref": a.ref,
                "ref_s": ref,
                "new_s": new,
                "target_s": target,
                "ref_all": per[a.ref],
                "new_all": per["working tree"],
            }
        )
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {"repeats": a.repeats, "cpu_count": os.cpu_count(), "load_avg": os.getloadavg(), "rows": rows}, indent=2
            )
        )


if __name__ == "__main__":
    main()
