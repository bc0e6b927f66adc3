"""The pruner contract, the registry and option validation.

A pruner only *plans* (which samples to train on, in which order, with which loss weights) and
*observes* (the detached per-sample losses of the samples just trained on). The training loop owns the
model, the optimizer, the data and the loss; a pruner never calls ``backward``, never touches the global
RNG and never imports the harness.

Granularities
-------------
``static``  plans once (after :meth:`Pruner.prepare`), every epoch trains on the same subset.
``epoch``   plans anew at the start of every epoch from what it observed so far.
``batch``   :meth:`Pruner.plan_epoch` yields the *candidate* stream; for every candidate batch the loop
            runs a no-grad forward pass and calls :meth:`BatchPruner.select_batch` with the fresh losses,
            which returns the kept subset (and weights). Kept samples accumulate into full backprop
            batches. The candidate forward passes are counted as cost.

Hooks
-----
Everything the harness, the studies and the reports may ask of a pruner is a method or attribute declared
on :class:`Pruner` with a default, so a plugin overrides only what it has (nothing probes with ``hasattr``):

======================================  ==========================================================================
hook                                    default
======================================  ==========================================================================
``state_dict`` / ``load_state_dict``    state for checkpoints: the pruner's generator and every tensor and
                                        numpy array attribute, plus the names in ``state_attrs``
``artifacts()``                         arrays logged with the run (static methods: scores, kept indices): ``{}``
``plan_scores()``                       per-sample scores the next plan ranks by, for the reports' rank plots:
                                        ``None``
``rank_keep_probability(...)``          predicted keep probability per score rank, drawn by the report's
                                        keep-by-rank section: ``None``
``option_range(option, prune_ratio)``   sweepable options whose range depends on the prune ratio: ``None``;
                                        ``range_labels`` names the range's ends on figures: ``{}``
``lr_scale(epoch)``                     factor on the schedule's learning rate for every step of ``epoch``, asked
                                        right after ``plan_epoch(epoch)`` (e.g. KAKURENBO's ``1/(1-F_e)``):
                                        ``1.0`` (the loop logs it as the ``lr_scale`` metric)
``observe_predictions(...)``            per trained (and refreshed) sample the softmax confidence and whether
                                        the prediction was correct, called after :meth:`Pruner.observe` only
                                        when ``observes_predictions`` is true: ``False``, nothing called
``refresh_indices(epoch)``              samples the loop forwards without gradients after the epoch's last
                                        step, handing their losses (and predictions) to ``observe``; counted
                                        as forward passes: ``None``
======================================  ==========================================================================

``prunebench.testing.check_pruner`` runs the registry's contract checks (killed-and-resumed equals
uninterrupted among them) against one pruner.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.options import build_options, fmt_value
from prunebench.seeding import make_generator

GRANULARITIES = ("static", "epoch", "batch")
#: what a method may spend besides training on its kept samples (``Pruner.cost_profile``): a proxy run on
#: full data, no-grad forward passes over candidates, a model trained on a holdout split, extra
#: backward passes (e.g. per-sample gradients)
COST_PROFILE_ITEMS = ("proxy run", "extra forwards", "holdout model", "extra backwards")


@dataclass(frozen=True)
class Selection:
    """What one epoch trains on.

    Attributes
    ----------
    indices : 1-D int64 tensor of dataset indices, in training order (may repeat for methods that
        sample with replacement).
    weights : ``None`` (plain mean loss) or a float tensor aligned with ``indices``; the loop multiplies
        each per-sample loss by its weight before taking the mean.
    """

    indices: torch.Tensor
    weights: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.indices.dim() != 1 or self.indices.dtype != torch.int64:
            raise ValueError("Selection.indices must be a 1-D int64 tensor")
        if self.weights is not None and self.weights.shape != self.indices.shape:
            raise ValueError("Selection.weights must align with Selection.indices")


@dataclass(frozen=True)
class CandidateBatch:
    """Fresh information on one candidate batch, handed to :meth:`BatchPruner.select_batch`.

    ``losses`` and ``logits`` come from a no-grad forward pass at the current parameters on the same
    (augmented) inputs that will be trained on.
    """

    indices: torch.Tensor  # int64 [b] dataset indices
    losses: torch.Tensor  # float [b] per-sample training losses (label smoothing included)
    logits: torch.Tensor  # float [b, C]
    targets: torch.Tensor  # int64 [b]
    batch_size: int  # the backprop batch size the loop accumulates to
    label_smoothing: float = 0.0  # of the training loss (methods using its gradient w.r.t. the logits need it)


@dataclass(frozen=True)
class BatchSelection:
    """Positions (into the candidate batch) to backpropagate, with optional loss weights."""

    keep: torch.Tensor  # int64 positions, may repeat (sampling with replacement)
    weights: torch.Tensor | None = None


@dataclass
class ProxyRequest:
    """What a method asks the harness's proxy run to record (see the static-methods docs).

    ``train_on`` trains the proxy on those dataset indices only (a holdout split, e.g. RHO-LOSS's
    irreducible-loss model); its records still cover every training sample. ``deepfool_max_iter`` caps the
    DeepFool iterations of the ``deepfool_norm`` record. Both enter the proxy's cache key only when used, so
    the keys of plain requests are those of before they existed.
    """

    epochs: int
    seeds: tuple[int, ...] = (0,)
    model: str | None = None
    record: tuple[str, ...] = ()
    train_on: torch.Tensor | None = None
    deepfool_max_iter: int = 50

    def train_on_digest(self) -> str | None:
        """A digest of ``train_on`` (sorted int64 indices), or ``None`` when the proxy trains on all samples."""
        if self.train_on is None:
            return None
        idx = np.sort(self.train_on.detach().cpu().numpy().astype(np.int64))
        return hashlib.sha256(idx.tobytes()).hexdigest()[:24]

    def token(self) -> tuple[Any, ...]:
        """A hashable identity of the request (what it would compute), for memos of its records."""
        return (
            self.epochs,
            tuple(self.seeds),
            self.model,
            tuple(self.record),
            self.train_on_digest(),
            self.deepfool_max_iter if "deepfool_norm" in self.record else None,
        )


@dataclass
class PruneContext:
    """Everything a pruner may know about the data, handed in by the loop before training.

    Attributes
    ----------
    labels : int64 tensor [N] of training labels (CPU).
    num_classes : number of classes.
    proxy : for static methods, a function running the shared proxy-training phase
        (``proxy(ProxyRequest) -> dict of records``); ``None`` where no proxy run is possible.
    cache_dir : where expensive scores may be cached (``None`` disables caching).
    """

    labels: torch.Tensor
    num_classes: int
    proxy: Callable[[ProxyRequest], dict[str, Any]] | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class NoOptions:
    """A pruner without options of its own."""


# --------------------------------------------------------------------------------------------------
# The pruner base classes
# --------------------------------------------------------------------------------------------------


class Pruner:
    """Base class of every pruner.

    Parameters
    ----------
    num_samples : N, the training-set size.
    num_epochs : planned epochs of the run.
    prune_ratio : target fraction p of sample-visits skipped per epoch; the kept count is
        ``q = round((1 - p) * N)``.
    seed : run seed; the pruner draws only from its own generator derived from it.
    options : the method's frozen options dataclass (see :func:`create_pruner`).
    """

    name: ClassVar[str] = ""
    granularity: ClassVar[str] = "epoch"
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    default_prune_ratio: ClassVar[float] = 0.4
    #: hook (sweepable options): names for the two ends of an option's :meth:`option_range`, drawn on
    #: sweep figures, e.g. {"candidate_ratio": ("uniform = random-dynamic", "greedy = loss-topk")}
    range_labels: ClassVar[dict[str, tuple[str, str]]] = {}
    #: short names used in labels, e.g. {"candidate_ratio": "c"}
    short_names: ClassVar[dict[str, str]] = {}
    #: method-table metadata (docs/methods-table.md, ``prunebench list --long``): the method's family (e.g.
    #: "score ranking", "coverage", "submodular", "gradient matching", "uncertainty", "random", "loss-based",
    #: "bandit", "importance sampling", "curriculum"), its paper ("Authors, Venue Year: title"), what it
    #: spends besides training on the kept samples (items of COST_PROFILE_ITEMS; empty: nothing), whether
    #: it trains with per-sample loss weights, and where its option defaults come from
    family: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    cost_profile: ClassVar[tuple[str, ...]] = ()
    uses_weights: ClassVar[bool] = False
    defaults_source: ClassVar[str] = ""
    #: hook: whether the loop hands :meth:`observe_predictions` each observed sample's softmax confidence and
    #: correctness (off by default: the hot path then computes nothing)
    observes_predictions: ClassVar[bool] = False
    #: attributes saved in checkpoints besides the default ones (every tensor and numpy array attribute,
    #: see :meth:`state_dict`): e.g. a step counter or a list of floats
    state_attrs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, num_samples: int, num_epochs: int, prune_ratio: float, seed: int, options: Any) -> None:
        self.num_samples = int(num_samples)
        self.num_epochs = int(num_epochs)
        self.prune_ratio = float(prune_ratio)
        self.seed = int(seed)
        self.options = options
        self.generator = make_generator(self.seed, f"pruner/{self.name}")
        self.context: PruneContext | None = None

    @classmethod
    def option_range(cls, option: str, prune_ratio: float) -> tuple[float, float] | None:
        """Hook (sweepable options): the valid ``(low, high)`` of a numeric option when it depends on the
        prune ratio, else ``None``.

        Sweeps use it to search such an option by its position in the range (``relative = true``), e.g.
        OrderDP's ``candidate_ratio`` in ``[1 - p, 1]`` while ``p`` varies too.
        """
        return None

    # -- contract -----------------------------------------------------------------------------------
    @property
    def keep_count(self) -> int:
        """q = round((1 - p) N), the number of sample-visits kept per epoch."""
        return keep_count(self.num_samples, self.prune_ratio)

    def prepare(self, context: PruneContext) -> None:
        """Called once by the loop before training; static methods score and select here."""
        self.context = context

    def plan_epoch(self, epoch: int) -> Selection:  # pragma: no cover - abstract
        raise NotImplementedError

    def observe(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Record detached per-sample losses of samples just trained on (default: ignore)."""

    def epoch_end(self, epoch: int) -> None:
        """Called by the loop after the last step of ``epoch`` (and its :meth:`refresh_indices` forwards);
        default: nothing."""

    # -- hooks: what the loop does for a pruner besides training its plan ---------------------------------
    def lr_scale(self, epoch: int) -> float:
        """Hook: the factor on the schedule's learning rate for every step of ``epoch`` (default ``1.0``,
        which leaves a run bitwise unchanged).

        The loop asks right after :meth:`plan_epoch` of the same epoch, so the factor may depend on the plan;
        it must be a function of the pruner's saved state (a run resumed at that epoch asks again)."""
        return 1.0

    def observe_predictions(self, indices: torch.Tensor, confidence: torch.Tensor, correct: torch.Tensor) -> None:
        """Hook, called only when ``observes_predictions`` is true, right after :meth:`observe` with the same
        ``indices``: ``confidence`` (float, the largest softmax probability of the logits the losses came
        from) and ``correct`` (bool, whether its class is the label). Default: ignore."""

    def refresh_indices(self, epoch: int) -> torch.Tensor | None:
        """Hook: dataset indices (1-D int64) the loop forwards without gradients after the last step of
        ``epoch``, in batches, calling :meth:`observe` (and :meth:`observe_predictions`) with their fresh
        losses, before :meth:`epoch_end`. They count as forward passes (``samples_forward``). Default
        ``None``: nothing."""
        return None

    # -- naming ---------------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """Deterministic run label, e.g. ``orderdp[c=0.8,p=0.4]``."""
        parts = []
        for f in dataclasses.fields(self.options):
            parts.append(f"{self.short_names.get(f.name, f.name)}={fmt_value(getattr(self.options, f.name))}")
        parts.append(f"p={fmt_value(self.prune_ratio)}")
        return f"{self.name}[{','.join(parts)}]"

    def params(self) -> dict[str, Any]:
        """Flat dict of the method's resolved options (for the result row)."""
        return {f"pruner.{k}": v for k, v in dataclasses.asdict(self.options).items()}

    # -- hooks: state for checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The pruner's state for a checkpoint: its generator and every attribute holding a tensor or a numpy
        array (tensors copied to the CPU), plus the attributes named in ``state_attrs`` (state of other types:
        a step counter, a list of floats; it must load with ``torch.load(weights_only=True)``, so tensors,
        numbers, strings and lists/dicts/tuples of them, no objects).

        Python numbers, lists, dicts and objects that change during training are *not* saved unless named
        in ``state_attrs`` (or saved by an override of this method and :meth:`load_state_dict`);
        ``prunebench.testing.check_pruner`` fails a pruner whose resumed run differs and names them.
        """
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        for attr, v in vars(self).items():
            if attr in _NOT_STATE:
                continue
            if attr in self.state_attrs or _is_state_value(v):
                state[attr] = v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
        for attr in self.state_attrs:
            if attr not in state:  # e.g. a class-level default such as ``subset = None`` before prepare()
                v = getattr(self, attr)
                state[attr] = v.detach().cpu().clone() if isinstance(v, torch.Tensor) else v
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a freshly created pruner (its ``prepare`` is not called on resume).

        Names of ``state_attrs`` must be present; other saved attributes are restored when present (a
        checkpoint of an older version may lack some), and only as instance attributes: a saved name that
        is one of the class's methods, properties or nested classes is refused.
        """
        self.generator.set_state(state["generator"])
        for attr in self.state_attrs:
            if attr not in state:
                raise KeyError(f"pruner {self.name!r}: the checkpoint lacks its state {attr!r}")
        for attr, v in state.items():
            if attr == "generator" or attr in _NOT_STATE:
                continue
            if not attr.isidentifier() or attr.startswith("__") or _class_behaviour(type(self), attr):
                raise ValueError(f"pruner {self.name!r}: the checkpoint's state {attr!r} is not an attribute name")
            cur = vars(self).get(attr)
            if isinstance(cur, torch.Tensor) and isinstance(v, torch.Tensor):
                v = v.to(cur.device)
            setattr(self, attr, v)

    # -- hooks: what the harness logs and the reports draw ------------------------------------------------
    def artifacts(self) -> dict[str, Any]:
        """Arrays logged with the run as ``static_<key>.npy`` (numpy arrays; static methods: ``scores``,
        ``kept_indices``, ...); ``prunebench export-scores`` writes them. Default: none."""
        return {}

    def plan_scores(self) -> torch.Tensor | None:
        """The per-sample scores (float, [N], on the CPU) the next :meth:`plan_epoch` ranks by, or ``None``.

        The loop copies them at a few epochs (outside the clock) so reports can rank samples as the pruner
        did (e.g. the keep-by-rank figure). Read-only: do not modify the returned tensor."""
        return None

    @classmethod
    def rank_keep_probability(cls, num_samples: int, prune_ratio: float, options: dict[str, Any]) -> np.ndarray | None:
        """The probability that one epoch's plan keeps the sample whose :meth:`plan_scores` has rank
        ``j = 1..N`` (1 = largest), or ``None`` (no prediction).

        ``options`` holds the run's options by name (as logged in the results table). A method declaring it
        gets the report's keep-by-rank section: the prediction against the keep frequency its runs realized.
        """
        return None

    # -- helpers ------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label} N={self.num_samples}>"


