"""Seconds of the gradient-based static selectors (pruners/submodular.py, and CRAIG's facility location) at
CIFAR-10 scale on 1 CPU thread, on synthetic last-layer gradients (not a timed test; no training).

    python benchmarks/selectors_bench.py [--classes 1] [--n 5000] [--keep 2500] [--before-k 400] [--before REV]

One class of ``--n`` samples (cnn-small: C = 10 classes, d = 256 embeddings, features [dl/dz, dl/dz (x) e] of
2,570 dimensions), ``--keep`` picks per class (2,500 at p = 0.5; 3,500 at p = 0.3). Per method: seconds per
class, times ``--classes``. With ``--before REV``, that revision's submodular.py (read by ``git show``) runs
side by side with the current one at ``--before-k`` picks (the previous OMP took ~25 min per class at full k),
so the ratio is measured under the same machine load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import types
from pathlib import Path

import torch

from prunebench.pruners import scores as S
from prunebench.pruners import submodular as cur
from prunebench.pruners.coverage import facility_location

REPO = Path(__file__).resolve().parents[1]


def synthetic_class(n: int, c: int, d: int, label: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, c, generator=gen)
    logits[:, label] += 3.0  # mostly right, some confidently wrong: a spread of gradient norms
    probs = torch.softmax(logits, dim=1)
    emb = torch.relu(torch.randn(n, d, generator=gen) + 0.3 * torch.randn(1, d, generator=gen))
    return probs, torch.full((n,), label), emb


def load_revision(rev: str) -> types.ModuleType:
    """The pure functions of ``prunebench/pruners/submodular.py`` as committed at ``rev`` in this repository
    (this repository's own code, as trusted as checking ``rev`` out). ``rev`` must name a commit: it is
    resolved first, so a value starting with ``-`` cannot reach git as an option."""
    if rev.startswith("-"):
        raise SystemExit(f"--before {rev!r}: not a git revision (a commit of this repository, e.g. 86316b1)")
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=REPO, capture_output=True, text=True
    )
    if found.returncode != 0:
        raise SystemExit(f"--before {rev!r}: no such commit in this repository")
    sha = found.stdout.strip()
    src = subprocess.run(
        ["git", "show", f"{sha}:prunebench/pruners/submodular.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    src = src[: src.index("@dataclass(frozen=True)")]  # the pure functions only (no pruner registration)
    mod = types.ModuleType("submodular_before")
    exec(compile(src, f"{rev}:prunebench/pruners/submodular.py", "exec"), mod.__dict__)  # noqa: S102 (our own code)
    return mod


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def methods(mod: types.ModuleType, g, a, feats, k: int) -> dict:
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    return {
        "graphcut": lambda: mod.graph_cut_greedy(g, a, k, 1.0, gen()),
        "logdet": lambda: mod.logdet_greedy(g, a, k, 1e-3, gen()),
        "gradmatch": lambda: mod.gradmatch_select(g, a, k, 0.5, gen()),
        "craig": lambda: facility_location(feats, k, gen()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=1, help="classes to time (the figures are per class x classes)")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--keep", type=int, default=2500)
    ap.add_argument("--before", default=None, help="git revision of the previous submodular.py to compare with")
    ap.add_argument("--before-k", type=int, default=400)
    ap.add_argument("--only", nargs="*", default=["graphcut", "logdet", "gradmatch", "craig"])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res: dict = {"n": args.n, "keep": args.keep, "classes": args.classes, "after_s": {}, "side_by_side": {}}
    data = []
    for c in range(args.classes):
        probs, y, emb = synthetic_class(args.n, 10, 256, c, seed=c)
        g, a = cur.grad_factors(probs, y, emb)
        data.append((g, a, S.last_layer_grad_features(probs, y, emb)))
    if args.before:
        old = load_revision(args.before)
        g, a, feats = data[0]
        for name in args.only:
            if name == "craig":
                continue
            t_old = timed(methods(old, g, a, feats, args.before_k)[name])
            t_new = timed(methods(cur, g, a, feats, args.before_k)[name])
            res["side_by_side"][name] = {
                "k": args.before_k,
                "before_s": t_old,
                "after_s": t_new,
                "ratio": t_old / t_new,
            }
            print(
                f"{name:10s} k={args.before_k}: before {t_old:8.2f} s  after {t_new:7.2f} s  x{t_old / t_new:.1f}",
                flush=True,
            )
    for name in args.only:
        sec = sum(timed(methods(cur, g, a, f, args.keep)[name]) for g, a, f in data)
        res["after_s"][name] = sec
        print(f"{name:10s} k={args.keep} x {args.classes} class(es): {sec:8.2f} s", flush=True)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
