"""The pruner contract checks, for plugin authors: the same checks the registry's tests run on every pruner.

>>> from prunebench.testing import check_pruner
>>> check_pruner("loss-topk")  # raises ContractError, naming what is wrong, if the pruner breaks the contract

:func:`check_pruner` runs every check below on one registered pruner (register yours first: import its
file, or ``prunebench --plugin my_pruner.py ...``); each check is also a function of its own:

- :func:`check_plan_is_valid`: ``plan_epoch`` returns a :class:`~prunebench.pruners.Selection` of valid
  indices (and positive weights);
- :func:`check_plan_keeps_state`: planning does not change the pruner's saved state;
- :func:`check_seeding`: same seed, same plan; another seed, another plan;
- :func:`check_global_rng`: neither torch's nor numpy's global RNG is touched;
- :func:`check_resume`: *killed and resumed equals uninterrupted*: a pruner trained for some epochs,
  saved with ``state_dict`` through the checkpoint format (``torch.load(weights_only=True)``) and loaded into
  a fresh pruner (as ``prunebench run --resume`` does: no second ``prepare``) plans and selects every later
  epoch exactly as one that was never interrupted.

The training they drive is simulated (no model): per-sample losses and logits are fixed pseudo-random
tables indexed by (epoch, sample), so a pruner's plans depend only on its own state and generator. Static
pruners get a real proxy run on a tiny synthetic dataset (an MLP, CPU, a few seconds).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from prunebench.pruners import (
    BatchPruner,
    CandidateBatch,
    ProxyRequest,
    PruneContext,
    Pruner,
    Selection,
    create_pruner,
    get_pruner_class,
)

__all__ = [
    "ContractError",
    "check_global_rng",
    "check_plan_is_valid",
    "check_plan_keeps_state",
    "check_pruner",
    "check_resume",
    "check_seeding",
    "default_context",
]

NUM_SAMPLES, NUM_EPOCHS, NUM_CLASSES, BATCH_SIZE = 200, 6, 4, 32


class ContractError(AssertionError):
    """A pruner breaks the contract; the message says which check, what differs and what to do."""


ContextFactory = Callable[[int], PruneContext]
_CONTEXTS: dict[int, PruneContext] = {}


def default_context(num_samples: int = NUM_SAMPLES) -> PruneContext:
    """A :class:`PruneContext` over ``synthetic:n=<num_samples>`` with a real proxy run (an MLP on the
    CPU, no disk cache; proxy records memoised per request in this process)."""
    if num_samples not in _CONTEXTS:
        from prunebench.datasets import load_dataset
        from prunebench.harness.config import TrainConfig
        from prunebench.harness.loop import prune_context

        name = f"synthetic:n={num_samples}"
        cfg = TrainConfig.from_dict(
            dict(dataset=name, model="mlp", batch_size=64, tracking=False, score_cache=None, device="cpu")
        )
        ctx, runner = prune_context(cfg, load_dataset(name), torch.device("cpu"))
        memo: dict[tuple[Any, ...], dict[str, Any]] = {}

        def proxy(req: ProxyRequest, runner: Callable[[ProxyRequest], dict[str, Any]] = runner) -> dict[str, Any]:
            key = req.token()
            if key not in memo:
                memo[key] = runner(req)
            return memo[key]

        ctx.proxy = proxy
        _CONTEXTS[num_samples] = ctx
    return _CONTEXTS[num_samples]


@dataclass(frozen=True)
class _Setup:
    """One pruner configuration the checks create (fresh) instances of."""

    name: str
    options: dict[str, Any]
    num_samples: int
    num_epochs: int
    prune_ratio: float | None
    context: ContextFactory

    def make(self, seed: int = 0, prepare: bool = True) -> Pruner:
        p = create_pruner(
            self.name,
            num_samples=self.num_samples,
            num_epochs=self.num_epochs,
            prune_ratio=self.prune_ratio,
            seed=seed,
            **self.options,
        )
        if prepare:
            p.prepare(self.context(self.num_samples))
        return p


def _setup(
    name: str,
    options: dict[str, Any] | None,
    num_samples: int,
    num_epochs: int,
    prune_ratio: float | None,
    context: ContextFactory | None,
) -> _Setup:
    get_pruner_class(name)  # an unknown name fails here, naming the registered ones
    return _Setup(name, dict(options or {}), num_samples, num_epochs, prune_ratio, context or default_context)


class Check(Protocol):
    """A contract check: run on the registered pruner ``name`` (with ``options``, e.g. a mandatory one, on
    ``num_samples`` samples for ``num_epochs`` epochs, at ``prune_ratio``, default the pruner's own, with
    ``context(num_samples)`` as its :class:`PruneContext`, default :func:`default_context`); raises
    :class:`ContractError` naming what is wrong."""

    def __call__(
        self,
        name: str,
        *,
        options: dict[str, Any] | None = None,
        num_samples: int = NUM_SAMPLES,
        num_epochs: int = NUM_EPOCHS,
        prune_ratio: float | None = None,
        context: ContextFactory | None = None,
    ) -> None: ...


def _pruner_check(body: Callable[[_Setup], None]) -> Check:
    """The public form (:class:`Check`) of a check written on one pruner configuration."""

    def check(
        name: str,
        *,
        options: dict[str, Any] | None = None,
        num_samples: int = NUM_SAMPLES,
        num_epochs: int = NUM_EPOCHS,
        prune_ratio: float | None = None,
        context: ContextFactory | None = None,
    ) -> None:
        body(_setup(name, options, num_samples, num_epochs, prune_ratio, context))

    check.__name__, check.__qualname__, check.__doc__ = body.__name__, body.__qualname__, body.__doc__
    return check


# --------------------------------------------------------------------------------------------------
# simulated training
# --------------------------------------------------------------------------------------------------


class _Losses:
    """Fixed pseudo-random training losses, candidate losses and logits per (epoch, sample)."""

    def __init__(self, num_samples: int, num_epochs: int, labels: torch.Tensor, num_classes: int) -> None:
        g = torch.Generator().manual_seed(20260101)
        self.train = torch.rand(num_epochs, num_samples, generator=g) * 3.0
        self.fresh = torch.rand(num_epochs, num_samples, generator=g) * 3.0
        self.logits = torch.randn(num_epochs, num_samples, num_classes, generator=g)
        self.labels = labels.long()


def _simulate(p: Pruner, epochs: range, losses: _Losses, batch_size: int = BATCH_SIZE) -> list[list[Any]]:
    """Drive ``p`` through ``epochs`` as the loop does; returns per epoch what it decided (plan, then every
    batch selection)."""
    trace = []
    for e in epochs:
        sel = p.plan_epoch(e)
        decisions: list[Any] = [("plan", sel.indices.clone(), None if sel.weights is None else sel.weights.clone())]
        if isinstance(p, BatchPruner):
            chunk = p.candidate_batch_size(batch_size)
            for i in range(0, sel.indices.numel(), chunk):
                idx = sel.indices[i : i + chunk]
                bs = p.select_batch(
                    CandidateBatch(idx, losses.fresh[e, idx], losses.logits[e, idx], losses.labels[idx], batch_size)
                )
                decisions.append(("batch", bs.keep.clone(), None if bs.weights is None else bs.weights.clone()))
                kept = idx[bs.keep]
                p.observe(kept, losses.train[e, kept])
        else:
            for i in range(0, sel.indices.numel(), batch_size):
                idx = sel.indices[i : i + batch_size]
                p.observe(idx, losses.train[e, idx])
                _observe_predictions(p, idx, losses.logits[e, idx], losses.labels[idx])
        refresh = p.refresh_indices(e)
        if refresh is not None:
            decisions.append(("refresh", refresh.clone(), None))
            for i in range(0, refresh.numel(), batch_size):
                idx = refresh[i : i + batch_size]
                p.observe(idx, losses.fresh[e, idx])
                _observe_predictions(p, idx, losses.logits[e, idx], losses.labels[idx])
        p.epoch_end(e)
        trace.append(decisions)
    return trace


def _observe_predictions(p: Pruner, idx: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """The loop's ``observe_predictions`` call (only for pruners that declare ``observes_predictions``)."""
    if p.observes_predictions:
        conf, pred = torch.softmax(logits, dim=1).max(dim=1)
        p.observe_predictions(idx, conf, pred == labels)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a.cpu(), b.cpu()))
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    try:
        return bool(a == b)
    except Exception:  # objects without a usable ==: compared by identity
        return a is b


