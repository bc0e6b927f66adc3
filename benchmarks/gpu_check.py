"""The GPU check behind ``benchmarks/gpu_check.sh`` (run that; it refuses to start without a GPU).

Writes ``benchmarks/results-gpu.json`` after every section, so a run stopped by its time limit keeps
what it measured:

* ``throughput``: images/s of cnn-small and resnet18 on CIFAR-10 through the harness (bf16 autocast,
  channels_last: the CUDA defaults), without and with ``torch.compile``, and the fraction of step time
  outside the model (``benchmarks/run_all.py``'s ``gpu`` section, on the full training set);
* ``leaderboard_cell``: ``prunebench leaderboard`` training one cell (``full``, cnn-small, 2 epochs) on
  CUDA end to end, tracked in MLflow;
* ``two_jobs_one_gpu``: ``--jobs 2 --gpus-per-run 0.5``: two cells at once on one GPU; each worker's
  ``CUDA_VISIBLE_DEVICES`` as its MLflow run recorded it, and both cells FINISHED.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from study_cli import leaderboard, study_toml  # noqa: E402  # benchmarks/study_cli.py (the same folder)

STUDY = study_toml(
    "gpu-check",
    [0],
    {"dataset": "cifar10", "model": "cnn-small", "epochs": 2, "batch_size": 512, "device": "cuda"},
    ["random-dynamic"],
)


def run_leaderboard(work: Path, data_dir: str, extra: list[str], methods: str) -> dict:
    lb = leaderboard(work, STUDY, ["--methods", methods, "--data-dir", data_dir, *extra], timeout=300)
    out = {"command": " ".join(lb.cmd[1:]), "returncode": lb.proc.returncode, "wall_s": lb.wall_s}
    if lb.proc.returncode != 0:
        out["stderr_tail"] = lb.proc.stderr[-2000:]
        return out
    import pandas as pd

    res = pd.read_csv(lb.out / "results.csv")
    out["cells"] = res[["method", "status", "final_acc", "train_time_s", "device"]].to_dict("records")
    out["placement"] = [
        {
            "method": r.data.tags.get("prunebench.method"),
            "status": r.info.status,
            "cuda_visible_devices": r.data.tags.get("prunebench.cuda_visible_devices"),
            "pid": r.data.tags.get("prunebench.pid"),
        }
        for r in lb.runs("gpu-check")
    ]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("PRUNEBENCH_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results-gpu.json"))
    ap.add_argument("--n", type=int, default=0, help="training samples for the throughput section (0 = all 50,000)")
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    import run_all  # benchmarks/run_all.py (the same folder)

    report: dict = {
        "machine": {
            "gpu": torch.cuda.get_device_name(0),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cpu_count": os.cpu_count(),
        }
    }

    def save() -> None:
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))

    t0 = time.perf_counter()
    bench_args = argparse.Namespace(data_dir=args.data_dir, n=args.n, compile=True)
    try:
        data = run_all._data(bench_args)
        report["throughput"] = run_all.bench_gpu(bench_args, data)
    except Exception as e:  # keep going: the other sections say something too
        report["throughput"] = {"error": f"{type(e).__name__}: {e}"}
    report["throughput_s"] = time.perf_counter() - t0
    print(f"throughput: {json.dumps(report['throughput'])}", flush=True)
    save()
    with tempfile.TemporaryDirectory() as d:
        report["leaderboard_cell"] = run_leaderboard(Path(d), args.data_dir, [], "full")
    print(f"leaderboard cell: {json.dumps(report['leaderboard_cell'], default=str)}", flush=True)
    save()
    with tempfile.TemporaryDirectory() as d:
        r = run_leaderboard(Path(d), args.data_dir, ["--jobs", "2", "--gpus-per-run", "0.5"], "full,random-dynamic")
        devs = [p["cuda_visible_devices"] for p in r.get("placement", [])]
        r["same_gpu"] = len(devs) == 2 and devs[0] is not None and devs[0] == devs[1]
        report["two_jobs_one_gpu"] = r
    print(f"two jobs on one GPU: {json.dumps(report['two_jobs_one_gpu'], default=str)}", flush=True)
    report["total_s"] = time.perf_counter() - t0
    save()
    ok = (
        report["leaderboard_cell"]["returncode"] == 0
        and report["two_jobs_one_gpu"]["returncode"] == 0
        and report["two_jobs_one_gpu"]["same_gpu"]
        and "error" not in report["throughput"]
    )
    print(f"# wrote {args.out} ({report['total_s']:.0f} s){'' if ok else '; SOME CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
