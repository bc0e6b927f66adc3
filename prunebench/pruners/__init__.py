"""Pruners: the registry and the methods.

>>> from prunebench.pruners import create_pruner, list_pruners
>>> p = create_pruner("orderdp", num_samples=1000, num_epochs=10, prune_ratio=0.4, seed=0, candidate_ratio=0.8)
>>> sel = p.plan_epoch(0)
>>> sel.indices.shape
torch.Size([600])

Adding a method: write one file in this folder with a ``@register_pruner("name")`` class; every module
here is imported (third-party packages can instead expose an entry point in the ``prunebench.pruners``
group, or be given with ``--plugin``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from prunebench.pruners.base import (
    BatchPruner,
    BatchSelection,
    CandidateBatch,
    ProxyRequest,
    PruneContext,
    Pruner,
    Selection,
    create_pruner,
    get_pruner_class,
    keep_count,
    list_pruners,
    register_pruner,
)

# explicit import list: the registry never scans globals
#: modules of this folder that hold no method (the contract, rules and score functions they use)
_LIBRARY_MODULES = frozenset({"base", "rules", "scores", "coverage"})


def _method_modules() -> list[str]:
    """Every module of this folder but the library ones, in name order: a new method is one new file."""
    import pkgutil

    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _LIBRARY_MODULES and not m.name.startswith("_")
    )


for _m in _method_modules():
    importlib.import_module(f"prunebench.pruners.{_m}")

for _ep in entry_points(group="prunebench.pruners"):  # third-party plugins
    _ep.load()

__all__ = [
    "BatchPruner",
    "BatchSelection",
    "CandidateBatch",
    "PruneContext",
    "ProxyRequest",
    "Pruner",
    "Selection",
    "create_pruner",
    "get_pruner_class",
    "keep_count",
    "list_pruners",
    "register_pruner",
]
