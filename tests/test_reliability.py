"""Checkpoint/resume (bitwise, also after SIGKILL), determinism, pre-flight failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import fast_config

from prunebench.errors import ConfigError
from prunebench.harness import TrainConfig, Trainer, train
from prunebench.harness.checkpoint import CHECKPOINT_NAME, atomic_write, load_checkpoint


def _same_result(a, b):
    for k in (
        "final_acc",
        "best_acc",
        "final_train_loss",
        "samples_forward",
        "samples_backprop",
        "optimizer_steps",
        "realized_prune_ratio",
        "relative_compute",
        "jaccard_mean",
    ):
        assert a.row[k] == b.row[k], k
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    np.testing.assert_array_equal(a.kept_masks, b.kept_masks)
    np.testing.assert_array_equal(a.usage, b.usage)


@pytest.mark.parametrize("pruner,ratio", [("orderdp", 0.4), ("infobatch", 0.5), ("orderdp-fresh", 0.4)])
def test_resume_after_interruption_is_bitwise_identical(synthetic, tmp_path, pruner, ratio):
    cfg = fast_config(model="cnn-small", pruner=pruner, prune_ratio=ratio, epochs=4)
    ref = train(cfg, data=synthetic)
    ck = tmp_path / "ck"

    class Stop(Exception):
        pass

    def stop_after_two(m):
        if m["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train({**cfg, "checkpoint_dir": str(ck)}, data=synthetic, progress=stop_after_two)
    assert load_checkpoint(ck)["epoch"] == 1  # the epoch-1 checkpoint is written after progress: epoch 0 done
    resumed = train({**cfg, "checkpoint_dir": str(ck), "resume": True}, data=synthetic)
    _same_result(ref, resumed)


def test_resume_rejects_a_different_config(synthetic, tmp_path):
    cfg = fast_config(pruner="orderdp", prune_ratio=0.4, epochs=2, checkpoint_dir=str(tmp_path))
    train(cfg, data=synthetic)
    with pytest.raises(ConfigError, match="written with prune_ratio=0.4 but this run has prune_ratio=0.5"):
        train({**cfg, "prune_ratio": 0.5, "resume": True}, data=synthetic)


def test_resume_without_checkpoint_is_a_clear_error(synthetic, tmp_path):
    """In Python a missing checkpoint is an error; ``prunebench run --resume`` starts from scratch instead
    (tests/test_executors.py), through :func:`prunebench.harness.checkpoint.resume_or_start`."""
    with pytest.raises(ConfigError, match="no checkpoint at"):
        train(fast_config(checkpoint_dir=str(tmp_path), resume=True), data=synthetic)


def test_checkpoint_write_is_atomic(synthetic, tmp_path):
    train(fast_config(pruner="random-dynamic", prune_ratio=0.3, epochs=2, checkpoint_dir=str(tmp_path)), data=synthetic)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]  # no stray .tmp left
    assert load_checkpoint(tmp_path)["epoch"] == 2


def test_atomic_write_survives_a_second_writer_on_the_same_path(tmp_path):
    """Two sweep workers summarise into one folder: a second writer starts and finishes while the first is
    mid-write. With one shared temporary name the second rename took the first writer's file away
    (FileNotFoundError in CI); each writer must rename a complete file of its own, the last one winning."""
    target = tmp_path / "sweep-split.csv"
    target.write_text("old\n")
    seen = []

    def second(t):
        t.write_text("second\n")

    def first(t):
        t.write_text("first\n")
        atomic_write(target, second)
        seen.append(target.read_text())  # readers see a whole file from the second writer meanwhile

    atomic_write(target, first)
    assert seen == ["second\n"]
    assert target.read_text() == "first\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sweep-split.csv"]  # no temporary file left behind


def test_atomic_write_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "leaderboard.csv"
    target.write_text("old\n")

    def torn(t):
        t.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, torn)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]


def test_same_config_bitwise_identical_model(synthetic):
    cfg = TrainConfig.from_dict(fast_config(model="cnn-small", pruner="infobatch", prune_ratio=0.5, epochs=2))
    a, b = Trainer(cfg, data=synthetic), Trainer(cfg, data=synthetic)
    a.run(), b.run()
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_unwritable_checkpoint_dir_fails_before_training(synthetic, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="checkpoint dir .* is not writable"):
        train(fast_config(checkpoint_dir=str(blocker / "sub")), data=synthetic)


def test_full_disk_fails_before_training(synthetic, tmp_path, monkeypatch):
    import shutil

    from prunebench.harness import checkpoint as ckmod

    monkeypatch.setattr(ckmod.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 10))
    with pytest.raises(ConfigError, match="MiB free, needs at least"):
        train(fast_config(checkpoint_dir=str(tmp_path / "ck")), data=synthetic)
    assert not (tmp_path / "ck" / CHECKPOINT_NAME).exists()


def test_unwritable_tracking_store_fails_before_training(synthetic, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="tracking store folder .* is not writable"):
        train(fast_config(tracking=True, tracking_uri=f"sqlite:///{blocker}/sub/m.db"), data=synthetic)


def test_unreachable_tracking_server_is_a_clear_error(synthetic):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t0 = time.time()
    with pytest.raises(ConfigError, match="tracking server http://127.0.0.1:.* is unreachable"):
        train(fast_config(tracking=True, tracking_uri=f"http://127.0.0.1:{port}"), data=synthetic)
    assert time.time() - t0 < 10


def _cli(args, cwd):
    env = {**os.environ, "PRUNEBENCH_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "prunebench", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    base = [
        "run",
        "--dataset",
        "synthetic:n=2048",
        "--model",
        "cnn-small",
        "--epochs",
        "5",
        "--pruner",
        "orderdp",
        "--prune-ratio",
        "0.4",
        "--seed",
        "3",
        "--tracking-uri",
        uri,
        "--json",
        "--quiet",
    ]
    ref_p = _cli(base, tmp_path)
    out, err = ref_p.communicate(timeout=600)
    assert ref_p.returncode == 0, err
    ref = json.loads(out)

    ck = tmp_path / "ck"
    p = _cli([*base, "--checkpoint-dir", str(ck)], tmp_path)
    deadline = time.time() + 600
    while time.time() < deadline:  # kill -9 in the middle of epoch 2 or later, once a checkpoint exists
        if (ck / CHECKPOINT_NAME).exists():
            time.sleep(0.3)
            break
        if p.poll() is not None:
            break
        time.sleep(0.05)
    assert p.poll() is None, "the run finished before it could be killed"
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL
    killed = load_checkpoint(ck)
    assert 1 <= killed["epoch"] < 5

    r = _cli([*base, "--checkpoint-dir", str(ck), "--resume"], tmp_path)
    out, err = r.communicate(timeout=600)
    assert r.returncode == 0, err
    res = json.loads(out)
    for k in (
        "final_acc",
        "best_acc",
        "final_train_loss",
        "samples_forward",
        "samples_backprop",
        "optimizer_steps",
        "realized_prune_ratio",
        "relative_compute",
        "jaccard_mean",
    ):
        assert res[k] == ref[k], k
    client = MlflowClient(uri)
    assert res["run_id"] == killed["mlflow_run_id"]  # the killed MLflow run was continued, not replaced
    assert client.get_run(res["run_id"]).info.status == "FINISHED"
    d1, d2 = tmp_path / "a", tmp_path / "b"
    a = np.load(client.download_artifacts(ref["run_id"], "kept_masks_packed.npy", str(d1.mkdir() or d1)))
    b = np.load(client.download_artifacts(res["run_id"], "kept_masks_packed.npy", str(d2.mkdir() or d2)))
    np.testing.assert_array_equal(a, b)


def test_a_server_dying_mid_answer_counts_as_unreachable():
    """A tracking server killed while it answers leaves a truncated chunked body: requests raises
    ChunkedEncodingError ("Connection broken: IncompleteRead") inside MLflow's MlflowException. That is the
    server going away (one line, exit 2), not a bug to print as a traceback (CI failure of stop 26)."""
    import socket
    import threading

    from mlflow.utils.rest_utils import MlflowHostCreds, http_request

    from prunebench.harness.tracking import _unreachable

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer_half():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n")
        conn.close()

    t = threading.Thread(target=answer_half, daemon=True)
    t.start()
    try:
        with pytest.raises(Exception) as ei:
            r = http_request(
                MlflowHostCreds(f"http://127.0.0.1:{port}"),
                "/api/2.0/mlflow/runs/log-batch",
                "POST",
                max_retries=0,
                json={},
            )
            r.content  # noqa: B018 - reading the body is what fails
        assert _unreachable(ei.value), repr(ei.value)
        assert not _unreachable(ValueError("a bad metric value"))
    finally:
        t.join(5)
        srv.close()


def test_a_lost_claim_whose_run_was_deleted_marks_nothing(caplog):
    """A leaderboard cell that lost its claim deleted its own new MLflow run: its ending must not try to
    mark that run FAILED (it logged "could not mark the MLflow run FAILED (... deleted)" three retries later)."""
    from prunebench.harness.ending import mark_ended
    from prunebench.studies.claims import ClaimLost

    class Tracker:
        def __init__(self):
            self.ended, self.tags = [], []

        def end(self, status):
            self.ended.append(status)

        def set_tags(self, tags):
            self.tags.append(tags)

    t = Tracker()
    status, error = mark_ended(t, ClaimLost("abc", deleted=True), "")
    assert (status, t.ended, t.tags) == ("FAILED", [], []) and "claimed by MLflow run abc" in error
    kept = Tracker()  # a resumed run that lost its claim was not deleted: it is marked as usual
    mark_ended(kept, ClaimLost("abc"), "")
    assert kept.ended == ["FAILED"] and kept.tags
