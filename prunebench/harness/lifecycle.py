"""A run's lifecycle around the training loop: preflight, tracking, resume, and how the run ends.

:func:`execute` is the whole of it: check everything that can fail before anything is written; start (or
resume) the MLflow run; prepare the pruner; train; on any exception mark the run KILLED or FAILED
(:mod:`prunebench.harness.ending`) and re-raise; on success log the row, arrays and model and end it
FINISHED. The trainer it drives is passed in (:class:`~prunebench.harness.loop.Trainer`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.harness import liveness
from prunebench.harness.checkpoint import CHECKPOINT_NAME, check_tracking_reachable, check_writable_dir, load_checkpoint
from prunebench.harness.config import MACHINE_FIELDS
from prunebench.harness.ending import mark_ended
from prunebench.harness.identity import FINGERPRINT_TAG, check_resumable, data_fingerprint
from prunebench.harness.result import RunResult, is_metric
from prunebench.harness.tracking import create_tracker, resolve_tracking_uri


def execute(tr) -> RunResult:
    """Run ``tr`` (a Trainer) from preflight to its end; returns its result (FINISHED) or re-raises."""
    cfg = tr.config
    resume_state = preflight(tr)
    # under DDP only rank 0 logs to MLflow and writes checkpoints
    tracker = create_tracker(cfg.tracking and tr.dist.is_main, cfg.tracking_uri, cfg.experiment)
    params, tags = run_params(tr), run_tags(tr, tracker)
    if resume_state is not None:
        tr.load_state_dict(resume_state)
        # the pruner's state already holds its selection: prepare() (and a static proxy run) is not repeated
        tr.pruner.context = tr.context()
        tracker.start(
            cfg.run_name or tr.pruner.label,
            params,
            tags,
            run_id=resume_state["mlflow_run_id"] if cfg.tracking else None,
        )
    else:
        tracker.start(cfg.run_name or tr.pruner.label, params, tags)
    tr.run_id = tr.dist.share(tracker.run_id)
    try:
        if tr.dist.is_main:  # tag the run with this process; runs of dead processes here: KILLED
            liveness.register(tracker)
        if tr.on_start is not None:
            tr.on_start(tr.run_id)
        if resume_state is None:
            tr.prepare_pruner()
        tr.train_epochs(tracker)
    except BaseException as e:
        tr.status, tr.error = mark_ended(tracker, e, f"after epoch {len(tr.history) - 1}")
        raise
    result = tr.result()
    log_result(tr, tracker, result, params)
    tracker.end("FINISHED")
    return result


def preflight(tr) -> dict[str, Any] | None:
    """Everything that can fail before training does so here, before anything is written; returns the
    checkpoint to resume from (``--resume``), else None."""
    cfg = tr.config
    if cfg.tracking and tr.dist.is_main:
        uri = resolve_tracking_uri(cfg.tracking_uri)
        check_tracking_reachable(uri)
        if uri.startswith("sqlite:///"):
            check_writable_dir(Path(uri[len("sqlite:///") :]).parent, 16 << 20, "tracking store folder")
    state = None
    if cfg.checkpoint_dir:
        if cfg.resume:
            state = load_checkpoint(cfg.checkpoint_dir)
            check_resumable(state, tr.identity())
        target = Path(cfg.checkpoint_dir) / CHECKPOINT_NAME
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise ConfigError(
                f"checkpoint dir {cfg.checkpoint_dir}: {target.name} there is not a regular file; "
                f"remove it or use another --checkpoint-dir"
            )
        n_params = sum(p.numel() for p in tr.model.parameters())
        need = 2 * (3 * 4 * n_params + 64 * tr.n) + (8 << 20)  # model + optimizer + pruner state, twice
        check_writable_dir(cfg.checkpoint_dir, need, "checkpoint dir")
    return state


def run_params(tr) -> dict[str, Any]:
    """The run's MLflow params: its settings as resolved (not the machine's)."""
    return {
        **{
            k: v
            for k, v in tr.config.to_dict().items()
            if k not in ("pruner_options", "tags", "resume") and k not in MACHINE_FIELDS
        },
        **tr.pruner.params(),
        "label": tr.pruner.label,
        "epochs": tr.epochs,
        "lr": tr.lr,
        "num_samples": tr.n,
        "augment": tr.batches.augment,
        "device": str(tr.device),
    }


def run_tags(tr, tracker) -> dict[str, str]:
    cfg = tr.config
    machine = {
        f"prunebench.{k}": str(v)
        for k in MACHINE_FIELDS  # this machine's values
        if (v := getattr(tracker, "uri", None) if k == "tracking_uri" else getattr(cfg, k)) is not None
    }
    return {
        "prunebench.label": tr.pruner.label,
        "prunebench.pruner": cfg.pruner,
        "prunebench.granularity": tr.pruner.granularity,
        **machine,
        FINGERPRINT_TAG: data_fingerprint(tr.data),
        **{k: str(v) for k, v in cfg.tags.items()},
    }


def log_result(tr, tracker, result: RunResult, params: dict[str, Any]) -> None:
    """The row's measured numbers as metrics (its other numbers as params), the arrays, ``run.json``."""
    numbers = {
        k: v
        for k, v in result.row.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in params
    }
    tracker.log_metrics({k: v for k, v in numbers.items() if is_metric(k)})
    tracker.log_params({k: v for k, v in numbers.items() if not is_metric(k)})
    arrays: dict[str, Any] = {"usage_counts": result.usage.astype(np.int32)}
    if tr.records.kept_masks:
        arrays["kept_masks_packed"] = result.kept_masks
        arrays["last_kept_indices"] = np.flatnonzero(result.kept_mask(len(tr.records.kept_masks) - 1))
    plan_scores = tr.records.plan_scores
    if plan_scores:
        arrays["plan_scores"] = np.stack([plan_scores[e] for e in sorted(plan_scores)])
        arrays["plan_score_epochs"] = np.array(sorted(plan_scores), dtype=np.int32)
    arrays.update({f"static_{k}": v for k, v in tr.pruner.artifacts().items()})  # static: scores, kept
    tracker.log_arrays(arrays)
    tracker.log_dict({"config": tr.config.to_dict(), "resolved": params, "row": result.row}, "run.json")
    if tr.config.log_model:
        log_model(tr.model, tracker)


def log_model(model: torch.nn.Module, tracker) -> None:
    """The final weights as ``model/state_dict.pt``: a ``torch.save``'d dict of CPU tensors (no pickled
    classes), so ``torch.load(path, weights_only=True)`` reads it and ``create_model(...)``'s
    ``load_state_dict`` takes it (DDP's ``module.`` prefix is removed)."""
    model = getattr(model, "module", model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "state_dict.pt")
        torch.save(state, path)
        tracker.log_file(path, "model")
