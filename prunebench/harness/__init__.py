"""The harness: one training loop, cost accounting, metrics and MLflow tracking.

>>> from prunebench.harness import train
>>> result = train({"dataset": "digits", "pruner": "orderdp", "prune_ratio": 0.4, "tracking": False})
>>> result.row["realized_prune_ratio"]  # doctest: +SKIP
0.4

The names below are imported on first use (PEP 562), so that ``prunebench.harness.config`` can be read
without importing torch (the CLI validates a config before it loads the loop).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "prunebench.harness.config",
    "split_overrides": "prunebench.harness.config",
    "RunResult": "prunebench.harness.result",
    "StopRun": "prunebench.harness.ending",
    "Trainer": "prunebench.harness.loop",
    "train": "prunebench.harness.loop",
    "create_model": "prunebench.harness.models",
    "list_models": "prunebench.harness.models",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'prunebench.harness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
