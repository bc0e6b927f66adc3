"""What a report reads: the flat results table, the study file, and the MLflow runs' histories and artifacts.

Nothing here trains or re-scores: every number comes from the table or from what the runs logged.

Sources (``resolve_source``)
----------------------------
* a results folder ``results/<study>/`` with ``results.parquet`` (or ``results.csv``), ``study.toml`` and,
  for the study's sweeps, ``sweeps/<name>/results.csv`` (written by ``prunebench sweep``);
* a study TOML file: its results folder is ``results/<name>/`` beside the working directory (``name`` is
  the TOML's top-level key), unless ``results_dir`` is given;
* an MLflow experiment name: the table is built from the experiment's runs (params, metrics, tags).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.errors import PrunebenchError
from prunebench.harness.tracking import download_artifact


class ReportError(PrunebenchError):
    """The report's input is missing or malformed (no results, unknown experiment, bad table)."""


#: columns a results table must have (the rest is optional and used when present)
REQUIRED_COLUMNS = ("pruner", "seed", "prune_ratio", "final_acc")

#: per-epoch metric histories a report reads from MLflow (gradient ones exist only when the probe ran)
HISTORY_KEYS = (
    "test_acc",
    "train_loss",
    "jaccard",
    "kept_fraction",
    "epoch_time_s",
    "grad_cosine",
    "grad_norm_kept",
    "grad_norm_full",
)


@dataclass
class Source:
    """A resolved report input: the results table and where it came from."""

    table: pd.DataFrame
    name: str  # study or experiment name (the report's title)
    origin: str  # what the user passed, resolved (folder, file or "mlflow experiment X at URI")
    study_text: str | None = None  # the study file, verbatim, when there is one
    study_path: str | None = None
    sweeps: dict[str, pd.DataFrame] = field(default_factory=dict)  # sweep name -> its results.csv
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
# the results table
# ---------------------------------------------------------------------------------------------------


def method_from_label(label: str) -> str:
    """A method name from a run label when the table has no ``method`` column: the label without its
    prune ratio (``orderdp[c=0.8,init=3,p=0.4]`` -> ``orderdp[c=0.8,init=3]``, ``full`` -> ``full``)."""
    m = re.fullmatch(r"([^\[]+)\[(.*)\]", str(label))
    if not m:
        return str(label)
    parts = [p for p in m.group(2).split(",") if p and not p.startswith("p=")]
    return f"{m.group(1)}[{','.join(parts)}]" if parts else m.group(1)


