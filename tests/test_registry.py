"""Contract tests over the whole pruner registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from prunebench import testing
from prunebench.errors import ConfigError
from prunebench.pruners import (
    BatchPruner,
    PruneContext,
    create_pruner,
    get_pruner_class,
    list_pruners,
    register_pruner,
)
from prunebench.pruners.base import Pruner
from prunebench.pruners.static import StaticPruner

N, E = 200, 6
ALL = list_pruners()
FOUNDATION = {"full", "random-static", "random-dynamic", "orderdp", "orderdp-fresh", "infobatch", "loss-topk"}


def _ratio(name: str) -> float:
    return 0.0 if name == "full" else 0.4


def _index_file() -> str:
    """``from-indices`` cannot run without a file: one of round(0.6 N) unique indices for the contract tests."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="prunebench-contract-")) / "indices.npy"
    np.save(path, np.random.default_rng(0).permutation(N)[: round(0.6 * N)])
    return str(path)


REQUIRED_OPTIONS = {"from-indices": {"indices_file": _index_file()}}  # methods with a mandatory option


def _labels(n: int = N, k: int = 4) -> torch.Tensor:
    return torch.arange(n) % k


def _prepared(name: str, seed: int = 0, context_factory=None) -> Pruner:
    p = create_pruner(
        name, num_samples=N, num_epochs=E, prune_ratio=_ratio(name), seed=seed, **REQUIRED_OPTIONS.get(name, {})
    )
    ctx = context_factory(N) if context_factory else PruneContext(labels=_labels(), num_classes=4)
    p.prepare(ctx)
    return p


@pytest.fixture
def context_factory(request):
    """Static methods need a proxy; their test modules provide ``proxy_context`` (see test_static)."""
    try:
        return request.getfixturevalue("proxy_context")
    except pytest.FixtureLookupError:
        return None


def test_foundation_pruners_registered():
    assert FOUNDATION <= set(ALL)
    assert list_pruners("orderdp*") == ["orderdp", "orderdp-fresh"]


@pytest.mark.parametrize("name", ALL)
def test_declares_granularity_description_and_frozen_options(name):
    cls = get_pruner_class(name)
    assert cls.granularity in ("static", "epoch", "batch")
    assert len(cls.description) > 10
    assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
    assert issubclass(cls, BatchPruner) == (cls.granularity == "batch")


def _kit(check, name, context_factory):
    """A contract check of ``prunebench.testing`` (the kit plugin authors run) on the registered ``name``."""
    check(
        name,
        options=REQUIRED_OPTIONS.get(name),
        num_samples=N,
        num_epochs=E,
        prune_ratio=_ratio(name),
        context=context_factory or (lambda n: PruneContext(labels=_labels(n), num_classes=4)),
    )


@pytest.mark.parametrize("name", ALL)
def test_plan_is_valid_selection(name, context_factory):
    _kit(testing.check_plan_is_valid, name, context_factory)


@pytest.mark.parametrize("name", ALL)
def test_plan_epoch_does_not_change_state(name, context_factory):
    _kit(testing.check_plan_keeps_state, name, context_factory)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_plan_other_seed_other_plan(name, context_factory):
    _kit(testing.check_seeding, name, context_factory)


@pytest.mark.parametrize("name", ALL)
def test_does_not_touch_global_rng(name, context_factory):
    _kit(testing.check_global_rng, name, context_factory)


@pytest.mark.parametrize("name", ALL)
def test_killed_and_resumed_equals_uninterrupted(name, context_factory):
    """Trained 2 epochs, checkpointed (weights_only round trip), loaded into a fresh pruner: epochs 2..5
    plan and select exactly as without the interruption (plugins included: ALL is the whole registry)."""
    _kit(testing.check_resume, name, context_factory)


@pytest.mark.parametrize("name", ALL)
def test_unknown_option_is_rejected_with_valid_names(name):
    with pytest.raises(ConfigError, match="unknown option 'no_such_option'; valid options"):
        create_pruner(name, num_samples=N, num_epochs=E, prune_ratio=_ratio(name), seed=0, no_such_option=1)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_prune_ratio_rejected(name, bad):
    with pytest.raises(ConfigError, match="prune_ratio"):
        create_pruner(name, num_samples=N, num_epochs=E, prune_ratio=bad, seed=0)


