"""Multi-worker sweeps against a real PostgreSQL server that this test starts on loopback.

The server comes from Debian's ``postgresql`` package (``.ci/setup.d/10-postgres.sh`` installs it in CI).
Where it cannot be started the test FAILS (it never skips): a shared study is a promise of the product.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not cands:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package "
            "(sudo apt-get install -y postgresql; CI does it in .ci/setup.d/10-postgres.sh)"
        )
    return Path(cands[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server on 127.0.0.1 (trust auth, user postgres); yields its base URL."""
    import psycopg2

    bin_dir = _pg_bin()
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="prunebench-pg-")
    os.chmod(root, 0o755)
    if os.geteuid() == 0:  # postgres refuses to run as root: run it as the postgres user
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' user to run the PostgreSQL server as")
        runuser = shutil.which("runuser")
        if not runuser:
            pytest.fail("running as root and 'runuser' is missing: cannot start PostgreSQL as user postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = [runuser, "-u", "postgres", "--"]
    data, logfile = f"{root}/data", f"{root}/server.log"
    port = _free_port()

    def sh(*cmd: str, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=timeout)

    p = sh(str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if p.returncode != 0:
        pytest.fail(f"initdb failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    p = sh(
        str(bin_dir / "pg_ctl"),
        "-D",
        data,
        "-l",
        logfile,
        "-w",
        "-t",
        "60",
        "-o",
        f"-h 127.0.0.1 -p {port} -k {root} -c fsync=off -c max_connections=100",
        "start",
    )
    if p.returncode != 0:
        log = Path(logfile).read_text()[-2000:] if Path(logfile).exists() else ""
        pytest.fail(f"pg_ctl start failed ({p.returncode}): {p.stderr.strip()[-1000:]} {log}")
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna")
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}"
    finally:
        sh(str(bin_dir / "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


STUDY = """
[study]
name = "pg"
seeds = [0]

[recipe]
dataset = "synthetic"
model = "mlp"
epochs = 2
batch_size = 64
device = "cpu"

[sweeps.split]
kind = "accuracy"
pruner = "orderdp"
prune_ratio = 0.5
space = { candidate_ratio = [0.5, 1.0] }
sampler = "random"
seeds = [0]
n_trials = 8
"""


def test_two_workers_share_one_study_on_postgres(postgres, tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient

    path = tmp_path / "pg.toml"
    path.write_text(textwrap.dedent(STUDY))
    storage = f"{postgres}/optuna"
    tracking = f"{postgres}/mlflow"
    MlflowClient(tracking_uri=tracking).search_experiments()  # create the MLflow schema once, as `mlflow db upgrade`
    cmd = [
        sys.executable,
        "-m",
        "prunebench",
        "sweep",
        str(path),
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        "--out",
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PRUNEBENCH_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = []
    for w in workers:
        try:
            out, err = w.communicate(timeout=500)
        except subprocess.TimeoutExpired:
            for x in workers:
                x.kill()
            pytest.fail("sweep workers did not finish in time")
        outs.append((w.returncode, out, err))
    for rc, _out, err in outs:
        assert rc == 0, err[-3000:]

    study = optuna.load_study(study_name="pg/split", storage=storage)
    trials = study.get_trials(deepcopy=False)
    numbers = [t.number for t in trials]
    # the target is reached; two workers starting their last trial together may overshoot by one
    assert 8 <= len(trials) <= 9 and sorted(numbers) == list(range(len(trials)))
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert all(0.5 <= t.params["candidate_ratio"] <= 1.0 for t in trials)
    # both workers took part, each trial ran in exactly one of them
    per_worker = {}
    for t in trials:
        per_worker.setdefault(t.user_attrs["worker"], []).append(t.number)
    print(f"trials per worker: {per_worker}")
    assert len(per_worker) == 2, per_worker
    # each trial is exactly one FINISHED trial run in MLflow with exactly one training run nested under it
    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name("pg")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get("prunebench.kind") == "trial"]
    assert sorted(int(r.data.tags["prunebench.trial"]) for r in trial_runs) == sorted(numbers)
    assert all(r.info.status == "FINISHED" for r in trial_runs)
    sweep_runs = [r for r in runs if r.data.tags.get("prunebench.kind") == "sweep"]
    assert len(sweep_runs) == 1  # the workers share one sweep run
    for t in trials:
        tr = next(r for r in trial_runs if r.info.run_id == t.user_attrs["mlflow_run_id"])
        assert tr.data.tags["mlflow.parentRunId"] == sweep_runs[0].info.run_id
        kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tr.info.run_id]
        assert len(kids) == 1 and kids[0].info.status == "FINISHED"
        assert kids[0].data.metrics["final_acc"] == pytest.approx(t.value)
