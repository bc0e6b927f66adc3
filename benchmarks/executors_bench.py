"""Executors' wall time and scheduling overhead on a small digits grid (not a timed test).

    python benchmarks/executors_bench.py [--out benchmarks/results-executors.json] [--no-ray]

Runs one digits grid (MLP, 4 epochs, 2 seeds x (full + 2 methods) = 6 cells) as ``prunebench leaderboard``
with ``local --jobs 1``, ``local --jobs 2``, and on a Ray cluster of one and of two single-CPU nodes that
this script starts on 127.0.0.1 (and stops). Each configuration gets a fresh MLflow store, so every cell
trains. Per configuration: wall time of the command, the sum of the cells' own run time (MLflow start to
end), and the scheduling overhead per cell = (wall x workers - sum of run times) / cells: what placing,
starting and collecting a cell costs beyond the run itself (target: under 2 s per cell).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from study_cli import leaderboard, study_toml  # benchmarks/study_cli.py (the same folder)

REPO = Path(__file__).resolve().parents[1]

STUDY = study_toml(
    "exbench",
    [0, 1],
    {"dataset": "digits", "model": "mlp", "epochs": 4, "batch_size": 32, "device": "cpu"},
    ["random-dynamic", "loss-topk"],
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(work: Path, name: str, extra: list[str], env: dict, workers: int) -> dict:
    lb = leaderboard(work / name, STUDY, extra, env=env)
    if lb.proc.returncode != 0:
        return {"error": lb.proc.stderr[-1500:], "wall_s": lb.wall_s}
    runs = lb.runs("exbench")
    run_s = sum((r.info.end_time - r.info.start_time) / 1000 for r in runs)
    return {
        "cells": len(runs),
        "workers": workers,
        "wall_s": lb.wall_s,
        "sum_run_s": run_s,
        "overhead_per_cell_s": (lb.wall_s * workers - run_s) / len(runs),
    }


def ray_nodes(n: int, env: dict, work: Path) -> tuple[str, list[subprocess.Popen]]:
    ray = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    procs = [
        subprocess.Popen(
            [
                ray,
                "start",
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--temp-dir={work / 'ray'}",
                *common,
            ],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    time.sleep(5)
    for _ in range(n - 1):
        procs.append(
            subprocess.Popen(
                [ray, "start", f"--address={address}", *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    for _ in range(120):
        s = subprocess.run([ray, "status", f"--address={address}"], env=env, capture_output=True, text=True).stdout
        if f"0.0/{float(n)} CPU" in s:
            break
        time.sleep(1)
    return address, procs


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results-executors.json"))
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args(argv)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PRUNEBENCH_OFFLINE": "1",
    }
    report: dict = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        report["local-jobs1"] = run(work, "local1", ["--jobs", "1"], env, 1)
        report["local-jobs2"] = run(work, "local2", ["--jobs", "2"], env, 2)
        if not args.no_ray:
            for n in (1, 2):
                address, procs = ray_nodes(n, env, work / f"r{n}")
                try:
                    report[f"ray-{n}-workers"] = run(
                        work, f"ray{n}", ["--executor", "ray", "--ray-address", address], env, n
                    )
                finally:
                    stop(procs)
    for k, v in report.items():
        print(f"{k}: {v}")
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