def test_prune_ratio_leaving_no_sample_rejected():
    with pytest.raises(ConfigError, match="keeps round"):
        create_pruner("random-dynamic", num_samples=10, num_epochs=1, prune_ratio=0.96, seed=0)


@pytest.mark.parametrize("name", ALL)
def test_label_is_deterministic_and_names_method(name):
    opts = REQUIRED_OPTIONS.get(name, {})
    a = create_pruner(name, num_samples=N, num_epochs=E, prune_ratio=_ratio(name), seed=0, **opts)
    b = create_pruner(name, num_samples=N, num_epochs=E, prune_ratio=_ratio(name), seed=5, **opts)
    assert a.label == b.label and a.label.startswith(name)


def test_orderdp_label():
    p = create_pruner("orderdp", num_samples=N, num_epochs=E, prune_ratio=0.4, seed=0, candidate_ratio=0.8)
    assert p.label == "orderdp[c=0.8,init=3,p=0.4]"


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @register_pruner("orderdp")
        class Dup(Pruner):  # noqa: F841
            description = "duplicate"


@pytest.mark.parametrize(
    "name", [n for n in ALL if get_pruner_class(n).granularity != "batch" and n not in ("infobatch", "kakurenbo")]
)  # variable budgets
def test_fixed_budget_exact(name, context_factory):
    """Every fixed-budget method trains exactly q = round((1-p)N) samples per epoch."""
    p = _prepared(name, context_factory=context_factory)
    sel = p.plan_epoch(0)
    expected = N if name == "full" else round(0.6 * N)
    assert sel.indices.numel() == expected
    assert torch.unique(sel.indices).numel() == expected  # no duplicates for without-replacement rules


BUILTIN = [n for n in ALL if get_pruner_class(n).__module__.startswith("prunebench.pruners.")]


@pytest.mark.parametrize("name", BUILTIN)
def test_pruner_declares_its_method_table_entry(name):
    """Every built-in method says its family, paper, cost profile and where its defaults come from
    (docs/methods-table.md and ``prunebench list --long`` show them)."""
    from prunebench.pruners.base import COST_PROFILE_ITEMS

    cls = get_pruner_class(name)
    for attr in ("family", "paper", "defaults_source"):
        value = getattr(cls, attr)
        assert isinstance(value, str) and value.strip(), f"{name}: {attr} is empty"
    assert isinstance(cls.cost_profile, tuple), f"{name}: cost_profile must be a tuple"
    bad = [c for c in cls.cost_profile if c not in COST_PROFILE_ITEMS]
    assert not bad, f"{name}: cost_profile items {bad} not in {COST_PROFILE_ITEMS}"
    assert len(set(cls.cost_profile)) == len(cls.cost_profile), f"{name}: cost_profile repeats an item"
    assert isinstance(cls.uses_weights, bool), f"{name}: uses_weights must be a bool"
    # a method that scores from the shared proxy run says so, and only those do
    assert ("proxy run" in cls.cost_profile) == issubclass(cls, StaticPruner), name


def test_uses_weights_matches_what_the_pruner_returns():
    """``uses_weights`` is true exactly for the methods that hand the loop loss weights (checked on a
    planned epoch for epoch-level methods: InfoBatch's second epoch rescales its kept samples)."""
    assert {n for n in BUILTIN if get_pruner_class(n).uses_weights} >= {
        "infobatch",
        "importance-sampling",
        "facility-location",
    }
    for name in ("infobatch", "full", "orderdp", "random-dynamic", "ucb"):
        p = _prepared(name)
        p.observe(torch.arange(N), torch.rand(N, generator=torch.Generator().manual_seed(0)))
        p.epoch_end(0)
        weighted = p.plan_epoch(1).weights is not None
        assert weighted == get_pruner_class(name).uses_weights, name
