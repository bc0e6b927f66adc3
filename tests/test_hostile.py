"""Hostile files, dying servers and signals (issue 18): nothing read from disk runs code, paths derived
from data stay in their folder, no symlink is followed when writing, bad input is one line and exit 2."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import fast_config

from prunebench.errors import ConfigError
from prunebench.harness import train
from prunebench.harness.checkpoint import CHECKPOINT_NAME, atomic_write, load_checkpoint

STUDY = """
[study]
name = "{name}"
seeds = [0]
prune_ratios = [0.5]

[recipe]
dataset = "synthetic:n=256"
model = "mlp"
epochs = 2
batch_size = 64
device = "cpu"

[methods.random-dynamic]
"""


def write_study(tmp_path: Path, name: str = "hostile") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(textwrap.dedent(STUDY.format(name=name)))
    return p


class _Payload:
    """Unpickling this runs ``os.system("touch <marker>")``: what a crafted checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious_checkpoint(directory: Path, marker: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_NAME
    torch.save({"format_version": 2, "identity": {}, "epoch": 1, "evil": _Payload(marker)}, path)
    # the payload is real: the unsafe loader that prunebench used before runs it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path


# ---------------------------------------------------------------------------------------------------
# 1. checkpoints: nothing loaded runs code; unusable checkpoints are set aside in a leaderboard
# ---------------------------------------------------------------------------------------------------


def test_crafted_checkpoint_does_not_run_code_on_resume(synthetic, tmp_path):
    marker = tmp_path / "pwned"
    ck = tmp_path / "ck"
    _malicious_checkpoint(ck, marker)
    with pytest.raises(ConfigError, match="holds objects other than tensors"):
        train(fast_config(checkpoint_dir=str(ck), resume=True), data=synthetic)
    assert not marker.exists()


def test_every_pruner_state_round_trips_through_a_weights_only_checkpoint(synthetic, tmp_path):
    """Kept masks, plan scores and pruner state hold numpy arrays: they are stored as tensors and come back
    as the same arrays (weights_only=True refuses pickled numpy)."""
    cfg = fast_config(pruner="orderdp", prune_ratio=0.4, epochs=2, checkpoint_dir=str(tmp_path))
    res = train(cfg, data=synthetic)
    torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # no unsafe global needed
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 2
    import numpy as np

    assert all(isinstance(m, np.ndarray) for m in state["kept_masks"])
    np.testing.assert_array_equal(np.stack(state["kept_masks"]), res.kept_masks)


@pytest.mark.parametrize("kind", ["missing-keys", "folder", "torn", "not-a-dict"])
def test_unusable_checkpoints_are_one_line_errors(synthetic, tmp_path, kind):
    ck = tmp_path / "ck"
    ck.mkdir()
    target = ck / CHECKPOINT_NAME
    if kind == "missing-keys":
        torch.save({"format_version": 2, "epoch": 1}, target)
        match = "lacks identity"
    elif kind == "folder":
        target.mkdir()
        match = "not a regular file"
    elif kind == "torn":
        target.write_bytes(b"PK\x03\x04" + b"\0" * 100)
        match = "unreadable"
    else:
        torch.save([1, 2, 3], target)
        match = "not a prunebench checkpoint"
    with pytest.raises(ConfigError, match=match):
        train(fast_config(checkpoint_dir=str(ck), resume=True), data=synthetic)
    if kind == "folder":  # and a run writing checkpoints there fails before training, not after epoch 1
        with pytest.raises(ConfigError, match="not a regular file"):
            train(fast_config(checkpoint_dir=str(ck)), data=synthetic)


def test_leaderboard_sets_aside_a_crafted_or_corrupt_cell_checkpoint(tmp_path):
    from prunebench.studies import load_study
    from prunebench.studies.leaderboard import with_checkpoint

    study = load_study(write_study(tmp_path))
    spec = study.runs()[0]
    root = tmp_path / "out" / "checkpoints"
    marker = tmp_path / "pwned"
    _malicious_checkpoint(root / spec.run_key, marker)
    lines: list[str] = []
    cell = with_checkpoint(spec, root, lines.append)
    assert cell.config.resume is False and not marker.exists()
    assert len(lines) == 1 and "set aside as" in lines[0] and "starting over" in lines[0]
    assert not (root / spec.run_key).exists()
    assert len(list(root.glob(f"{spec.run_key}.unusable-*"))) == 1
    # a torn one: set aside too, so the cell does not fail on every re-run
    (root / spec.run_key).mkdir()
    (root / spec.run_key / CHECKPOINT_NAME).write_bytes(b"\0" * 64)
    assert with_checkpoint(spec, root, lines.append).config.resume is False and len(lines) == 2
    # a cell folder that is a symlink out of the user's folder is never resumed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / spec.run_key).rmdir() if (root / spec.run_key).exists() else None
    os.symlink(elsewhere, root / spec.run_key)
    assert with_checkpoint(spec, root, lines.append).config.resume is False
    assert elsewhere.is_dir() and not (root / spec.run_key).exists()


def test_a_temporary_left_by_a_killed_writer_is_removed(tmp_path):
    """kill -9 during a checkpoint write leaves a full-size temporary; the next write removes it (its pid
    no longer runs), not another live writer's."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".{CHECKPOINT_NAME}.{pid}.abc123.tmp"
    stale.write_bytes(b"\0" * 4096)
    live = tmp_path / f".{CHECKPOINT_NAME}.1.abc123.tmp"  # pid 1 is alive
    live.write_bytes(b"x")
    atomic_write(tmp_path / CHECKPOINT_NAME, lambda t: t.write_bytes(b"new"))
    assert not stale.exists() and live.exists()
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == b"new"


def test_format_1_checkpoints_of_runs_in_flight_still_resume(synthetic, tmp_path):
    """Checkpoints written before weights_only (numpy arrays pickled) resume: only numpy's array globals
    are allowed, so a crafted one still runs nothing."""
    import numpy as np

    cfg = fast_config(pruner="orderdp", prune_ratio=0.4, epochs=3)
    ref = train(cfg, data=synthetic)

    class Stop(Exception):
        pass

    def stop(m):
        if m["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        train({**cfg, "checkpoint_dir": str(tmp_path)}, data=synthetic, progress=stop)
    state = load_checkpoint(tmp_path)
    assert isinstance(state["kept_masks"][0], np.ndarray)
    torch.save({**state, "format_version": 1}, tmp_path / CHECKPOINT_NAME)  # as the old writer did
    res = train({**cfg, "checkpoint_dir": str(tmp_path), "resume": True}, data=synthetic)
    assert res.row["final_acc"] == ref.row["final_acc"]
    np.testing.assert_array_equal(res.kept_masks, ref.kept_masks)


# ---------------------------------------------------------------------------------------------------
# 2. paths derived from data stay inside their folder; no symlink is followed when writing
# ---------------------------------------------------------------------------------------------------


def _results_table(study: str):
    import pandas as pd

    rows = []
    for m, p in (("full", 0.0), ("random-dynamic", 0.5)):
        for s in (0, 1):
            rows.append(
                dict(
                    study=study,
                    method=m,
                    pruner=m,
                    label=m,
                    prune_ratio=p,
                    seed=s,
                    status="FINISHED",
                    final_acc=0.5 + 0.1 * s + 0.05 * (m == "full"),
                    best_acc=0.7,
                    dataset="synthetic",
                    model="mlp",
                    relative_compute=1 - p,
                    realized_prune_ratio=p,
                    train_time_s=1.0,
                    run_id=None,
                    tracking_uri=None,
                    run_key=f"{m}{s}",
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ["{victim}", "../../x", "..", "a/b", ".hidden", "x\ny"])
def test_a_hostile_study_name_in_a_table_writes_nothing_outside_reports(tmp_path, monkeypatch, name):
    from prunebench.errors import PrunebenchError
    from prunebench.reports import build_report

    victim = tmp_path / "victim"
    (victim / "figures").mkdir(parents=True)
    (victim / "figures" / "keep.png").write_text("precious")
    cwd = tmp_path / "work" / "here"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    res = cwd / "res"
    res.mkdir()
    _results_table(name.format(victim=victim)).to_csv(res / "results.csv", index=False)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(PrunebenchError, match="cannot name a folder"):
        build_report(str(res))
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert (victim / "figures" / "keep.png").read_text() == "precious"


def test_a_hostile_study_name_in_a_toml_given_to_report_is_refused(tmp_path, monkeypatch):
    from prunebench.errors import PrunebenchError
    from prunebench.reports import build_report

    monkeypatch.chdir(tmp_path)
    toml = tmp_path / "s.toml"
    toml.write_text('[study]\nname = "../../etc"\n')
    with pytest.raises(PrunebenchError, match="cannot name a folder"):
        build_report(str(toml))


def test_report_is_swapped_in_whole_and_refuses_a_symlinked_figures_folder(tmp_path, monkeypatch):
    from prunebench.errors import PrunebenchError
    from prunebench.reports import build_report, figures

    df = _results_table("ok")
    out = tmp_path / "rep"
    build_report(df, out)
    old = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("figures") in {p.parent for p in old} and Path("README.md") in old

    def full_disk(fig, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figures, "_save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build_report(df, out)
    monkeypatch.undo()
    now = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert now == old  # the previous report is whole; no staging folder is left

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_text("mine")
    import shutil

    shutil.rmtree(out / "figures")
    os.symlink(elsewhere, out / "figures")
    with pytest.raises(PrunebenchError, match="symbolic link"):
        build_report(df, out)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["mine.txt"]


def test_a_symlinked_leaderboard_lock_does_not_touch_its_target(tmp_path):
    from prunebench.errors import PrunebenchError
    from prunebench.studies.leaderboard import _Lock

    target = tmp_path / "precious.txt"
    target.write_text("do not truncate\n")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(target, out / ".leaderboard.lock")
    with pytest.raises(PrunebenchError, match="symbolic link"):
        with _Lock(out):
            pass
    assert target.read_text() == "do not truncate\n"


def test_exported_files_replace_a_symlink_instead_of_writing_through_it(tmp_path):
    import numpy as np

    from prunebench.pruners.from_indices import read_indices, write_indices

    target = tmp_path / "precious.npy"
    np.save(target, np.arange(3))
    link = tmp_path / "coreset.npy"
    os.symlink(target, link)
    write_indices(link, np.array([5, 7]))
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    assert not link.is_symlink()
    np.testing.assert_array_equal(read_indices(link), [5, 7])


# ---------------------------------------------------------------------------------------------------
# 3. a run's identity includes its data; 4. imported rows are validated
# ---------------------------------------------------------------------------------------------------


def test_resume_on_other_data_is_refused(synthetic, tmp_path):
    import dataclasses

    from prunebench.harness.identity import data_fingerprint

    cfg = fast_config(pruner="random-dynamic", prune_ratio=0.3, epochs=2, checkpoint_dir=str(tmp_path))
    train(cfg, data=synthetic)
    x = synthetic.x_train.clone()
    x[0].add_(1)  # one other pixel value: same size, other images
    other = dataclasses.replace(synthetic, x_train=x)
    assert data_fingerprint(other) != data_fingerprint(synthetic)
    with pytest.raises(ConfigError, match="written on data with another fingerprint"):
        train({**cfg, "resume": True}, data=other)
    smaller = dataclasses.replace(synthetic, x_train=synthetic.x_train[:-64], y_train=synthetic.y_train[:-64])
    with pytest.raises(ConfigError, match=f"num_train={synthetic.num_train} but this run's data has num_train"):
        train({**cfg, "resume": True}, data=smaller)
    # the same data resumes (a finished checkpoint: nothing left to train)
    assert train({**cfg, "resume": True}, data=synthetic).row["data_fingerprint"] == data_fingerprint(synthetic)


def _import_table(tmp_path, specs, **override):
    import pandas as pd

    rows = [
        dict(
            study="hostile",
            method=s.method,
            pruner=s.pruner,
            prune_ratio=s.prune_ratio,
            seed=s.seed,
            status="FINISHED",
            final_acc=0.5,
            best_acc=0.6,
            run_key=s.run_key,
            run_id="abc",
            tracking_uri="http://elsewhere:5000",
            experiment="theirs",
        )
        for s in specs
    ]
    for k, v in override.items():
        rows[0][k] = v
    p = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    return p


@pytest.mark.parametrize(
    "col,value,words",
    [
        ("final_acc", 7.5, "outside [0, 1]"),
        ("final_acc", -3, "outside [0, 1]"),
        ("final_acc", float("nan"), "has no final_acc"),
        ("final_acc", "high", "not a finite number"),
        ("final_acc", "inf", "not a finite number"),
        ("best_acc", 4.25, "outside [0, 1]"),
        ("status", "DONE", "status 'DONE' is not one of"),
        ("seed", 1.5, "not an integer"),
        ("train_time_s", -1, "negative"),
    ],
)
def test_impossible_imported_rows_are_one_line_errors(tmp_path, col, value, words):
    from prunebench.studies import load_study
    from prunebench.studies.leaderboard import imported_rows

    specs = load_study(write_study(tmp_path)).runs()
    p = _import_table(tmp_path, specs, **{col: value})
    import re

    with pytest.raises(
        ConfigError, match=re.escape(f"--import {p}: row 1 (run_key {specs[0].run_key}): ") + ".*" + re.escape(words)
    ):
        imported_rows([p], specs)


def test_imported_rows_keep_their_store_and_other_data_is_not_imported(tmp_path):
    from prunebench.studies import load_study
    from prunebench.studies.leaderboard import _results_frame, imported_rows

    study = load_study(write_study(tmp_path))
    specs = study.runs()
    legacy = _import_table(tmp_path, specs)  # written before data_fingerprint existed: matched by key
    rows, lines = imported_rows([legacy], specs, fingerprint="0123456789abcdef")
    assert set(rows) == {s.run_key for s in specs}
    frame = _results_frame(study, specs, rows, "sqlite:///local.db")
    assert set(frame["tracking_uri"]) == {"http://elsewhere:5000"} and set(frame["experiment"]) == {"theirs"}
    other = _import_table(tmp_path, specs, data_fingerprint="ffffffffffffffff")
    rows, lines = imported_rows([other], specs, fingerprint="0123456789abcdef")
    assert specs[0].run_key not in rows and "1 ran on other data" in lines[0]


# ---------------------------------------------------------------------------------------------------
# 5. one study on one store is trained once; workers die with their parent
# ---------------------------------------------------------------------------------------------------


def _cli(args, cwd, **env):
    import subprocess
    import sys

    e = {**os.environ, "PRUNEBENCH_OFFLINE": "1", **env}
    return subprocess.Popen(
        [sys.executable, "-m", "prunebench", *args],
        cwd=cwd,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


TWO_SEEDS = STUDY.replace("seeds = [0]", "seeds = [0, 1]").replace("epochs = 2", "epochs = 3")


def test_two_leaderboards_on_one_store_train_each_cell_once(tmp_path):
    """Different --out folders, one fresh MLflow store, started together: every cell is trained by one of
    them, the other waits for it; both tables hold every cell with the same run; nothing is 'abandoned'."""
    import pandas as pd
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    study = tmp_path / "two.toml"
    study.write_text(textwrap.dedent(TWO_SEEDS.format(name="two")))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {"PRUNEBENCH_HEARTBEAT_S": "2", "PRUNEBENCH_CLAIM_SETTLE_S": "1"}
    procs = [
        _cli(["leaderboard", str(study), "--out", str(tmp_path / o), "--tracking-uri", uri], tmp_path, **env)
        for o in ("a", "b")
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("two")
    runs = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
    keys = [r.data.tags["prunebench.run_key"] for r in runs]
    assert len(keys) == len(set(keys)) == 4, [(r.info.status, r.data.tags.get("prunebench.error")) for r in runs]
    assert all(r.info.status == "FINISHED" and "prunebench.error" not in r.data.tags for r in runs)
    a, b = (pd.read_csv(tmp_path / o / "results.csv").sort_values("run_key") for o in ("a", "b"))
    assert list(a["run_id"]) == list(b["run_id"]) and set(a["status"]) == {"FINISHED"}


def test_a_fresh_running_run_is_never_abandoned_and_a_stale_one_is(tmp_path, monkeypatch):
    import types

    from prunebench.studies import claims
    from prunebench.studies.leaderboard import _classify

    monkeypatch.setenv("PRUNEBENCH_HEARTBEAT_S", "30")
    from prunebench.studies import load_study

    spec = load_study(write_study(tmp_path)).runs()[0]

    def run(status, beat):
        return types.SimpleNamespace(
            info=types.SimpleNamespace(status=status, run_id="r", start_time=0),
            data=types.SimpleNamespace(tags={claims.HEARTBEAT_TAG: str(beat)}),
        )

    import time

    fresh, stale = run("RUNNING", time.time() - 5), run("RUNNING", time.time() - 500)
    assert _classify(spec, [fresh], None, True)[0] == "elsewhere"
    state, row, leftovers = _classify(spec, [stale], None, True)
    assert state == "todo" and leftovers == [stale]


def test_orphaned_workers_exit_when_the_leaderboard_is_killed(tmp_path):
    """kill -9 of the leaderboard process alone (OOM killer, CI timeout) with --jobs 2: both workers get
    SIGTERM from the kernel (PR_SET_PDEATHSIG), mark their runs KILLED and exit."""
    import signal
    import time

    slow = STUDY.replace("seeds = [0]", "seeds = [0, 1]").replace("epochs = 2", "epochs = 400")
    study = tmp_path / "slow.toml"
    study.write_text(textwrap.dedent(slow.format(name="slow")))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    p = _cli(["leaderboard", str(study), "--out", str(tmp_path / "o"), "--tracking-uri", uri, "--jobs", "2"], tmp_path)
    ck = tmp_path / "o" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(ck.glob("*/checkpoint.pt"))) < 2 and p.poll() is None:
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()[1]
    children = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
    workers = [
        c
        for c in children
        if "multiprocessing" in Path(f"/proc/{c}/cmdline").read_text()
        and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_text()
    ]
    assert len(workers) == 2
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 60
    while time.time() < deadline and any(
        Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2] for w in workers
    ):
        time.sleep(0.2)
    alive = [
        w for w in workers if Path(f"/proc/{w}").exists() and Path(f"/proc/{w}/stat").read_text().split()[2] != "Z"
    ]
    assert not alive
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("slow").experiment_id])
    assert sorted(r.info.status for r in runs) == ["KILLED", "KILLED"]  # SIGTERM: marked, not left RUNNING
    assert len(list(ck.glob("*/checkpoint.pt"))) == 2  # kept for the next leaderboard to resume


# ---------------------------------------------------------------------------------------------------
# 6. SIGTERM marks the run KILLED; a dead server fails the run in seconds; dead runs do not stay RUNNING
# ---------------------------------------------------------------------------------------------------

LONG_RUN = [
    "run",
    "--dataset",
    "synthetic:n=512",
    "--model",
    "mlp",
    "--epochs",
    "3000",
    "--pruner",
    "random-dynamic",
    "--prune-ratio",
    "0.3",
    "--quiet",
]


def _wait_for(pred, timeout, proc=None):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


def test_sigterm_marks_the_run_killed_and_keeps_the_checkpoint(tmp_path):
    import signal

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ck = tmp_path / "ck"
    p = _cli([*LONG_RUN, "--tracking-uri", uri, "--checkpoint-dir", str(ck)], tmp_path)
    assert _wait_for(lambda: (ck / CHECKPOINT_NAME).exists(), 300, p), p.communicate()[1]
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert err.strip().count("\n") == 0 and "terminated (SIGTERM)" in err
    state = load_checkpoint(ck)  # intact
    run = MlflowClient(uri).get_run(state["mlflow_run_id"])
    assert run.info.status == "KILLED"


def test_a_dead_process_run_is_marked_killed_by_the_next_run(synthetic, tmp_path):
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from prunebench.harness import liveness
    from prunebench.harness.tracking import MLflowTracker

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    t = MLflowTracker(uri, "e")
    t.start("orphan", {}, {})
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    t.set_tags({liveness.HOST_TAG: liveness.host_id(), liveness.PID_TAG: f"{dead}:1"})
    alive = MLflowTracker(uri, "e")
    alive.start("alive", {}, {})
    alive.set_tags(liveness.process_tags())  # this process: alive, left RUNNING
    train(fast_config(epochs=1, tracking=True, tracking_uri=uri, experiment="e"), data=synthetic)
    client = MlflowClient(uri)
    orphan = client.get_run(t.run_id)
    assert orphan.info.status == "KILLED" and f"pid {dead}" in orphan.data.tags["prunebench.error"]
    assert client.get_run(alive.run_id).info.status == "RUNNING"


def test_a_tracking_server_that_dies_mid_run_fails_the_run_within_30_s(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'srv.db'}",
            "--default-artifact-root",
            str(tmp_path / "art"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def up():
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200
            except OSError:
                return False

        assert _wait_for(up, 300, server), "mlflow server did not start"
        ck = tmp_path / "ck"
        p = _cli([*LONG_RUN, "--tracking-uri", f"http://127.0.0.1:{port}", "--checkpoint-dir", str(ck)], tmp_path)
        assert _wait_for(lambda: (ck / CHECKPOINT_NAME).exists(), 300, p), p.communicate()[1]
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        t0 = time.time()
        out, err = p.communicate(timeout=120)
        took = time.time() - t0
        assert p.returncode == 2, err
        assert "stopped answering" in err and err.strip().count("\n") == 0, err
        assert took < 30, took
        assert load_checkpoint(ck)["epoch"] >= 1  # resumable once the server is back
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# ---------------------------------------------------------------------------------------------------
# 7. bad input: one line, exit 2, nothing recorded as valid
# ---------------------------------------------------------------------------------------------------


def _image_folder(root: Path, bad: bytes | None) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (40 * i, 100 if c == "a" else 0, 0)).save(d / f"{i}.png")
    if bad is not None:
        (root / "train" / "b" / "bad.png").write_bytes(bad)
    return root


@pytest.mark.parametrize("bad,workers", [(b"\x89PNG\r\n\x1a\n" + b"\0" * 40, 0), (b"P6\n0 0\n255\n", 1)])
def test_a_corrupt_or_empty_image_is_one_line_and_the_run_failed(tmp_path, bad, workers):
    from mlflow.tracking import MlflowClient

    from prunebench.errors import DataError

    root = _image_folder(tmp_path / "imgs", bad)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = dict(
        dataset=f"imagefolder:{root}",
        model="mlp",
        epochs=1,
        batch_size=4,
        image_size=8,
        num_workers=workers,
        tracking=True,
        tracking_uri=uri,
        experiment="img",
        pruner="full",
        device="cpu",
    )
    with pytest.raises(DataError) as e:
        train(cfg)
    msg = str(e.value)
    assert "\n" not in msg and f"image {root / 'train' / 'b' / 'bad.png'} is unreadable" in msg
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("img").experiment_id])
    assert run.info.status == "FAILED"


def test_values_that_overflow_float32_are_refused(synthetic):
    with pytest.raises(ConfigError, match="overflows float32"):
        train(fast_config(lr=1e308), data=synthetic)
    with pytest.raises(ConfigError, match="overflows float32"):
        train(fast_config(pruner="orderdp", pruner_options={"candidate_ratio": 1e300}), data=synthetic)


def test_a_corrupt_sqlite_store_is_one_line(synthetic, tmp_path):
    """(A store locked by another writer gives one line too, after SQLite's busy wait: ~30-55 s, so not
    tested here.)"""
    from prunebench.errors import PrunebenchError

    db = tmp_path / "m.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(PrunebenchError) as e:
        train(fast_config(tracking=True, tracking_uri=f"sqlite:///{db}", experiment="e2"), data=synthetic)
    assert "\n" not in str(e.value) and f"sqlite:///{db}" in str(e.value)


def test_report_of_hostile_labels_renders_them_as_text(tmp_path):
    """A method label matplotlib would parse as (broken) mathtext, raw HTML and a newline in a results
    table: the figures are drawn, README.md shows them as escaped text on one table row."""
    from prunebench.reports import build_report

    df = _results_table("ok")
    evil = "$\\frac{a$<script>alert(1)</script>|x\ny"
    df.loc[df["method"] == "random-dynamic", "method"] = evil
    out = tmp_path / "rep"
    build_report(df, out)
    md = (out / "README.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    rows = [line for line in md.splitlines() if "frac" in line and line.startswith("|")]
    assert rows and all(line.rstrip().endswith("|") for line in rows)  # no row broken by the newline
    assert "<script>" not in (out / "index.html").read_text()
    assert list((out / "figures").glob("*.png"))


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_previous(synthetic, tmp_path, monkeypatch):
    from prunebench.harness import checkpoint as ckmod

    cfg = fast_config(pruner="random-dynamic", prune_ratio=0.3, epochs=3, checkpoint_dir=str(tmp_path))
    calls = []
    real = ckmod.atomic_write

    def full_after_first(path, write, durable=False):
        calls.append(path)
        if len(calls) > 1:

            def torn(t):
                t.write_bytes(b"\0" * 100)
                raise OSError(28, "No space left on device")

            return real(path, torn, durable=durable)
        return real(path, write, durable=durable)

    monkeypatch.setattr(ckmod, "atomic_write", full_after_first)
    with pytest.raises(ConfigError, match="No space left on device.*previous checkpoint is intact"):
        train(cfg, data=synthetic)
    assert load_checkpoint(tmp_path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]
