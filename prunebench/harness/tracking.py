"""MLflow tracking through ``MlflowClient`` (no global fluent state, so runs can nest and run in parallel).

Tracking URI: ``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the
working directory, with artifacts in ``./mlartifacts`` beside it. Open the UI with
``mlflow ui --backend-store-uri sqlite:///mlflow.db``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from prunebench.errors import ConfigError, PrunebenchError, TrackingUnavailable

#: MLflow 3's experiment type: "custom_model_development" opens the experiment on its training runs (the
#: UI's "Machine learning" kind), not on the GenAI traces view that an untagged experiment may get
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def resolve_tracking_uri(uri: str | None) -> str:
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str(Path.cwd() / "mlflow.db")


def _artifact_root(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (``<db dir>/mlartifacts``); server stores decide themselves."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return (db.parent / "mlartifacts").resolve().as_uri()
    return None


def download_artifact(client, run_id: str, path: str, dst: str) -> str:
    """``client.download_artifacts`` without MLflow's progress bar (one per file, on stderr, by default).

    The bar is switched off by ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false`` for the call only, unless the
    caller has set that variable themselves.
    """
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    if key in os.environ:
        return client.download_artifacts(run_id, path, dst)
    os.environ[key] = "false"
    try:
        return client.download_artifacts(run_id, path, dst)
    finally:
        os.environ.pop(key, None)


class NullTracker:
    """Tracking disabled: every call is a no-op."""

    run_id: str | None = None

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str], run_id: str | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def log_dict(self, obj: Any, name: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def log_file(self, path: str, artifact_path: str | None = None) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass


def _store_init_lock(uri: str):
    """A lock beside a SQLite store (``<db>.lock``) around its first use: MLflow creates the schema on first
    use, and two processes doing that at once on a fresh store fail (alembic version race)."""
    import contextlib

    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    from prunebench.safety import file_lock

    return file_lock(uri[len("sqlite:///") :] + ".lock")


# MLflow's HTTP defaults retry a dead server for minutes (7 retries, backoff factor 2, 120 s timeout);
# prunebench bounds a call to seconds unless the user set these variables
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
}


def bound_http_retries() -> None:
    for k, v in HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)


def _unreachable(e: BaseException) -> bool:
    """Whether ``e`` says the tracking server did not answer (refused, reset, timed out, 5xx after retries)."""
    # the server dying mid-answer surfaces as requests' ChunkedEncodingError ("Connection broken:
    # IncompleteRead") wrapped in an MlflowException: read the whole exception chain, names and messages
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen and len(seen) < 10:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(f"{type(x).__name__}: {x}" for x in seen)
    return any(
        w in text
        for w in (
            "Max retries exceeded",
            "Connection refused",
            "ConnectionError",
            "timed out",
            "Read timed out",
            "RemoteDisconnected",
            "Connection aborted",
            "ConnectTimeout",
            "Connection broken",
            "IncompleteRead",
            "ChunkedEncodingError",
            "ProtocolError",
            "Connection reset",
            "too many 5",
            "503 Server Error",
            "502 Server Error",
        )
    )


class _Guarded:
    """An MlflowClient whose calls turn "the server does not answer" into one line (TrackingUnavailable)."""

    def __init__(self, client, uri: str) -> None:
        self._c, self._uri = client, uri

    def __getattr__(self, name: str):
        f = getattr(self._c, name)
        if not callable(f):
            return f

        def call(*a, **kw):
            from prunebench.harness.checkpoint import deferred_sigint

            try:
                # Ctrl-C / SIGTERM wait for the call to finish: raised inside a half-done SQLAlchemy write they
                # left its transaction open (the store locked by this very process: the run stayed RUNNING)
                with deferred_sigint():
                    return f(*a, **kw)
            except Exception as e:
                if _unreachable(e):
                    raise TrackingUnavailable(
                        f"MLflow tracking server {self._uri} stopped answering ({name}); the run is not "
                        f"finished: with --checkpoint-dir, --resume it once the server is back"
                    ) from None
                raise

        return call


def _client(uri: str, cls):
    """``MlflowClient(uri)``; a store MLflow cannot open (corrupt or locked SQLite file, a schema from a
    newer MLflow) is one line, not a traceback."""
    try:
        return cls(tracking_uri=uri)
    except Exception as e:
        msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise PrunebenchError(
            f"MLflow tracking store {uri} is unusable ({type(e).__name__}: {msg}); "
            f"use another --tracking-uri or repair the store"
        ) from None


def open_client(uri: str):
    """An ``MlflowClient`` on ``uri``, created under the store's init lock (a fresh SQLite store gets its
    schema from one process at a time: MLflow migrating it from two at once can leave it broken)."""
    from mlflow.tracking import MlflowClient

    with _store_init_lock(uri):
        return _client(uri, MlflowClient)


class MLflowTracker:
    """One MLflow run: params, per-epoch metrics, artifacts, final status."""

    def __init__(self, tracking_uri: str | None, experiment: str) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:  # pragma: no cover - mlflow is a dependency
            raise PrunebenchError(f"MLflow is not installed ({e}); install prunebench with its dependencies") from None
        self.uri = resolve_tracking_uri(tracking_uri)
        if self.uri.startswith(("http://", "https://")):
            bound_http_retries()
        if self.uri.startswith("sqlite:///"):
            db = Path(self.uri[len("sqlite:///") :])
            if not db.parent.is_dir():
                raise ConfigError(f"tracking store {self.uri}: folder {db.parent} does not exist")
            if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
                raise ConfigError(f"tracking store {self.uri} is not writable")
        if os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() == "WARNING":
            import logging

            for name in ("mlflow", "alembic"):  # mlflow sets its loggers up on import
                logging.getLogger(name).setLevel(logging.WARNING)
        self.experiment = experiment
        with _store_init_lock(self.uri):  # processes started together on a fresh store: one creates its schema
            self.client = _Guarded(_client(self.uri, MlflowClient), self.uri)
            self.experiment_id = self._experiment_id(experiment)
        self.run_id: str | None = None

    def _experiment_id(self, name: str) -> str:
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                if EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older prunebench or by hand: say what it holds
                    self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
                return exp.experiment_id
            return self.client.create_experiment(
                name, artifact_location=_artifact_root(self.uri), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
            )
        except PrunebenchError:
            raise
        except Exception as e:
            # races between parallel processes creating the same experiment: re-read once
            exp = None
            try:
                exp = self.client.get_experiment_by_name(name)
            except Exception:
                pass
            if exp is not None:
                return exp.experiment_id
            msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise PrunebenchError(f"MLflow tracking store {self.uri} is unusable: {msg}") from None

    def start(self, run_name: str, params: dict[str, Any], tags: dict[str, str], run_id: str | None = None) -> None:
        from mlflow.entities import Param

        if run_id is not None:  # resume an existing run
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            tags_now = self.client.get_run(run_id).data.tags
            if "prunebench.error" in tags_now:  # e.g. "abandoned": the run goes on from its checkpoint
                self.client.delete_tag(run_id, "prunebench.error")
            self.client.set_tag(run_id, "prunebench.resumed", "true")
            return
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={k: str(v) for k, v in tags.items()})
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [
            Metric(k, float(v), ts, step or 0) for k, v in metrics.items() if v is not None and np.isfinite(float(v))
        ]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_file(self, path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def log_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        with tempfile.TemporaryDirectory() as d:
            for name, arr in arrays.items():
                path = Path(d) / f"{name}.npy"
                np.save(path, arr)
                self.client.log_artifact(self.run_id, str(path))

    def log_dict(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / name
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)


def create_tracker(enabled: bool, tracking_uri: str | None, experiment: str) -> NullTracker | MLflowTracker:
    return MLflowTracker(tracking_uri, experiment) if enabled else NullTracker()