class BatchPruner(Pruner):
    """A pruner that selects within each candidate batch from fresh no-grad losses."""

    granularity: ClassVar[str] = "batch"

    @property
    def bn_stats(self) -> str:
        """Whose BatchNorm batch statistics the backprop step normalises with: ``"kept"`` (the kept samples'
        own forward) or ``"candidates"`` (the candidate batch's; the loop then takes one step per candidate
        batch). A request to the loop, which owns the model (see ``harness/batchnorm.py``)."""
        return "kept"

    def candidate_batch_size(self, batch_size: int) -> int:
        """Candidates forwarded per step to fill a backprop batch of ``batch_size``."""
        return batch_size

    def select_batch(self, batch: CandidateBatch) -> BatchSelection:  # pragma: no cover - abstract
        raise NotImplementedError


# attributes every pruner has that are not state (``generator`` is saved by its own key)
_NOT_STATE = frozenset({"generator", "context", "options"})


def _is_state_value(v: Any) -> bool:
    """What :meth:`Pruner.state_dict` saves by default: tensors and numpy arrays (numbers and flags are often
    per-epoch modes that ``plan_epoch`` sets; a counter that is state goes into ``state_attrs``)."""
    return isinstance(v, (torch.Tensor, np.ndarray))


def _class_behaviour(cls: type, name: str) -> bool:
    """Whether ``name`` is a method, property or other descriptor of ``cls`` (never overwritten by state)."""
    for c in cls.__mro__:
        if name in vars(c):
            m = vars(c)[name]
            return inspect.isroutine(m) or isinstance(m, (property, classmethod, staticmethod, type))
    return False


