"""Shared fixtures. Tests never touch the network: PRUNEBENCH_OFFLINE=1 disables torchvision downloads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["PRUNEBENCH_OFFLINE"] = "1"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def digits():
    from prunebench.datasets import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def synthetic():
    from prunebench.datasets import load_dataset

    return load_dataset("synthetic")


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One SQLite MLflow store for the session (creating a store runs migrations: slow)."""
    d = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{d / 'mlflow.db'}"


def fast_config(**kw):
    """A tiny, fast run on synthetic data without tracking."""
    base = dict(dataset="synthetic", model="mlp", epochs=3, batch_size=64, tracking=False, eval_every=1)
    base.update(kw)
    return base


@pytest.fixture(scope="session")
def proxy_context():
    """Factory ``f(n) -> PruneContext`` with a real, tiny proxy run (mlp on ``synthetic:n=<n>``, no disk
    cache); records are memoised per request so contract tests over the registry stay fast."""
    import torch

    from prunebench.datasets import load_dataset
    from prunebench.harness.config import TrainConfig
    from prunebench.harness.loop import prune_context as make_context

    contexts, memo = {}, {}

    def factory(n: int):
        if n not in contexts:
            data = load_dataset(f"synthetic:n={n}")
            cfg = TrainConfig.from_dict(
                dict(
                    dataset=f"synthetic:n={n}",
                    model="mlp",
                    batch_size=64,
                    tracking=False,
                    score_cache=None,
                    device="cpu",
                )
            )
            ctx, runner = make_context(cfg, data, torch.device("cpu"))

            def proxy(req, runner=runner, n=n):
                key = (n, req.token())
                if key not in memo:
                    memo[key] = runner(req)
                return memo[key]

            ctx.proxy = proxy
            contexts[n] = ctx
        return contexts[n]

    return factory
