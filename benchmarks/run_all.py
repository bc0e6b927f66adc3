"""prunebench performance benchmarks: prints a table and writes JSON.

    python benchmarks/run_all.py                       # all sections, CIFAR-10 from ../shared/data if present
    python benchmarks/run_all.py --only overhead,savings --n 10000 --out bench.json
    python benchmarks/profile_cpu.py --precision bf16 --channels-last   # where a CPU training step goes

Sections (each a ratio measured side by side in this one process, median of ``--repeats``, with the
compared variants interleaved so drifting machine load hits them alike):

1. overhead   one epoch of ``full`` through the harness vs a minimal hand-written PyTorch loop (same
              model, data tensors, batch size, augmentation, optimizer, schedule): ratio (target <= 1.03).
2. savings    train wall-clock of random-dynamic / orderdp / infobatch at p = 0.3, 0.5, 0.7 relative to
              full data, next to the realized (1 - prune ratio) (target: within 0.03).
3. selection  per-epoch planning time of every epoch-level pruner at N = 1,281,167 (target < 50 ms), and
              ``gamma`` at that N (target < 1 s).
4. static     k-center greedy, herding and facility location keeping half of 50,000 embeddings: Gaussian
              50,000 x 512 (the worst case for k-center's bounds) and, when the score cache holds a
              CIFAR-10 proxy run, its real embeddings; per class and (k-center) globally; seconds.
5. gpu        on CUDA only: images/s of cnn-small and resnet18 on CIFAR-10 through the harness, and the
              fraction of step time spent outside the model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunebench.datasets import TensorData, load_dataset  # noqa: E402
from prunebench.harness import TrainConfig, Trainer  # noqa: E402
from prunebench.harness.augment import augment_batch  # noqa: E402
from prunebench.harness.models import create_model  # noqa: E402
from prunebench.harness.optim import lr_multiplier  # noqa: E402
from prunebench.pruners import create_pruner, get_pruner_class, list_pruners  # noqa: E402
from prunebench.seeding import derive_seed, make_generator  # noqa: E402


def _data(args) -> TensorData:
    root = Path(args.data_dir)
    if (root / "cifar10.npz").exists():
        d = load_dataset("cifar10", root, download=False)
        src = "cifar10"
    else:
        d = load_dataset("synthetic:n=10000,test=1000,classes=10,size=32,channels=3")
        src = "synthetic 32x32"
    if args.n and args.n < d.num_train:
        d = TensorData(
            **{
                **d.__dict__,
                "x_train": d.x_train[: args.n],
                "y_train": d.y_train[: args.n],
                "x_test": d.x_test[:1000],
                "y_test": d.y_test[:1000],
            }
        )
    print(f"# data: {src}, N={d.num_train}, threads={torch.get_num_threads()}", flush=True)
    return d


def _median_time(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Interleave the variants ``repeats`` times; each fn returns its own measured seconds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


# ---------------------------------------------------------------------------------------------------
# 1. harness overhead
# ---------------------------------------------------------------------------------------------------


def _harness_epoch(
    data: TensorData,
    model: str,
    bs: int,
    pruner: str = "full",
    p: float | None = None,
    epochs: int = 1,
    seed: int = 0,
    fast: bool = False,
) -> tuple[float, dict]:
    cfg = TrainConfig(
        dataset="cifar10",
        model=model,
        pruner=pruner,
        prune_ratio=p,
        epochs=epochs,
        batch_size=bs,
        tracking=False,
        eval_every=10**6,
        device="cpu",
        record_kept=False,
        seed=seed,
        precision="bf16" if fast else "fp32",
        channels_last=fast,
    )
    tr = Trainer(cfg, data=data)
    # evaluation is excluded from train_time_s by the harness; measure only the epochs
    tr.config = cfg
    tr.pruner.prepare(tr.context())
    t0 = time.perf_counter()
    for e in range(epochs):
        tr.run_epoch(e)
    dt = time.perf_counter() - t0
    return dt, {"samples_backprop": tr.meter.samples_backprop}


def _handwritten_epoch(data: TensorData, model_name: str, bs: int, seed: int = 0, fast: bool = False) -> float:
    """The minimal loop a practitioner would write: same model, tensors, augmentation, optimizer, LR
    (``fast``: bf16 autocast and channels_last, as the cifar10-cpu study trains)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model"))
        model = create_model(model_name, data.num_classes, data.input_shape)
    if fast:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 * bs / 128, momentum=0.9, nesterov=True, weight_decay=5e-4)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    g = make_generator(seed, "augment")
    x_all, y_all = data.x_train, data.y_train
    n = y_all.numel()
    steps = math.ceil(n / bs)
    t0 = time.perf_counter()
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    model.train()
    for i in range(steps):
        idx = perm[i * bs : (i + 1) * bs]
        x = augment_batch(x_all[idx], data.augment, data.crop_padding, g)
        x = (x.float() / 255.0 - mean) / std
        if fast:
            x = x.contiguous(memory_format=torch.channels_last)
        for grp in opt.param_groups:
            grp["lr"] = 0.1 * bs / 128 * lr_multiplier("onecycle", i / steps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y_all[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def bench_overhead(args, data) -> dict[str, Any]:
    """fp32 (the CPU default) and bf16 + channels_last (the cifar10-cpu recipe; the model is 2.2x
    cheaper there, so the same harness work is a larger fraction of the step)."""
    out = {}
    for mode, fast in (("fp32", False), ("bf16+channels_last", True)):
        res = _median_time(
            {
                "handwritten": lambda: _handwritten_epoch(data, args.model, args.batch_size, fast=fast),
                "harness": lambda: _harness_epoch(data, args.model, args.batch_size, fast=fast)[0],
            },
            args.repeats,
        )
        out[mode] = {
            "handwritten_s": res["handwritten"],
            "harness_s": res["harness"],
            "ratio": res["harness"] / res["handwritten"],
            "target": "<= 1.03",
        }
    return out


# ---------------------------------------------------------------------------------------------------
# 2. savings track the budget
# ---------------------------------------------------------------------------------------------------


def bench_savings(args, data) -> list[dict[str, Any]]:
    rows = []
    epochs = args.savings_epochs
    variants: dict[str, Callable[[], float]] = {}
    realized: dict[str, float] = {}

    def make(pruner, p):
        def fn():
            dt, info = _harness_epoch(data, args.model, args.batch_size, pruner, p, epochs=epochs)
            realized[f"{pruner}@{p}"] = 1 - info["samples_backprop"] / (epochs * data.num_train)
            return dt

        return fn

    variants["full@0"] = make("full", None)
    for pruner in ("random-dynamic", "orderdp", "infobatch"):
        for p in (0.3, 0.5, 0.7):
            variants[f"{pruner}@{p}"] = make(pruner, p)
    times = _median_time(variants, args.savings_repeats)
    full = times.pop("full@0")
    for key, t in times.items():
        pruner, p = key.split("@")
        keep = 1 - realized[key]
        rows.append(
            {
                "pruner": pruner,
                "prune_ratio": float(p),
                "time_ratio": t / full,
                "realized_keep": keep,
                "gap": t / full - keep,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------------
# 3. selection overhead at ImageNet size
# ---------------------------------------------------------------------------------------------------


def bench_selection(args) -> dict[str, Any]:
    from prunebench.pruners import PruneContext
    from prunebench.pruners.orderdp import gamma

    n = 1_281_167
    out: dict[str, Any] = {}
    labels = torch.arange(n) % 1000
    losses = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 5
    for name in list_pruners():
        cls = get_pruner_class(name)
        if cls.granularity != "epoch":
            continue
        p = 0.0 if name == "full" else 0.4
        pr = create_pruner(name, num_samples=n, num_epochs=10, prune_ratio=p, seed=0)
        pr.prepare(PruneContext(labels=labels, num_classes=1000))
        pr.observe(torch.arange(n), losses)
        pr.plan_epoch(1)
        ts = []
        for e in range(args.selection_repeats):
            t0 = time.perf_counter()
            pr.plan_epoch(1 + e % 5)  # epochs 1-5 of 10: InfoBatch prunes there (it anneals from epoch 9)
            ts.append(time.perf_counter() - t0)
        out[name] = statistics.median(ts) * 1000
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        gamma(n, round(0.8 * n), round(0.6 * n))
        ts.append(time.perf_counter() - t0)
    return {"plan_ms": out, "gamma_s": statistics.median(ts), "target": "plan < 50 ms, gamma < 1 s"}


# ---------------------------------------------------------------------------------------------------
# 4. static selection at scale
# ---------------------------------------------------------------------------------------------------


def _cached_cifar_embeddings(args) -> tuple[str, torch.Tensor, torch.Tensor] | None:
    """Penultimate embeddings of a real CIFAR-10 proxy run from the static methods' score cache (the
    newest ``proxy-*.npz`` with 50,000 rows), with the training labels; None if there is none."""
    from prunebench.harness.proxy import default_cache_dir

    files = sorted(default_cache_dir().glob("proxy-*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    root = Path(args.data_dir)
    if not files or not (root / "cifar10.npz").exists():
        return None
    for f in files:
        with np.load(f, allow_pickle=False) as z:
            if "embeddings" in z.files and z["embeddings"].shape[0] == 50_000:
                emb = torch.from_numpy(z["embeddings"]).float()
                labels = load_dataset("cifar10", root, download=False).y_train
                return f"CIFAR-10 embeddings of a cached proxy run, {emb.shape[0]:,} x {emb.shape[1]}", emb, labels
    return None


def bench_static(args) -> dict[str, Any]:
    """Greedy covers keeping half of 50,000 embeddings, as the pruners call them.

    Complexity (n points, k picks, d dims, c classes): k-center greedy O(n k d) worst case, one
    matrix-vector product per pick (the triangle-inequality pruning only skips work on clustered data);
    herding O(n k d), one matrix-vector product per pick; facility location (always per class) O(n^2 d / c)
    for the similarity blocks and O(n^2 / c) memory, plus the lazy re-evaluations. Per class (the
    ``class_balanced`` option; herding's and facility location's default) every cost divides by c for
    k-center and herding and by c^2 for facility location's similarity matrix.
    """
    from prunebench.pruners import coverage
    from prunebench.pruners.rules import class_balanced

    n, d = 50_000, 512
    sets = {
        f"gaussian {n:,} x {d} (worst case)": (
            torch.randn(n, d, generator=torch.Generator().manual_seed(0)),
            torch.arange(n) % 10,
        )
    }
    real = _cached_cifar_embeddings(args)
    if real is not None:
        sets[real[0]] = (real[1], real[2])
    out: dict[str, Any] = {}
    for name, (emb, labels) in sets.items():
        row: dict[str, float] = {}
        k = emb.shape[0] // 2
        for fn_name, modes in (
            ("kcenter_greedy", ("global", "per class")),
            ("herding", ("per class",) + (("global",) if args.static_global else ())),
            ("facility_location", ("per class",)),
        ):
            fn = getattr(coverage, fn_name)
            for mode in modes:
                g = torch.Generator().manual_seed(0)
                t0 = time.perf_counter()
                if mode == "global":
                    fn(emb, k, g)
                else:
                    class_balanced(labels, k, lambda idx, b: idx[_first(fn(emb[idx], b, g))], 10)
                row[f"{fn_name} ({mode})"] = time.perf_counter() - t0
                print(f"   {name}: {fn_name} ({mode}) {row[f'{fn_name} ({mode})']:.1f} s", flush=True)
        out[name] = row
    return out


def _first(r):
    return r[0] if isinstance(r, tuple) else r


# ---------------------------------------------------------------------------------------------------
# 5. GPU path
# ---------------------------------------------------------------------------------------------------


def bench_gpu(args, data) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device"}
    out = {}
    for model in ("cnn-small", "resnet18"):
        for compile_ in (False, True) if args.compile else (False,):
            cfg = TrainConfig(
                dataset="cifar10",
                model=model,
                pruner="full",
                epochs=2,
                batch_size=512,
                tracking=False,
                eval_every=10**6,
                device="cuda",
                record_kept=False,
                compile=compile_,
            )
            tr = Trainer(cfg, data=data)
            tr.pruner.prepare(tr.context())
            tr.run_epoch(0)  # warm-up (cudnn autotune, compile)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            tr.run_epoch(1)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            # model-only time: the same number of steps on pre-gathered inputs
            x = tr.batches.normalize(tr.batches.x_train[: cfg.batch_size])
            y = tr.batches.y_train[: cfg.batch_size]
            steps = math.ceil(data.num_train / cfg.batch_size)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            for _ in range(steps):
                with tr.precision.autocast():
                    logits = tr.step_model(x)
                loss = F.cross_entropy(logits.float(), y)
                tr.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                tr.optimizer.step()
            torch.cuda.synchronize()
            model_only = time.perf_counter() - t1
            out[f"{model}{'+compile' if compile_ else ''}"] = {
                "images_per_s": data.num_train / dt,
                "outside_model_fraction": max(0.0, 1 - model_only / dt),
            }
    return out


# ---------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="overhead,savings,selection,static,gpu")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--n", type=int, default=10000, help="training samples used by overhead/savings (0 = all)")
    ap.add_argument("--model", default="cnn-small")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats of the overhead timings (median)")
    ap.add_argument(
        "--savings-repeats",
        type=int,
        default=9,
        help="interleaved repeats of the savings timings (median; epoch times vary ~10%% on a shared VM)",
    )
    ap.add_argument("--savings-epochs", type=int, default=2)
    ap.add_argument("--selection-repeats", type=int, default=21, help="plan_epoch calls per pruner (median)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile on CUDA")
    ap.add_argument("--static-global", action="store_true", help="also time herding over all 50,000 points at once")
    ap.add_argument("--out", default="benchmarks/results.json")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        }
    }
    data = _data(args) if only & {"overhead", "savings", "gpu"} else None
    if "overhead" in only:
        report["overhead"] = bench_overhead(args, data)
        for mode, r in report["overhead"].items():
            print(
                f"1. overhead ({mode}): harness {r['harness_s']:.2f}s vs hand-written {r['handwritten_s']:.2f}s "
                f"per epoch -> ratio {r['ratio']:.3f} (target <= 1.03)",
                flush=True,
            )
    if "savings" in only:
        rows = report["savings"] = bench_savings(args, data)
        print("2. savings (train time / full time vs realized keep fraction):")
        print(f"   {'pruner':<16}{'p':>5}{'time ratio':>12}{'keep':>8}{'gap':>8}")
        for r in rows:
            print(
                f"   {r['pruner']:<16}{r['prune_ratio']:>5.1f}{r['time_ratio']:>12.3f}{r['realized_keep']:>8.3f}{r['gap']:>+8.3f}"
            )
    if "selection" in only:
        r = report["selection"] = bench_selection(args)
        print("3. selection at N=1,281,167 (median ms per plan_epoch):")
        for k, v in r["plan_ms"].items():
            print(f"   {k:<16}{v:>8.1f} ms")
        print(f"   gamma(n, 0.8n, 0.6n): {r['gamma_s']:.3f} s")
    if "static" in only:
        print("4. static selection keeping half of 50,000 embeddings:")
        report["static"] = bench_static(args)
    if "gpu" in only:
        r = report["gpu"] = bench_gpu(args, data)
        print(f"5. gpu: {json.dumps(r)}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