def _first_difference(ref: list[list[Any]], got: list[list[Any]], first_epoch: int) -> str | None:
    for e, (r, g) in enumerate(zip(ref, got), first_epoch):
        for k, (x, y) in enumerate(zip(r, g)):
            if not all(_same(u, v) for u, v in zip(x, y)):
                if x[0] == "refresh":
                    return f"epoch {e}'s refresh_indices"
                return f"epoch {e}'s plan" if k == 0 else f"epoch {e}'s selection in candidate batch {k - 1}"
        if len(r) != len(g):
            return f"epoch {e}'s number of candidate batches"
    return None


def _round_trip(state: dict[str, Any], who: str) -> dict[str, Any]:
    """``state`` through the checkpoint format: saved, then loaded with ``weights_only=True``."""
    from prunebench.harness.checkpoint import from_safe, to_safe

    buf = io.BytesIO()
    try:
        torch.save(to_safe(state), buf)
        buf.seek(0)
        loaded: dict[str, Any] = from_safe(torch.load(buf, weights_only=True))
        return loaded
    except Exception as e:
        raise ContractError(
            f"{who}: its state_dict() cannot go into a checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            f"checkpoints load with torch.load(weights_only=True), which never runs code: keep the state in "
            f"tensors, numpy arrays, numbers, strings and lists/dicts/tuples of them"
        ) from None