def keep_count(num_samples: int, prune_ratio: float) -> int:
    """``q = round((1 - p) N)`` (Python's round-half-even on the exact product)."""
    return int(round((1.0 - prune_ratio) * num_samples))


class LossScores:
    """Mixin: a per-sample score tensor set to the most recent observed loss (stale when not trained).

    The scores live on the device of the losses (moved lazily on the first :meth:`observe`), so the hot
    path never synchronises; :meth:`scores_cpu` brings them to the CPU once per epoch for planning.
    """

    initial_score: ClassVar[float] = 3.0
    scores: torch.Tensor

    def _init_scores(self, n: int, value: float) -> None:
        self.scores = torch.full((n,), float(value), dtype=torch.float32)

    def observe(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        if self.scores.device != losses.device:
            self.scores = self.scores.to(losses.device)
        self.scores[indices.to(losses.device)] = losses.detach().float()

    def scores_cpu(self) -> torch.Tensor:
        """The scores on the CPU: a copy from an accelerator, the tensor itself on the CPU (read it, do not
        modify it; planning reads it once per epoch)."""
        return self.scores.detach().cpu()

    def plan_scores(self) -> torch.Tensor | None:
        return self.scores_cpu()


# --------------------------------------------------------------------------------------------------
# Registry (timm style: explicit names, a create_* factory)
# --------------------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Pruner]] = {}


def register_pruner(name: str) -> Callable[[type[Pruner]], type[Pruner]]:
    """Class decorator registering a pruner under ``name``; a duplicate name is an error."""

    def deco(cls: type[Pruner]) -> type[Pruner]:
        if name in _REGISTRY:
            raise ValueError(f"pruner {name!r} is already registered (by {_REGISTRY[name].__module__})")
        if cls.granularity not in GRANULARITIES:
            raise ValueError(f"pruner {name!r}: granularity must be one of {GRANULARITIES}")
        if not cls.description:
            raise ValueError(f"pruner {name!r} needs a one-line description citing its paper")
        if not (dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen):  # type: ignore[attr-defined]  # no public API says "frozen"
            raise ValueError(f"pruner {name!r}: Options must be a frozen dataclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_pruners(pattern: str = "*") -> list[str]:
    """Registered pruner names matching the glob ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_pruner_class(name: str) -> type[Pruner]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown pruner {name!r}; valid: {', '.join(list_pruners())}") from None


def validate_common(num_samples: int, num_epochs: int, prune_ratio: float, seed: int) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, int) or num_epochs < 1:
        raise ConfigError(f"num_epochs must be a positive integer, got {num_epochs!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(prune_ratio, bool) or not isinstance(prune_ratio, (int, float)) or not math.isfinite(prune_ratio):
        raise ConfigError(f"prune_ratio must be a number in [0, 1), got {prune_ratio!r}")
    if not 0.0 <= prune_ratio < 1.0:
        raise ConfigError(f"prune_ratio must be in [0, 1), got {prune_ratio!r}")
    if keep_count(num_samples, prune_ratio) < 1:
        raise ConfigError(
            f"prune_ratio={prune_ratio:g} keeps round((1-p)*{num_samples}) = 0 samples; "
            f"valid: prune_ratio <= {1 - 0.5 / num_samples:.6g}"
        )


def create_pruner(
    name: str,
    *,
    num_samples: int,
    num_epochs: int,
    prune_ratio: float | None = None,
    seed: int = 0,
    **options: Any,
) -> Pruner:
    """Create the pruner ``name``: common arguments first, then the method's own options.

    Unknown option names and invalid values raise :class:`~prunebench.errors.ConfigError` naming the
    valid ones. ``prune_ratio=None`` uses the method's default.
    """
    cls = get_pruner_class(name)
    if prune_ratio is None:
        prune_ratio = cls.default_prune_ratio
    validate_common(num_samples, num_epochs, prune_ratio, seed)
    opts = build_options(cls.Options, options, f"pruner {name!r}")
    pruner = cls(num_samples, num_epochs, float(prune_ratio), seed, opts)
    return pruner
