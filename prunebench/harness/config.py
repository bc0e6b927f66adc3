"""The run configuration: one flat, frozen dataclass with a comment per field (timm style)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from prunebench.errors import ConfigError
from prunebench.options import build_options


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------------
    dataset: str = "digits"  # registry name: digits, synthetic[:k=v,..], cifar10, cifar100, imagenet, imagefolder:<path>; NAME:n=K[,seed=S]: a stratified subset
    model: str = "cnn-small"  # registry name or tv:<torchvision model>
    pruner: str = "orderdp"  # registry name (prunebench list)
    prune_ratio: float | None = None  # target fraction of sample-visits skipped (None: the pruner's default)
    pruner_options: dict = field(default_factory=dict)  # the method's own options (validated by the pruner)
    seed: int = 0  # run seed; model init, data order, augmentation and pruning derive their own seeds
    # --- recipe --------------------------------------------------------------------------------------
    epochs: int | None = None  # epochs of the full-data budget (None: the dataset's default)
    budget: Literal["epochs", "steps"] = "epochs"  # epochs: same epochs, fewer steps; steps: same steps as full
    batch_size: int = 128  # backprop batch size
    optimizer: Literal["sgd", "adamw", "lars", "lamb"] = "sgd"
    lr: float | None = None  # peak learning rate (None: per-optimizer default, scaled with batch size)
    momentum: float = 0.9  # SGD/LARS momentum
    nesterov: bool = True  # SGD/LARS Nesterov momentum
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine", "step", "constant"] = "onecycle"
    warmup: float = 0.3  # warm-up fraction of training (onecycle: its pct_start; cosine: linear warm-up)
    label_smoothing: float = 0.1  # in the per-sample training loss (also what pruners observe)
    augment: str | None = None  # crop+flip | crop | flip | none (None: the dataset's default)
    # --- execution -------------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when present
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False  # torch.compile the model
    eval_every: int = 1  # evaluate every k epochs (the last epoch is always evaluated)
    eval_batch_size: int = 1024
    num_workers: int = 4  # DataLoader workers (folder datasets only)
    image_size: int | None = None  # folder datasets: crop size (default 224)
    data_dir: str | None = None  # --data-dir, else $PRUNEBENCH_DATA, else ~/.cache/prunebench/data
    download: bool = True  # allow torchvision to download missing data (off if PRUNEBENCH_OFFLINE=1)
    # --- tracking --------------------------------------------------------------------------------------
    tracking: bool = True  # log the run to MLflow
    tracking_uri: str | None = None  # else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the cwd
    experiment: str = "prunebench"  # MLflow experiment name
    run_name: str | None = None  # MLflow run name (default: the pruner's label)
    tags: dict = field(default_factory=dict)  # extra MLflow tags (e.g. study name, run key)
    record_kept: bool = True  # keep per-epoch kept-set masks (Jaccard across seeds, reports)
    log_model: bool = False  # log the final weights as an MLflow artifact (model/state_dict.pt: a torch.save'd
    #                          state_dict of tensors only, loadable with torch.load(..., weights_only=True))
    # --- checkpointing (execution only: not part of a run's identity) ---------------------------------
    checkpoint_dir: str | None = None  # write an atomic checkpoint here every checkpoint_every epochs
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch is always checkpointed)
    resume: bool = False  # continue from checkpoint_dir (same MLflow run); the config must match
    # --- static methods ----------------------------------------------------------------------------------
    score_cache: str | None = "~/.cache/prunebench/scores"  # folder caching proxy-run records; None/off: no cache
    # --- gradient-direction probe (off by default: it costs two gradient passes per probed epoch) --------
    probe_epochs: tuple[int, ...] = ()  # epochs after which to compare kept-set and full-data gradients
    probe_samples: int = 2048  # size of the fixed uniform full-data sample (and cap on kept samples used)

    def __post_init__(self) -> None:
        positive = ("batch_size", "eval_every", "eval_batch_size", "checkpoint_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"config: epochs must be >= 1, got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"config: lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"config: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"config: warmup must be in [0, 1), got {self.warmup}")
        if self.weight_decay < 0 or self.momentum < 0 or self.momentum >= 1:
            raise ConfigError("config: need weight_decay >= 0 and 0 <= momentum < 1")
        if self.num_workers < 0:
            raise ConfigError(f"config: num_workers must be >= 0, got {self.num_workers}")
        if self.seed < 0:
            raise ConfigError(f"config: seed must be >= 0, got {self.seed}")
        from prunebench.catalog import augments  # the static index (no torch import; kept in sync by a test)

        AUGMENTS = augments()
        if self.augment is not None and self.augment not in AUGMENTS:
            raise ConfigError(f"config: augment {self.augment!r} is not valid; valid: {', '.join(AUGMENTS)}")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("config: resume needs checkpoint_dir (--checkpoint-dir DIR)")
        if self.probe_samples < 1 or any(e < 0 for e in self.probe_epochs):
            raise ConfigError(f"config: need probe_samples >= 1 and probe_epochs >= 0, got {self.probe_samples}, "
                              f"{self.probe_epochs}")
        if not isinstance(self.pruner_options, dict) or not isinstance(self.tags, dict):
            raise ConfigError("config: pruner_options and tags must be tables (dicts)")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> "TrainConfig":
        """Build from a dict (TOML table, CLI), coercing strings and rejecting unknown keys."""
        return build_options(cls, raw, where)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: fields that change how a run executes, not what it computes (ignored when matching a checkpoint)
EXECUTION_FIELDS = ("device", "data_dir", "download", "num_workers", "tracking", "tracking_uri", "experiment",
                    "run_name", "tags", "checkpoint_dir", "checkpoint_every", "resume", "eval_batch_size",
                    "score_cache", "log_model")


#: fields whose values belong to one machine: logged to MLflow as tags ``prunebench.<field>``, not params
MACHINE_FIELDS = ("data_dir", "checkpoint_dir", "tracking_uri", "score_cache", "num_workers")


def split_overrides(pairs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` overrides into config fields and pruner options.

    Keys naming a :class:`TrainConfig` field set it; ``pruner.KEY`` or any other key is a pruner option
    (validated later by the pruner, whose error lists its valid options).
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg, opts = {}, {}
    for k, v in pairs.items():
        if k.startswith("pruner."):
            opts[k[len("pruner."):]] = v
        elif k in fields:
            cfg[k] = v
        else:
            opts[k] = v
    return cfg, opts
