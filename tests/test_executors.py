"""Executors (local pool with GPU placement, Ray, Slurm through submitit), ``prunebench status``, and
``prunebench run --resume`` without a checkpoint.

Ray and Slurm run for real (nothing mocked): a Ray head and a second node started with ``ray start`` on
127.0.0.1, and a single-node Slurm cluster (``scripts/slurm_local.sh``; Debian's slurm-wlm and munge,
installed by ``scripts/setup-slurm.sh``). Every daemon a test starts is stopped by it, by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from prunebench.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

TINY = """
[study]
name = "{name}"
seeds = {seeds}
prune_ratios = [0.5]

[recipe]
dataset = "digits"
model = "mlp"
epochs = {epochs}
batch_size = 32
device = "cpu"

[methods.random-dynamic]
"""


def _study(tmp_path: Path, name: str = "ex", seeds=(0,), epochs: int = 2, extra: str = "") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(textwrap.dedent(TINY.format(name=name, seeds=list(seeds), epochs=epochs)) + extra)
    return p


def _runs(uri: str, experiment: str):
    """The experiment's runs; the store opened under prunebench's lock beside it (``<db>.lock``): MLflow
    creating a fresh SQLite store's schema from two processes at once can leave it broken."""
    from mlflow.tracking import MlflowClient

    from prunebench.safety import file_lock

    with file_lock(uri[len("sqlite:///") :] + ".lock"):
        client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000) if exp else []


# ---------------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------------


