"""DDP on CPU (gloo, 2 processes under torchrun) against a single-process run with the same seed and
global batch: same kept index sets every epoch, same final scores, same cost, same steps on every rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from prunebench.harness.checkpoint import load_checkpoint

ARGS = [
    "--dataset",
    "synthetic:n=301",
    "--model",
    "mlp",
    "--epochs",
    "3",
    "--batch-size",
    "64",
    "--seed",
    "1",
    "--device",
    "cpu",
    "--json",
    "--quiet",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp, name, extra, nproc):
    env = {**os.environ, "PRUNEBENCH_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    uri = f"sqlite:///{tmp / (name + '.db')}"
    cmd = [
        sys.executable,
        "-m",
        "prunebench",
        "run",
        *ARGS,
        *extra,
        "--tracking-uri",
        uri,
        "--checkpoint-dir",
        str(tmp / (name + "-ck")),
    ]
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--nnodes=1",
            f"--master_port={_free_port()}",
            "--master_addr=127.0.0.1",
            "-m",
            "prunebench",
            *cmd[3:],
        ]
    p = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, p.stdout  # only rank 0 prints
    row = json.loads(lines[0])
    art = tmp / (name + "-art")
    art.mkdir()
    masks = np.load(MlflowClient(uri).download_artifacts(row["run_id"], "kept_masks_packed.npy", str(art)))
    ck = load_checkpoint(tmp / (name + "-ck"))
    return row, masks, ck


@pytest.mark.parametrize(
    "pruner,extra",
    [
        ("orderdp", ["--prune-ratio", "0.4", "--set", "candidate_ratio=0.8"]),
        ("infobatch", ["--prune-ratio", "0.5", "--epochs", "4"]),
        ("random-dynamic", ["--prune-ratio", "0.3"]),
        ("orderdp-fresh", ["--prune-ratio", "0.5", "--set", "candidate_ratio=0.9"]),
    ],
)
def test_two_process_ddp_equals_single_process(tmp_path, pruner, extra):
    extra = ["--pruner", pruner, *extra]
    single, m1, ck1 = _run(tmp_path, "single", extra, 1)
    multi, m2, ck2 = _run(tmp_path, "ddp", extra, 2)
    assert multi["world_size"] == 2 and single["world_size"] == 1
    assert multi["rank_steps_equal"] is True
    for k in (
        "samples_forward",
        "samples_backprop",
        "optimizer_steps",
        "realized_prune_ratio",
        "relative_compute",
        "jaccard_mean",
        "epochs_run",
    ):
        assert multi[k] == single[k], k
    np.testing.assert_array_equal(m1, m2)  # the global kept index set of every epoch
    s1, s2 = ck1["pruner"], ck2["pruner"]
    for key in s1:
        if isinstance(s1[key], torch.Tensor) and s1[key].is_floating_point():
            torch.testing.assert_close(s1[key], s2[key], rtol=1e-4, atol=1e-5)  # final scores
    assert abs(multi["final_acc"] - single["final_acc"]) <= 0.02
    torch.testing.assert_close(ck1["usage"], ck2["usage"], rtol=0, atol=0)


def test_global_batch_must_divide_by_world_size(tmp_path):
    env = {**os.environ, "PRUNEBENCH_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={_free_port()}",
            "--master_addr=127.0.0.1",
            "-m",
            "prunebench",
            "run",
            "--dataset",
            "synthetic",
            "--model",
            "mlp",
            "--epochs",
            "1",
            "--batch-size",
            "63",
            "--device",
            "cpu",
            "--no-tracking",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode != 0
    assert "batch_size=63 is the global batch and must be divisible by the 2 processes" in p.stderr
