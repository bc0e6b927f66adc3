"""A small real study for the report tests: tiny ``train()`` runs on synthetic data, logged to MLflow,
written as the studies' results folder (``results.parquet``, ``results.csv``, ``study.toml``,
``sweeps/fx/results.csv``) exactly as ``prunebench leaderboard`` and ``sweep`` leave it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from prunebench.harness import train

DATASET = "synthetic:n=600,classes=10,noise=200"
STUDY = "fixture"
EXPERIMENT = "report-fixture"
SEEDS = (0, 1)
# (method, pruner, prune ratios, options)
METHODS = (
    ("full", "full", (0.0,), {}),
    ("orderdp-c0.8", "orderdp", (0.3, 0.5), {"candidate_ratio": 0.8}),
    ("random-dynamic", "random-dynamic", (0.5,), {}),
    ("random-static", "random-static", (0.5,), {}),
)
STUDY_TOML = f'''name = "{STUDY}"
description = "report test fixture: tiny runs on synthetic data"

[train]
dataset = "{DATASET}"
model = "mlp"
epochs = 3
batch_size = 64

seeds = {list(SEEDS)}
'''


def make_study(root: Path) -> tuple[Path, str]:
    """Train the fixture runs; return (results folder, tracking URI)."""
    from prunebench.datasets import load_dataset

    uri = f"sqlite:///{root / 'mlflow.db'}"
    data = load_dataset(DATASET)
    rows = []
    base = dict(
        dataset=DATASET, model="mlp", epochs=3, batch_size=64, tracking=True, tracking_uri=uri, experiment=EXPERIMENT
    )
    for method, pruner, ratios, opts in METHODS:
        for p in ratios:
            for seed in SEEDS:
                key = f"{method}/p={p:g}/seed={seed}"
                r = train(
                    {
                        **base,
                        "pruner": pruner,
                        "prune_ratio": p,
                        "seed": seed,
                        "pruner_options": opts,
                        "tags": {"study": STUDY, "method": method, "run_key": key},
                    },
                    data=data,
                )
                rows.append(
                    {
                        **r.row,
                        "study": STUDY,
                        "method": method,
                        "run_key": key,
                        "tracking_uri": uri,
                        "experiment": EXPERIMENT,
                    }
                )
    # a run that diverges: the study runner records it as FAILED with its error
    from prunebench.errors import TrainingError

    try:
        train(
            {
                **base,
                "pruner": "full",
                "prune_ratio": 0.0,
                "seed": 2,
                "lr": 1e12,
                "schedule": "constant",
                "momentum": 0.0,
                "tags": {"study": STUDY},
            },
            data=data,
        )
    except TrainingError as e:
        rows.append(
            {
                "run_id": None,
                "status": "FAILED",
                "error": f"TrainingError: {e}",
                "dataset": DATASET,
                "model": "mlp",
                "pruner": "full",
                "label": "full",
                "seed": 2,
                "prune_ratio": 0.0,
                "final_acc": np.nan,
                "study": STUDY,
                "method": "full",
                "run_key": "full/p=0/seed=2",
                "tracking_uri": uri,
                "experiment": EXPERIMENT,
            }
        )
    folder = root / "results" / STUDY
    folder.mkdir(parents=True)
    df = pd.DataFrame(rows)
    df.to_parquet(folder / "results.parquet", index=False)
    df.to_csv(folder / "results.csv", index=False)
    (folder / "study.toml").write_text(STUDY_TOML)
    # a sweep's results table as `prunebench sweep` writes it: here orderdp's runs at two prune ratios stand
    # in for a pareto sweep over the prune ratio, with full as its reference
    ok = df[(df["status"] == "FINISHED") & df["method"].isin(["full", "orderdp-c0.8"])].copy()
    ok["sweep"], ok["kind"] = "fx", "pareto"
    ok["point"] = [m if m == "full" else f"fx[prune_ratio={p:g}]" for m, p in zip(ok["method"], ok["prune_ratio"])]
    ok["axis.prune_ratio"] = [float("nan") if m == "full" else p for m, p in zip(ok["method"], ok["prune_ratio"])]
    (folder / "sweeps" / "fx").mkdir(parents=True)
    ok.to_csv(folder / "sweeps" / "fx" / "results.csv", index=False)
    return folder, uri