def _unsaved_differences(saved: Pruner, resumed: Pruner, state: dict[str, Any]) -> list[str]:
    """Attributes of the pruner that wrote the checkpoint which the resumed one does not have equally."""
    out = []
    for k, v in vars(saved).items():
        if k in ("generator", "context", "options"):
            continue
        if k not in vars(resumed) or not _same(v, vars(resumed)[k]):
            saved_as = "saved" if k in state else "not in state_dict()"
            out.append(f"{k} ({type(v).__name__}, {saved_as})")
    return out


# --------------------------------------------------------------------------------------------------
# the checks
# --------------------------------------------------------------------------------------------------


def check_resume(
    name: str,
    *,
    options: dict[str, Any] | None = None,
    num_samples: int = NUM_SAMPLES,
    num_epochs: int = NUM_EPOCHS,
    prune_ratio: float | None = None,
    context: ContextFactory | None = None,
    kill_after: int | None = None,
) -> None:
    """Killed and resumed equals uninterrupted.

    One pruner is trained (simulated) for ``num_epochs``; another is killed after epoch ``kill_after``
    (default: the middle), its ``state_dict`` round-tripped through the checkpoint format and loaded into a
    third, freshly created one (``prepare`` not called again, the context set, as on ``--resume``), which
    trains the remaining epochs. Every later plan and batch selection, and the final state, must be equal.
    """
    s = _setup(name, options, num_samples, num_epochs, prune_ratio, context)
    ctx = s.context(num_samples)
    k = num_epochs // 2 - 1 if kill_after is None else int(kill_after)
    if not 0 <= k < num_epochs - 1:
        raise ValueError(f"kill_after must be in [0, {num_epochs - 2}], got {k}")
    losses = _Losses(num_samples, num_epochs, ctx.labels, ctx.num_classes)
    ref = s.make()
    ref_trace = _simulate(ref, range(num_epochs), losses)

    killed = s.make()
    _simulate(killed, range(k + 1), losses)
    who = f"pruner {name!r}"
    resumed, state = _resumed(s, killed, ctx, who)
    unsaved = _unsaved_differences(killed, resumed, state)
    trace = _simulate(resumed, range(k + 1, num_epochs), losses)

    where = _first_difference(ref_trace[k + 1 :], trace, k + 1)
    if where is None:
        a, b = _round_trip(ref.state_dict(), who), _round_trip(resumed.state_dict(), who)
        if not _same(a, b):
            keys = sorted(x for x in a.keys() | b.keys() if not _same(a.get(x), b.get(x)))
            where = f"the final state ({', '.join(keys)})"
    if where is None:
        return
    why = (
        f"attributes that differ right after load_state_dict: {'; '.join(unsaved)}"
        if unsaved
        else "no attribute differs right after load_state_dict (is state kept outside the pruner: a module "
        "global, a class attribute, the context?)"
    )
    raise ContractError(
        f"{who} is not resumable: killed after epoch {k} and resumed from its checkpoint, it differs from an "
        f"uninterrupted run in {where}; {why}. The default state_dict() saves the generator and every tensor "
        f"and numpy-array attribute: name other state (a counter, a list, a dict) in state_attrs, keep it in "
        f"a tensor, or override state_dict()/load_state_dict()"
    )