def test_executor_table_flags_and_errors(tmp_path):
    from prunebench.studies import load_study
    from prunebench.studies.executors import ExecutorSpec, parse_executor, sbatch_parameters

    path = _study(
        tmp_path,
        extra='\n[executor]\nkind = "slurm"\npartition = "gpu"\ntime_limit_min = 240\n'
        'sbatch = ["--qos=high", "--exclusive"]\ngpus_per_run = 1\n',
    )
    study = load_study(path)
    assert study.executor == ExecutorSpec(
        kind="slurm", partition="gpu", time_limit_min=240, gpus_per_run=1.0, sbatch=("--qos=high", "--exclusive")
    )
    # flags (strings, as the CLI passes them) win over the table
    ex = parse_executor({"kind": "slurm", "partition": "gpu"}, partition="debug", cpus_per_run="4", gpus="0,2")
    assert (ex.partition, ex.cpus_per_run, ex.gpus) == ("debug", 4, ("0", "2"))
    assert sbatch_parameters(("--qos=high", "--exclusive", "--mem-per-cpu=4G")) == {
        "qos": "high",
        "exclusive": True,
        "mem_per_cpu": "4G",
    }
    bad = _study(tmp_path, "bad", extra='\n[executor]\nkind = "slurm"\npartiton = "gpu"\n')
    with pytest.raises(ConfigError, match=r"executor\.partiton: unknown key; valid keys in executor: kind, "):
        load_study(bad)
    for kw, msg in [
        ({"kind": "k8s"}, "valid: local, ray, slurm"),
        ({"cpus_per_run": 0}, "cpus_per_run"),
        ({"gpus_per_run": 1.5}, "whole number"),
        ({"gpus": ["a"]}, "GPU indices"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_executor(kw)
    # the [executor] table is not part of any run key: the committed cells stay done
    plain = load_study(_study(tmp_path, "ex2"))
    (tmp_path / "x").mkdir()
    with_table = load_study(_study(tmp_path / "x", "ex2", extra='\n[executor]\nkind = "ray"\n'))
    assert [s.run_key for s in plain.runs()] == [s.run_key for s in with_table.runs()]


def test_local_slots_place_runs_on_gpus():
    from prunebench.studies.executors import local_slots

    env = lambda slots: [s["CUDA_VISIBLE_DEVICES"] for s in slots]  # noqa: E731
    assert local_slots(2, 0, ("0", "1")) is None  # CPU runs: workers inherit the environment
    assert env(local_slots(2, 1, ("0", "1"))) == ["0", "1"]
    assert env(local_slots(3, 1, ("4", "5", "7"))) == ["4", "5", "7"]  # names as CUDA_VISIBLE_DEVICES gives them
    assert env(local_slots(2, 2, ("0", "1", "2", "3"))) == ["0,1", "2,3"]
    assert env(local_slots(4, 0.5, ("0", "1"))) == ["0", "1", "0", "1"]  # spread first, then share
    assert env(local_slots(2, 0.5, ("0",))) == ["0", "0"]  # two jobs on one GPU
    with pytest.raises(ConfigError, match="--jobs 3 with 1 GPU"):
        local_slots(3, 1, ("0", "1"))
    with pytest.raises(ConfigError, match="no GPU is visible"):
        local_slots(2, 1, ())


# ---------------------------------------------------------------------------------------------------
# local pool: each worker's CUDA_VISIBLE_DEVICES, status, resume without a checkpoint
# ---------------------------------------------------------------------------------------------------


def test_local_pool_gives_each_worker_its_gpu_and_status_reads_the_store(tmp_path):
    """Placement is checked through the environment each worker receives (the claim records the worker's
    CUDA_VISIBLE_DEVICES in its MLflow run); no GPU is needed (the recipe trains on CPU)."""
    from prunebench.studies import load_study, run_leaderboard
    from prunebench.studies.executors import ExecutorSpec
    from prunebench.studies.status import grid_status

    study = load_study(_study(tmp_path, seeds=(0, 1)))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = grid_status(study, uri)
    assert list(before["state"]) == ["pending"] * 4 and not (tmp_path / "mlflow.db").exists()
    res = run_leaderboard(
        study, tmp_path / "out", jobs=2, tracking_uri=uri, executor=ExecutorSpec(gpus=("3", "5"), gpus_per_run=1)
    )
    assert (res["status"] == "FINISHED").all()
    runs = _runs(uri, "ex")
    by_pid = {}
    for r in runs:
        by_pid.setdefault(r.data.tags["prunebench.pid"], set()).add(r.data.tags["prunebench.cuda_visible_devices"])
    assert all(len(v) == 1 for v in by_pid.values()), by_pid  # a worker keeps its GPU
    assert set().union(*by_pid.values()) <= {"3", "5"}
    if len(by_pid) == 2:  # both workers took cells: different GPUs
        assert set().union(*by_pid.values()) == {"3", "5"}
    after = grid_status(study, uri)
    assert list(after["state"]) == ["done"] * 4
    assert set(after["run_id"]) == {r.info.run_id for r in runs}


def test_status_tells_done_running_failed_pending(tmp_path, capsys):
    """Runs made by hand in the store, one per state; a RUNNING run of another machine counts as running
    while its heartbeat is fresh, and as pending (abandoned) once it is stale."""
    from mlflow.tracking import MlflowClient

    from prunebench.cli import main
    from prunebench.studies import load_study
    from prunebench.studies.status import grid_status

    path = _study(tmp_path, seeds=(0, 1, 2))
    study = load_study(path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ex")
    specs = study.runs()
    now = time.time()

    def make(spec, status, beat=None):
        tags = {k: str(v) for k, v in spec.config.tags.items()}
        tags["prunebench.host"] = "elsewhere/00000000"
        if beat is not None:
            tags["prunebench.heartbeat"] = f"{beat:.3f}"
        r = client.create_run(exp, tags=tags)
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status=status)
        return r.info.run_id

    ids = {
        0: make(specs[0], "FINISHED"),
        1: make(specs[1], "FAILED"),
        2: make(specs[2], "RUNNING", now),
        3: make(specs[3], "RUNNING", now - 3600),
    }
    make(specs[4], "KILLED")
    make(specs[4], "FINISHED")  # retried: done
    st = grid_status(study, uri)
    assert list(st["state"]) == ["done", "failed", "running", "pending", "done", "pending"]
    assert list(st["run_id"][:3]) == [ids[0], ids[1], ids[2]] and not isinstance(st["run_id"][3], str)
    assert st["host"][2] == "elsewhere"
    assert main(["status", str(path), "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ex leaderboard: 6 cells: 2 done, 1 running, 1 failed, 2 pending"
    assert main(["status", str(path), "--tracking-uri", uri, "--json"]) == 0
    assert [c["state"] for c in json.loads(capsys.readouterr().out)] == list(st["state"])


def test_run_resume_without_checkpoint_starts_from_scratch_and_says_so(tmp_path, capsys):
    from prunebench.cli import main
    from prunebench.harness.checkpoint import CHECKPOINT_NAME

    ck = tmp_path / "ck"
    argv = ["run", "--epochs", "2", "--quiet", "--no-tracking", "--checkpoint-dir", str(ck), "--resume", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"--resume: no checkpoint at {ck / CHECKPOINT_NAME} yet: starting from scratch" in err
    first = json.loads(out)
    assert (ck / CHECKPOINT_NAME).is_file()
    # the same command again (a requeued job): resumes the finished checkpoint, says nothing about scratch
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "starting from scratch" not in err
    assert json.loads(out)["final_acc"] == first["final_acc"]


# ---------------------------------------------------------------------------------------------------
# Slurm: a single-node cluster on this machine
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm():
    if os.geteuid() != 0:
        pytest.fail("the Slurm test starts slurmctld/slurmd and needs root (CI runs as root)")
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "scancel"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            pytest.fail(f"{tool} not found: install Debian's slurm-wlm and munge (scripts/setup-slurm.sh)")
    state = Path("/tmp") / f"prunebench-slurm-{os.getpid()}"
    env = {**os.environ, "PRUNEBENCH_SLURM_STATE": str(state)}
    p = subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm_local.sh"), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if p.returncode != 0:
        pytest.fail(f"slurm_local.sh start failed: {p.stderr[-2000:]}")
    try:
        yield env
    finally:  # cancel what is left (a failed test), let the job steps end, then stop the daemons
        subprocess.run(["scancel", "--user", str(os.geteuid())], env=env, timeout=60)
        for _ in range(60):
            if not subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip():
                break
            time.sleep(1)
        subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "stop"], env=env, timeout=60)
        shutil.rmtree(state, ignore_errors=True)


def _cli(args, cwd, env=None, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "prunebench", *args],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


@pytest.mark.slow
@pytest.mark.engines
def test_slurm_job_array_then_scancel_resumes_from_checkpoint(slurm, tmp_path):
    path = _study(tmp_path, "slurmgrid", seeds=(0,), epochs=25)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**slurm, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PRUNEBENCH_HEARTBEAT_S": "2"}
    args = [
        "leaderboard",
        str(path),
        "--out",
        str(tmp_path / "out"),
        "--tracking-uri",
        uri,
        "--executor",
        "slurm",
        "--time-limit",
        "10",
    ]
    t0 = time.perf_counter()
    drv = _cli(args, tmp_path, env)
    try:
        _slurm_scancel_then_resume(drv, args, env, uri, tmp_path, t0)
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.communicate()


def _slurm_scancel_then_resume(drv, args, env, uri, tmp_path, t0):
    victim = None
    deadline = time.time() + 900
    while victim is None and time.time() < deadline and drv.poll() is None:
        time.sleep(0.3)
        try:
            runs = _runs(uri, "slurmgrid")
        except Exception:
            continue
        for r in runs:
            key = r.data.tags.get("prunebench.run_key")
            ck = tmp_path / "out" / "checkpoints" / str(key) / "checkpoint.pt"
            if r.info.status == "RUNNING" and "prunebench.slurm_job_id" in r.data.tags and ck.is_file():
                victim = r
                break
    if victim is None:
        out, err = drv.communicate(timeout=60) if drv.poll() is not None else ("", "(driver still running)")
        raise AssertionError(f"no cell reached its first checkpoint while running on Slurm: {err[-3000:]}")
    # the task as <array job>_<task>: task 0's SLURM_JOB_ID equals the array's id, which scancel reads as the whole array
    tags = victim.data.tags
    subprocess.run(
        ["scancel", f"{tags['prunebench.slurm_array_job_id']}_{tags['prunebench.slurm_array_task_id']}"],
        check=True,
        timeout=30,
    )
    out, err = drv.communicate(timeout=900)
    first_s = time.perf_counter() - t0
    assert drv.returncode == 1, err[-3000:]  # one cell did not finish
    assert "job array" in err
    key = victim.data.tags["prunebench.run_key"]
    killed = [r for r in _runs(uri, "slurmgrid") if r.data.tags.get("prunebench.run_key") == key]
    assert [r.info.status for r in killed] == ["KILLED"], [r.info.status for r in killed]
    assert (tmp_path / "out" / "checkpoints" / key / "checkpoint.pt").is_file()
    # the same command again: the cancelled cell continues from its checkpoint, in the same MLflow run
    t1 = time.perf_counter()
    drv = _cli(args, tmp_path, env)
    out, err = drv.communicate(timeout=900)
    assert drv.returncode == 0, err[-3000:]
    assert "1 to run" in err and "(1 from their checkpoints)" in err, err
    runs = _runs(uri, "slurmgrid")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    assert victim.info.run_id in {r.info.run_id for r in runs}
    print(f"slurm: first pass {first_s:.1f}s, resume pass {time.perf_counter() - t1:.1f}s")


# ---------------------------------------------------------------------------------------------------
# Ray: a head and a second node on 127.0.0.1
# ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """PIDs below ``pid`` (from /proc; psutil is not a dependency)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                children.setdefault(int(stat[stat.rindex(")") + 2 :].split()[1]), []).append(int(d.name))
            except (OSError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _kill_tree(pid: int) -> None:
    for p in [*_descendants(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def ray_cluster(tmp_path):
    ray_bin = Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.fail('ray is not installed: pip install "ray[default]" (the test extra has it)')
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_USAGE_STATS_ENABLED": "0",
        "OMP_NUM_THREADS": "1",
        "PRUNEBENCH_HEARTBEAT_S": "2",
    }
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--block", "--disable-usage-stats"]
    nodes = []
    # a short temp dir: Ray's unix sockets live under it, and a path over ~107 bytes (pytest's tmp_path plus
    # Ray's session_<date>_<pid>/sockets/plasma_store) keeps the head from ever coming up
    ray_tmp = tempfile.mkdtemp(prefix="pbray-", dir="/tmp")

    def start(args):
        log = open(Path(ray_tmp) / f"start-{len(nodes)}.log", "w")  # the node outlives this call
        p = subprocess.Popen(
            ["nice", "-n", "19", str(ray_bin), "start", *args, *common],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        nodes.append(p)
        return p

    start(["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={ray_tmp}"])
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 420  # a loaded machine: the nodes run under nice 19
        while time.time() < deadline:
            if (
                subprocess.run(
                    [str(ray_bin), "status", f"--address={address}"], env=env, capture_output=True, timeout=300
                ).returncode
                == 0
            ):
                break
            time.sleep(1)
        second = start([f"--address={address}", '--resources={"worker2": 1}'])
        s = ""
        while time.time() < deadline:
            s = subprocess.run(
                [str(ray_bin), "status", f"--address={address}"], env=env, capture_output=True, text=True, timeout=300
            ).stdout
            if "worker2" in s and "2.0 CPU" in s.replace("0.0/", ""):
                break
            time.sleep(1)
        else:
            logs = "".join(f"{f.name}: {f.read_text()[-600:]}" for f in sorted(Path(ray_tmp).glob("start-*.log")))
            pytest.fail(f"the two-node Ray cluster did not come up; ray status: {s[-600:]}; {logs}")
        yield address, env, second
    finally:
        for p in reversed(nodes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # ray start --block stops its node's processes
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            _kill_tree(p.pid)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.engines
def test_ray_grid_survives_losing_a_node(ray_cluster, tmp_path):
    address, env, second = ray_cluster
    path = _study(tmp_path, "raygrid", seeds=(0, 1), epochs=20)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.perf_counter()
    drv = _cli(
        [
            "leaderboard",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--tracking-uri",
            uri,
            "--executor",
            "ray",
            "--ray-address",
            address,
            "--quiet",
        ],
        tmp_path,
        env,
    )
    try:
        _ray_lose_node(drv, second, uri, tmp_path, path, env, t0)
    finally:
        if drv.poll() is None:
            drv.kill()
            drv.communicate()


def _ray_lose_node(drv, second, uri, tmp_path, path, env, t0):
    killed = None
    deadline = time.time() + 900
    while killed is None and time.time() < deadline and drv.poll() is None:
        time.sleep(0.3)
        try:
            node2 = _descendants(second.pid)
            runs = _runs(uri, "raygrid")
        except Exception:
            continue
        for r in runs:
            pid = int(r.data.tags.get("prunebench.pid", "0:").split(":")[0] or 0)
            ck = tmp_path / "out" / "checkpoints" / str(r.data.tags.get("prunebench.run_key")) / "checkpoint.pt"
            if r.info.status == "RUNNING" and pid in node2 and ck.is_file():
                _kill_tree(second.pid)  # kill -9 the second node: its raylet, workers and the cell in flight
                killed = r
                break
    assert killed is not None, "no cell reached a checkpoint on the second node"
    out, err = drv.communicate(timeout=900)
    ray_s = time.perf_counter() - t0
    assert drv.returncode == 0, err[-3000:]
    runs = _runs(uri, "raygrid")
    finished = {}
    for r in runs:
        if r.info.status == "FINISHED":
            finished.setdefault(r.data.tags["prunebench.run_key"], []).append(r)
    assert len(finished) == 4 and all(len(v) == 1 for v in finished.values()), [
        (r.data.tags.get("prunebench.method"), r.info.status) for r in runs
    ]
    assert killed.info.run_id in {v[0].info.run_id for v in finished.values()}  # resumed in the same run
    # the same study run locally (2 jobs, 1 thread each, as each Ray task): the same accuracies
    local_uri = f"sqlite:///{tmp_path / 'local.db'}"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "prunebench",
            "leaderboard",
            str(path),
            "--out",
            str(tmp_path / "local"),
            "--tracking-uri",
            local_uri,
            "--jobs",
            "2",
            "--quiet",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    local = {r.data.tags["prunebench.run_key"]: r.data.metrics["final_acc"] for r in _runs(local_uri, "raygrid")}
    assert {k: v[0].data.metrics["final_acc"] for k, v in finished.items()} == local
    print(f"ray: grid with a node lost {ray_s:.1f}s")


# ---------------------------------------------------------------------------------------------------
# claims on a PostgreSQL store: two drivers, one grid
# ---------------------------------------------------------------------------------------------------

from test_studies_postgres import postgres  # noqa: E402,F401  (the throw-away PostgreSQL server fixture)


@pytest.mark.slow
def test_two_drivers_on_postgres_train_each_cell_once(postgres, tmp_path):  # noqa: F811
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    uri = f"{postgres}/mlflow"
    MlflowClient(tracking_uri=uri).search_experiments()  # create the schema once, as `mlflow db upgrade`
    path = _study(tmp_path, "pgclaims", seeds=(0,), epochs=3)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PRUNEBENCH_HEARTBEAT_S": "2"}
    drivers = [
        _cli(
            ["leaderboard", str(path), "--out", str(tmp_path / f"out{i}"), "--tracking-uri", uri, "--quiet"],
            tmp_path,
            env,
        )
        for i in range(2)
    ]
    for d in drivers:
        out, err = d.communicate(timeout=600)
        assert d.returncode == 0, err[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("pgclaims")
    live = client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)
    keys = [r.data.tags["prunebench.run_key"] for r in live]
    assert sorted(r.info.status for r in live) == ["FINISHED", "FINISHED"] and len(set(keys)) == 2
    # both drivers' tables hold the same two runs
    import pandas as pd

    ids = [set(pd.read_csv(tmp_path / f"out{i}" / "results.csv")["run_id"]) for i in range(2)]
    assert ids[0] == ids[1] == {r.info.run_id for r in live}