def normalize_table(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Check the required columns and fill the optional ones the report relies on."""
    if not isinstance(df, pd.DataFrame):
        raise ReportError(f"{where}: expected a pandas DataFrame of result rows, got {type(df).__name__}")
    if df.empty:
        raise ReportError(f"{where}: the results table has no rows")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReportError(
            f"{where}: results table lacks column(s) {', '.join(missing)}; "
            f"it must have {', '.join(REQUIRED_COLUMNS)} (one row per run, see RunResult.row)"
        )
    df = df.copy()
    if "status" not in df.columns:
        df["status"] = "FINISHED"
    df["status"] = df["status"].fillna("FINISHED").astype(str)
    if "method" not in df.columns:
        df["method"] = [
            ("full" if p == "full" else method_from_label(lab))
            for p, lab in zip(df["pruner"], df.get("label", df["pruner"]))
        ]
    df["method"] = df["method"].astype(str)
    for c in ("dataset", "model", "granularity"):  # granularity: a table from elsewhere may lack it
        if c not in df.columns:
            df[c] = "?"
    numeric = (
        "seed",
        "prune_ratio",
        "final_acc",
        "best_acc",
        "epochs",
        "num_samples",
        "train_time_s",
        "selection_time_s",
        "scoring_time_s",
        "total_time_s",
        "samples_forward",
        "samples_backprop",
        "optimizer_steps",
        "realized_prune_ratio",
        "relative_compute",
        "jaccard_mean",
    )
    for c in numeric:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df.loc[df["pruner"] == "full", "prune_ratio"] = df.loc[df["pruner"] == "full", "prune_ratio"].fillna(0.0)
    df["seed"] = df["seed"].astype("Int64")
    return df


def finished(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that finished (failed runs are listed in the report, never averaged)."""
    return df[df["status"] == "FINISHED"]


def _read_table(folder: Path) -> pd.DataFrame:
    pq, csv = folder / "results.parquet", folder / "results.csv"
    if pq.is_file():
        return pd.read_parquet(pq)
    if csv.is_file():
        return pd.read_csv(csv)
    raise ReportError(
        f"no results table in {folder}: expected results.parquet or results.csv "
        f"(run the study first, e.g. prunebench leaderboard STUDY.toml)"
    )


def study_name(toml_path: Path) -> str:
    try:
        data = tomllib.loads(toml_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ReportError(f"cannot read study file {toml_path}: {str(e).splitlines()[0]}") from None
    # study files keep their name in [study] (prunebench.studies); a top-level name is accepted too
    name = data["study"].get("name") if isinstance(data.get("study"), dict) else data.get("name")
    if not isinstance(name, str) or not name:
        raise ReportError(f'study file {toml_path} has no [study] name = "..." key')
    from prunebench.errors import ConfigError
    from prunebench.safety import safe_component

    try:  # it names the folder results/<name>/
        return safe_component(name, f"study file {toml_path}: [study] name")
    except ConfigError as e:
        raise ReportError(str(e)) from None


def resolve_source(
    target: str | os.PathLike | pd.DataFrame,
    *,
    results_dir: str | os.PathLike | None = None,
    tracking_uri: str | None = None,
) -> Source:
    """Turn what the user named (DataFrame, results folder, study TOML, MLflow experiment) into a Source."""
    if isinstance(target, pd.DataFrame):
        df = normalize_table(target, "results table")
        name = str(df["study"].dropna().iloc[0]) if "study" in df.columns and df["study"].notna().any() else "results"
        return Source(df, name, "a results table passed in Python")
    path = Path(target)
    if path.is_dir() or results_dir is not None or path.suffix == ".toml":
        study_text = study_path = None
        if path.suffix == ".toml":
            if not path.is_file():
                raise ReportError(f"study file {path} does not exist")
            folder = Path(results_dir) if results_dir is not None else Path("results") / study_name(path)
            study_text, study_path = path.read_text(), str(path)
        else:
            folder = Path(results_dir) if results_dir is not None else path
        if not folder.is_dir():
            raise ReportError(f"results folder {folder} does not exist (run the study first, or pass --results DIR)")
        df = normalize_table(_read_table(folder), str(folder))
        if study_text is None and (folder / "study.toml").is_file():
            study_text, study_path = (folder / "study.toml").read_text(), str(folder / "study.toml")
        name = str(df["study"].dropna().iloc[0]) if "study" in df.columns and df["study"].notna().any() else folder.name
        from prunebench.reports.sweeps import read_sweeps

        return Source(df, name, str(folder), study_text, study_path, read_sweeps(folder))
    if os.sep in str(target) or path.suffix:
        raise ReportError(
            f"{target} does not exist: pass a results folder, a study .toml file or an MLflow experiment name"
        )
    return _source_from_mlflow(str(target), tracking_uri)


# ---------------------------------------------------------------------------------------------------
# MLflow
# ---------------------------------------------------------------------------------------------------


def _store_exists(uri: str) -> bool:
    """A local SQLite store must exist: MlflowClient would silently create an empty one."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).is_file()
    if uri.startswith("file:") or "://" not in uri:
        return Path(uri.removeprefix("file://").removeprefix("file:")).is_dir()
    return True


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _coerce(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    if v in ("True", "False"):
        return v == "True"
    if v == "None":
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if re.fullmatch(r"-?\d+", v) else f


def _source_from_mlflow(experiment: str, tracking_uri: str | None) -> Source:
    from prunebench.harness.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if not _store_exists(uri):
        raise ReportError(
            f"{experiment!r} is not a results folder or study file, and the MLflow store {uri} "
            f"does not exist (pass --tracking-uri)"
        )
    client = _client(uri)
    try:
        exp = client.get_experiment_by_name(experiment)
        names = sorted(e.name for e in client.search_experiments())
    except Exception as e:  # an unusable store
        raise ReportError(f"MLflow store {uri} is unusable: {str(e).splitlines()[0][:200]}") from None
    if exp is None:
        raise ReportError(f"unknown MLflow experiment {experiment!r} in {uri}; valid: {', '.join(names) or 'none'}")
    runs = client.search_runs([exp.experiment_id], max_results=50000)
    rows = []
    for r in runs:
        row: dict[str, Any] = {k: _coerce(v) for k, v in r.data.params.items()}
        row.update(r.data.metrics)  # the final row's numbers (the last value of per-epoch ones is irrelevant
        # here: the row's names do not overlap the per-epoch names except samples_* counters, equal at the end)
        row["run_id"] = r.info.run_id
        row["status"] = r.info.status
        row["granularity"] = r.data.tags.get("prunebench.granularity", row.get("granularity"))
        row["error"] = r.data.tags.get("prunebench.error", "")
        for k, v in r.data.tags.items():
            if k in ("study", "method", "run_key"):
                row[k] = v
        row["tracking_uri"] = uri
        row["experiment"] = experiment
        rows.append(row)
    if not rows:
        raise ReportError(f"MLflow experiment {experiment!r} in {uri} has no runs")
    df = normalize_table(pd.DataFrame(rows), f"MLflow experiment {experiment!r}")
    return Source(df, experiment, f"MLflow experiment {experiment!r} at {uri}")


class RunStore:
    """Per-run histories and artifacts from MLflow, cached; every failure becomes a note, not an error.

    A report without MLflow data still has its tables and the table-only figures.
    """

    def __init__(self, prior: PriorReport | None = None) -> None:
        self.prior = prior  # an earlier report's tables, for runs the store lacks
        self._clients: dict[str, Any] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="prunebench-report-")
        self._notes: list[str] = []
        self._missing_stores: set[str] = set()
        self._runs: dict[tuple[str, str], bool] = {}  # (store, run id) -> the store has the run

    @property
    def notes(self) -> list[str]:
        """What the report could not read, one line each (runs absent from their store counted per store)."""
        absent: dict[str, int] = {}
        for (uri, _), there in self._runs.items():
            if not there:
                absent[uri] = absent.get(uri, 0) + 1
        fallback = " unless the earlier report (--prior-report) has them" if self.prior is not None else ""
        return self._notes + [
            f"{n} run(s) are not in MLflow store {uri} (rows imported from another store?): "
            f"per-epoch figures omit them{fallback}"
            for uri, n in absent.items()
        ]

    def in_store(self, row: pd.Series) -> bool:
        """True when the run's MLflow store has it (its artifacts can be read)."""
        client = self._client_for(row.get("tracking_uri"))
        return (
            client is not None
            and isinstance(row.get("run_id"), str)
            and self._has_run(client, row["tracking_uri"], row["run_id"])
        )

    def _has_run(self, client, uri: str, run_id: str) -> bool:
        key = (uri, run_id)
        if key not in self._runs:
            try:
                client.get_run(run_id)
                self._runs[key] = True
            except Exception:
                self._runs[key] = False
        return self._runs[key]

    def close(self) -> None:
        self._tmp.cleanup()

    def _client_for(self, uri: Any):
        if not isinstance(uri, str) or not uri or (isinstance(uri, float) and math.isnan(uri)):
            return None
        if uri in self._clients:
            return self._clients[uri]
        client = None
        if _store_exists(uri):
            try:
                client = _client(uri)
            except Exception as e:
                self._notes.append(f"MLflow store {uri} unusable ({str(e).splitlines()[0][:120]})")
        elif uri not in self._missing_stores:
            self._missing_stores.add(uri)
            self._notes.append(
                f"MLflow store {uri} not found: per-epoch figures omit its runs"
                + (" unless the earlier report (--prior-report) has them" if self.prior is not None else "")
            )
        self._clients[uri] = client
        return client

    def history(self, row: pd.Series, key: str) -> pd.Series | None:
        """The per-epoch series ``key`` of a run (index: epoch), or None when not logged (a run the store
        lacks: the earlier report's history, when one was given)."""
        s = self._store_history(row, key)
        if s is None and self.prior is not None and not self.in_store(row):
            s = self.prior.history(row.get("run_id"), key)
        return s

    def _store_history(self, row: pd.Series, key: str) -> pd.Series | None:
        client = self._client_for(row.get("tracking_uri"))
        if client is None or not isinstance(row.get("run_id"), str):
            return None
        if not self._has_run(client, row["tracking_uri"], row["run_id"]):
            return None
        try:
            hist = client.get_metric_history(row["run_id"], key)
        except Exception:
            return None
        if not hist:
            return None
        s = pd.Series({m.step: m.value for m in sorted(hist, key=lambda m: (m.step, m.timestamp))}, dtype=float)
        s.index.name = "epoch"
        return s

    def array(self, row: pd.Series, name: str) -> np.ndarray | None:
        """A ``.npy`` artifact of a run, or None when absent."""
        client = self._client_for(row.get("tracking_uri"))
        if client is None or not isinstance(row.get("run_id"), str):
            return None
        if not self._has_run(client, row["tracking_uri"], row["run_id"]):
            return None
        dst = Path(self._tmp.name) / row["run_id"]
        dst.mkdir(exist_ok=True)
        try:
            local = download_artifact(client, row["run_id"], f"{name}.npy", str(dst))
            return np.load(local)
        except Exception:
            return None

    def kept_masks(self, row: pd.Series) -> np.ndarray | None:
        """Boolean [epochs, N] kept masks of a run (unpacked), or None."""
        packed = self.array(row, "kept_masks_packed")
        n = row.get("num_samples")
        if packed is None or n is None or pd.isna(n):
            return None
        return np.unpackbits(packed, axis=1, count=int(n)).astype(bool)


class PriorReport:
    """The per-run tables of an earlier report folder (``tables/runs.csv``, ``histories.csv``,
    ``jaccard_cross_seed.csv``, ``usage_histograms.csv``, ``orderdp_keep_by_rank.csv``), standing in for
    MLflow data that the current store lacks (e.g. a store that is gone), so a report can be rebuilt from
    a committed table without retraining.

    Per-epoch histories are matched by ``run_id``. The earlier report's aggregates over seeds (cross-seed
    overlap, usage histograms, OrderDP keep-by-rank) are reused for a (method, prune ratio) only when the
    earlier report aggregated exactly the same runs (the same set of ``run_id``). Everything is read
    into memory at once, so the earlier folder may be the one being rewritten. ``used`` says what was taken.
    """

    TABLES = ("runs.csv", "histories.csv", "jaccard_cross_seed.csv", "usage_histograms.csv", "orderdp_keep_by_rank.csv")

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        tabdir = self.folder / "tables"
        if not (tabdir / "runs.csv").is_file():
            raise ReportError(f"--prior-report {self.folder}: not a report folder (no tables/runs.csv)")
        self.tables: dict[str, pd.DataFrame] = {}
        for name in self.TABLES:
            path = tabdir / name
            if path.is_file():
                try:
                    self.tables[name] = pd.read_csv(path)
                except (OSError, ValueError) as e:
                    raise ReportError(f"--prior-report {self.folder}: unreadable {name} ({type(e).__name__})") from None
        runs = self.tables["runs.csv"]
        if "run_id" not in runs.columns or "method" not in runs.columns:
            raise ReportError(f"--prior-report {self.folder}: tables/runs.csv lacks run_id or method")
        self._groups: dict[tuple[str, float], frozenset] = {}
        for (m, p), g in runs[runs.get("status", "FINISHED") == "FINISHED"].groupby(["method", "prune_ratio"]):
            self._groups[(str(m), round(float(p), 9))] = frozenset(g["run_id"].dropna().astype(str))
        h = self.tables.get("histories.csv")
        self._hist = {k: g for k, g in h.groupby(["run_id", "key"])} if h is not None and len(h) else {}
        self.used: dict[str, set] = {}

    def _note(self, what: str, item: Any) -> None:
        self.used.setdefault(what, set()).add(item)

    def history(self, run_id: Any, key: str) -> pd.Series | None:
        g = self._hist.get((str(run_id), key))
        if g is None or g.empty:
            return None
        self._note("per-epoch histories (runs)", str(run_id))
        s = pd.Series(g["value"].to_numpy(dtype=float), index=g["epoch"].astype(int).to_numpy(), dtype=float)
        s.index.name = "epoch"
        return s.sort_index()

    def same_runs(self, method: str, prune_ratio: float, run_ids) -> bool:
        """True when the earlier report aggregated exactly these runs for (method, prune ratio)."""
        want = frozenset(str(r) for r in run_ids if isinstance(r, str))
        return bool(want) and self._groups.get((str(method), round(float(prune_ratio), 9))) == want

    def group_table(self, name: str, method: str, prune_ratio: float) -> pd.DataFrame | None:
        t = self.tables.get(name)
        if t is None or "method" not in t.columns:
            return None
        g = t[(t["method"].astype(str) == str(method)) & np.isclose(t["prune_ratio"].astype(float), float(prune_ratio))]
        if g.empty:
            return None
        self._note(name, f"{method} p={prune_ratio:g}")
        return g

    def summary(self) -> list[str]:
        """One line per kind of data taken from the earlier report."""
        out = []
        for what, items in sorted(self.used.items()):
            n = len(items)
            label = {
                "jaccard_cross_seed.csv": "cross-seed overlap (method, ratio cells)",
                "usage_histograms.csv": "usage histograms (method, ratio cells)",
                "orderdp_keep_by_rank.csv": "OrderDP keep-by-rank (method, ratio cells)",
            }.get(what, what)
            out.append(f"{label}: {n} from the earlier report {self.folder} (its tables/, not in the MLflow store)")
        return out
