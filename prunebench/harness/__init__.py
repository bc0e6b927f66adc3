"""The harness: one training loop, cost accounting, metrics and MLflow tracking.

>>> from prunebench.harness import train
>>> result = train({"dataset": "digits", "pruner": "orderdp", "prune_ratio": 0.4, "tracking": False})
>>> result.row["realized_prune_ratio"]  # doctest: +SKIP
0.4
"""

from prunebench.harness.config import TrainConfig, split_overrides
from prunebench.harness.loop import RunResult, Trainer, train
from prunebench.harness.models import create_model, list_models

__all__ = ["RunResult", "TrainConfig", "Trainer", "create_model", "list_models", "split_overrides", "train"]
