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
