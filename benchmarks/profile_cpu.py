"""Profile the harness's CPU training step with ``torch.profiler``: where does an epoch's time go?

    python benchmarks/profile_cpu.py                    # cnn-small, CIFAR-10 (or synthetic), 20 steps
    python benchmarks/profile_cpu.py --precision bf16 --channels-last --steps 40

Prints the operators with the largest self CPU time and splits the step into the model's forward,
backward and optimizer update versus everything else the harness does (index gathers, augmentation,
normalisation, per-sample loss bookkeeping, the pruner's observe).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunebench.datasets import TensorData, load_dataset  # noqa: E402
from prunebench.harness import TrainConfig, Trainer  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--model", default="cnn-small")
    ap.add_argument("--pruner", default="orderdp")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    root = Path(args.data_dir)
    data = (
        load_dataset("cifar10", root, download=False)
        if (root / "cifar10.npz").exists()
        else load_dataset("synthetic:n=10000,test=1000,classes=10,size=32,channels=3")
    )
    n = args.batch_size * args.steps
    data = TensorData(**{**data.__dict__, "x_train": data.x_train[:n], "y_train": data.y_train[:n]})
    cfg = TrainConfig(
        dataset="cifar10",
        model=args.model,
        pruner=args.pruner,
        epochs=3,
        batch_size=args.batch_size,
        tracking=False,
        eval_every=10**6,
        device="cpu",
        record_kept=False,
        precision=args.precision,
        channels_last=args.channels_last,
    )
    tr = Trainer(cfg, data=data)
    tr.pruner.prepare(tr.context())
    tr.run_epoch(0)  # warm-up (oneDNN primitive caches)
    # label the model's own work so the table can tell it from the harness's
    fwd = tr.step_model.forward
    tr.step_model.forward = lambda *a, **k: _labelled("model.forward", fwd, *a, **k)  # noqa: E731
    opt_step = tr.optimizer.step
    tr.optimizer.step = lambda *a, **k: _labelled("optimizer.step", opt_step, *a, **k)  # noqa: E731
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with record_function("epoch"):
            tr.run_epoch(1)
    ev = prof.key_averages()
    total = next(e.cpu_time_total for e in ev if e.key == "epoch")
    part = {k: next((e.cpu_time_total for e in ev if e.key == k), 0.0) for k in ("model.forward", "optimizer.step")}
    # each autograd node's evaluation is one top-level range: their totals add up to the backward pass
    backward = sum(e.cpu_time_total for e in ev if e.key.startswith("autograd::engine::evaluate_function"))
    model = part["model.forward"] + part["optimizer.step"] + backward
    print(
        f"# {args.model}, {args.pruner}, batch {args.batch_size}, {args.steps} steps, {args.precision}"
        f"{', channels_last' if args.channels_last else ''}, threads {torch.get_num_threads()}"
    )
    print(
        f"epoch {total / 1e3:.1f} ms: model forward {part['model.forward'] / total:.1%}, backward "
        f"{backward / total:.1%}, optimizer {part['optimizer.step'] / total:.1%}; "
        f"everything else {max(0.0, 1 - model / total):.1%}"
    )
    print(ev.table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


def _labelled(name, fn, *a, **k):
    with record_function(name):
        return fn(*a, **k)


if __name__ == "__main__":
    raise SystemExit(main())