def _resumed(s: _Setup, killed: Pruner, ctx: PruneContext, who: str) -> tuple[Pruner, dict[str, Any]]:
    """A fresh pruner (``prepare`` not called, the context set) loaded from ``killed``'s state after a
    round trip through the checkpoint format, as on ``--resume``; and that state."""
    state = _round_trip(killed.state_dict(), who)
    resumed = s.make(prepare=False)
    resumed.context = ctx
    try:
        resumed.load_state_dict(state)
    except Exception as e:
        raise ContractError(
            f"{who}: load_state_dict() failed on what its state_dict() saved "
            f"({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    return resumed, state


@_pruner_check
def check_plan_is_valid(s: _Setup) -> None:
    """``plan_epoch`` returns a non-empty :class:`Selection` of indices in ``[0, N)`` with positive weights."""
    p = s.make()
    g = torch.Generator().manual_seed(0)
    for epoch in range(2):
        sel = p.plan_epoch(epoch)
        at = f"pruner {s.name!r}: plan_epoch({epoch})"
        if not isinstance(sel, Selection):
            raise ContractError(f"{at} returned {type(sel).__name__}, not a Selection")
        if sel.indices.numel() == 0:
            raise ContractError(f"{at} selected no sample")
        lo, hi = int(sel.indices.min()), int(sel.indices.max())
        if lo < 0 or hi >= s.num_samples:
            raise ContractError(f"{at} selected index {lo if lo < 0 else hi}, outside [0, {s.num_samples})")
        if sel.weights is not None and not bool(torch.all(sel.weights > 0)):
            raise ContractError(f"{at} returned a weight <= 0")
        n = min(50, sel.indices.numel())
        p.observe(sel.indices[:n], torch.rand(n, generator=g))


@_pruner_check
def check_plan_keeps_state(s: _Setup) -> None:
    """Planning an epoch changes no saved state but the generator (a plan is a decision, not an update)."""
    p = s.make()
    p.observe(torch.arange(s.num_samples), torch.rand(s.num_samples, generator=torch.Generator().manual_seed(1)))
    before = {k: v for k, v in p.state_dict().items() if k != "generator"}
    p.plan_epoch(1)
    after = {k: v for k, v in p.state_dict().items() if k != "generator"}
    changed = sorted(k for k in before.keys() | after.keys() if not _same(before.get(k), after.get(k)))
    if changed:
        raise ContractError(
            f"pruner {s.name!r}: plan_epoch(1) changed its state {', '.join(changed)}; update state "
            f"in observe() or epoch_end(), plan from it in plan_epoch()"
        )


@_pruner_check
def check_seeding(s: _Setup) -> None:
    """Same seed, same plan; another seed, another plan (at least another order)."""
    a, b, c = (s.make(seed=seed).plan_epoch(0).indices for seed in (3, 3, 4))
    if not torch.equal(a, b):
        raise ContractError(
            f"pruner {s.name!r}: two pruners with seed 3 planned epoch 0 differently; draw only from self.generator"
        )
    if torch.equal(a, c):
        raise ContractError(
            f"pruner {s.name!r}: seeds 3 and 4 planned the same epoch 0 (same samples, same order); "
            f"draw the order from self.generator"
        )


@_pruner_check
def check_global_rng(s: _Setup) -> None:
    """Creating, preparing, planning, observing and selecting leave torch's and numpy's global RNG alone."""
    ctx = s.context(s.num_samples)  # the proxy run, if any, is the harness's business: outside the check
    with torch.random.fork_rng(devices=[]):
        saved_np = np.random.get_state()
        try:
            torch.manual_seed(123)
            np.random.seed(123)
            t_state, n_state = torch.get_rng_state(), np.random.get_state()[1].copy()  # type: ignore[index]  # the legacy state is a tuple
            losses = _Losses(s.num_samples, s.num_epochs, ctx.labels, ctx.num_classes)
            _simulate(s.make(), range(2), losses)
            touched = [
                what
                for what, same in (
                    ("torch", torch.equal(torch.get_rng_state(), t_state)),
                    ("numpy", np.array_equal(np.random.get_state()[1], n_state)),  # type: ignore[index]  # the legacy state is a tuple
                )
                if not same
            ]
        finally:
            np.random.set_state(saved_np)
    if touched:
        raise ContractError(
            f"pruner {s.name!r} drew from (or reseeded) the global {' and '.join(touched)} RNG; "
            f"draw only from self.generator"
        )


CHECKS: tuple[Check, ...] = (check_plan_is_valid, check_plan_keeps_state, check_seeding, check_global_rng, check_resume)


@_pruner_check
def check_pruner(s: _Setup) -> None:
    """Run every contract check on the registered pruner ``name`` (with ``options``, e.g. a mandatory one);
    raises :class:`ContractError` at the first failure."""
    for check in CHECKS:
        check(
            s.name,
            options=s.options,
            num_samples=s.num_samples,
            num_epochs=s.num_epochs,
            prune_ratio=s.prune_ratio,
            context=s.context,
        )
