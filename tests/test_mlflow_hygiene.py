"""MLflow hygiene: training-kind experiments, machine values as tags, constants as params, the final
weights on request, quiet artifact downloads, and the UI's training runs view (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fast_config
from mlflow.tracking import MlflowClient

from prunebench.harness import train
from prunebench.harness.config import MACHINE_FIELDS
from prunebench.harness.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, MLflowTracker, download_artifact


def test_experiments_are_training_experiments(tracking_uri):
    MLflowTracker(tracking_uri, "t-kind")
    client = MlflowClient(tracking_uri)
    assert client.get_experiment_by_name("t-kind").tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = client.create_experiment("t-old")  # made before prunebench tagged experiments: tagged on first use
    MLflowTracker(tracking_uri, "t-old")
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    mine = client.create_experiment("t-mine", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    MLflowTracker(tracking_uri, "t-mine")  # a kind someone chose is left alone
    assert client.get_experiment(mine).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_params_tags_metrics_and_model_weights(synthetic, tracking_uri, tmp_path):
    cfg = fast_config(
        pruner="orderdp",
        prune_ratio=0.4,
        tracking=True,
        tracking_uri=tracking_uri,
        experiment="t-hygiene",
        log_model=True,
        data_dir=str(tmp_path),
        num_workers=3,
    )
    r = train(cfg, data=synthetic)
    client = MlflowClient(tracking_uri)
    run = client.get_run(r.row["run_id"])
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    for k in MACHINE_FIELDS:
        assert k not in params, k
    assert tags["prunebench.data_dir"] == str(tmp_path) and tags["prunebench.num_workers"] == "3"
    assert tags["prunebench.tracking_uri"] == tracking_uri
    assert "prunebench.checkpoint_dir" not in tags  # None: not logged
    # constants are params, not metrics (no chart panel each)
    for k in ("num_classes", "world_size", "num_samples", "epochs", "batch_size", "seed"):
        assert k in params and k not in metrics, k
    assert params["num_classes"] == "4"
    final = {"final_acc", "best_acc", "samples_backprop", "relative_compute", "realized_prune_ratio", "train_time_s"}
    assert final <= set(metrics)
    per_epoch = {"test_acc", "train_loss", "kept_fraction", "jaccard", "epoch_time_s", "lr", "lr_scale", "kept"}
    assert set(metrics) - per_epoch - final <= {
        "selection_time_s",
        "scoring_time_s",
        "eval_time_s",
        "probe_time_s",
        "total_time_s",
        "samples_forward",
        "optimizer_steps",
        "jaccard_mean",
        "final_top5",
        "final_train_loss",
        "epochs_run",
    } | {k for k in metrics if k.startswith("scoring_")}
    # the final weights: a state_dict of tensors that loads with weights_only=True into the same model
    path = download_artifact(client, run.info.run_id, "model/state_dict.pt", str(tmp_path))
    state = torch.load(path, weights_only=True)
    from prunebench.harness.models import create_model

    model = create_model(cfg["model"], num_classes=synthetic.num_classes, input_shape=synthetic.input_shape)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state)
    model.eval()
    mean = torch.tensor(synthetic.mean).view(1, -1, 1, 1)
    std = torch.tensor(synthetic.std).view(1, -1, 1, 1)
    with torch.no_grad():
        pred = model((synthetic.x_test.float() / 255 - mean) / std).argmax(1)
    acc = (pred == synthetic.y_test).float().mean().item()
    assert acc == pytest.approx(r.row["final_acc"], abs=1.5 / len(synthetic.y_test))
    no_model = train(
        fast_config(pruner="full", tracking=True, tracking_uri=tracking_uri, experiment="t-hygiene"), data=synthetic
    )
    assert [a.path for a in client.list_artifacts(no_model.row["run_id"], "model")] == []


def test_artifact_downloads_are_quiet(synthetic, tracking_uri, tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", raising=False)
    r = train(
        fast_config(pruner="full", tracking=True, tracking_uri=tracking_uri, experiment="t-quiet"), data=synthetic
    )
    capfd.readouterr()
    path = download_artifact(MlflowClient(tracking_uri), r.row["run_id"], "usage_counts.npy", str(tmp_path))
    np.testing.assert_array_equal(np.load(path), r.usage)
    out = capfd.readouterr()
    assert "Downloading artifacts" not in out.err + out.out
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ  # restored


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_ui_opens_the_training_runs_view(synthetic, tmp_path):
    """``mlflow server`` on 127.0.0.1, the experiment page in headless Chromium: the training runs table.

    MLflow 3's UI has two workspaces (GenAI, Model training): an experiment link with
    ``?workflowType=machine_learning`` (what docs/running.md gives) opens the Model training one on the runs.
    The screenshot is kept in ``$PRUNEBENCH_SCREENSHOT_DIR`` when that is set.
    """
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (Debian: apt-get install chromium; see .ci/setup.d/20-chromium.sh)"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = train(
        fast_config(pruner="orderdp", prune_ratio=0.4, tracking=True, tracking_uri=uri, experiment="t-ui"),
        data=synthetic,
    )
    exp_id = MlflowClient(uri).get_experiment_by_name("t-ui").experiment_id
    port = _free_port()
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not answer within 240 s"
            time.sleep(0.5)
        url = f"http://127.0.0.1:{port}/#/experiments/{exp_id}?workflowType=machine_learning"
        base = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=20000",
            f"--user-data-dir={tmp_path / 'chromium'}",
        ]
        dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        keep = os.environ.get("PRUNEBENCH_SCREENSHOT_DIR")
        if keep:
            (Path(keep) / "mlflow-training-runs.html").write_text(dom)
        text = re.sub(r"<!-- -->", "", dom)
        assert r.row["label"][:10] in text, text[-2000:]  # the run is listed
        # the Model training workspace (Runs, Models, Model registry), not GenAI's (Overview, Judges, Prompts)
        assert "matching run" in text and "Model registry" in text and "Judges" not in text, text[-2000:]
        shot = tmp_path / "mlflow-training-runs.png"
        subprocess.run([*base, f"--screenshot={shot}", url], capture_output=True, timeout=180)
        assert shot.is_file() and shot.stat().st_size > 20_000
        if keep:
            shutil.copy(shot, Path(keep) / shot.name)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
