"""The run configuration: one flat, frozen dataclass whose fields carry their own metadata (timm style).

Each field is declared with :func:`~prunebench.options.option`: its type (the annotation), its valid range
or choices, a help text, and where it belongs. Everything that needs to know about the fields is derived
from this one declaration (and nothing else lists them):

* the ``prunebench run`` flags (``flag=True``; every other field through ``--set KEY=VALUE``), with help;
* the validation of a value from the command line, a study file's ``[recipe]`` or a Python dict
  (:func:`~prunebench.options.build_options`, ranges by :func:`~prunebench.options.check_ranges`);
* which fields a study's ``[recipe]`` may set (``recipe=False``: the study sets them itself);
* a run's **identity** (``identity=``), in three kinds:

  - ``"run"`` -- the experiment: data, model, method, recipe, seed and what the result row measures
    (evaluation schedule, gradient probe). Part of a leaderboard cell's run key and of the settings a
    checkpoint must be resumed with.
  - ``"resume"`` -- not the experiment, but a checkpoint must be resumed with the same value:
    ``record_kept`` (the per-epoch kept-set record would have a hole) and ``compile`` (the compiled model
    is what the checkpoint holds). Not part of the run key: a run without kept masks, or compiled, is the
    same experiment.
  - ``"execution"`` -- where and how a run executes, not what it computes: neither. **``device`` is one
    of them**: a CPU and a CUDA run of the same cell are the same experiment (as two GPU models, two torch
    versions or two thread counts are), a resumed run may move between them, and the row records the
    device it ran on (column ``device``) for a report that wants to tell them apart. What does change the
    numbers is the arithmetic, and it is identity: ``precision`` and ``channels_last`` (their ``auto``
    resolves per device, so a study meant to mix devices pins them, as the committed studies do).

* the values logged per machine (``machine=True``: MLflow tags, not params).

``legacy_key=True`` marks the execution fields the first leaderboard run key hashed (``device``,
``compile``, the checkpoint settings and ``score_cache``, as declared in a study's ``[recipe]``): the key
still hashes them, so that the keys of every cell already run stay valid (``tests/test_run_keys.py``
recomputes the committed ones). They never differ between the cells of one study file, and command-line
overrides (``--device``, ``--checkpoint-dir``) never reach a key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from prunebench.errors import ConfigError
from prunebench.options import build_options, check_ranges
from prunebench.options import option as _option

Identity = Literal["run", "resume", "execution"]


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    identity: Identity,
    recipe: bool = True,
    flag: bool = False,
    machine: bool = False,
    legacy_key: bool = False,
    **kw: Any,
) -> Any:
    """A :class:`TrainConfig` field: :func:`prunebench.options.option` with the run config's metadata."""
    return _option(
        default, help=help, identity=identity, recipe=recipe, flag=flag, machine=machine, legacy_key=legacy_key, **kw
    )


@dataclass(frozen=True)
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------------
    dataset: str = option(
        "digits",
        identity="run",
        flag=True,
        help="registry name: digits, synthetic[:k=v,..], cifar10, cifar100, imagenet, "
        "imagefolder:<path>; NAME:n=K[,seed=S]: a stratified subset (default digits)",
    )
    model: str = option(
        "cnn-small", identity="run", flag=True, help="registry name or tv:<torchvision model> (default cnn-small)"
    )
    pruner: str = option(
        "orderdp", identity="run", recipe=False, flag=True, help="registry name, see prunebench list (default orderdp)"
    )
    prune_ratio: float | None = option(
        None,
        identity="run",
        recipe=False,
        flag=True,
        ge=0.0,
        lt=1.0,
        help="target fraction p of sample-visits skipped (default: the pruner's)",
    )
    pruner_options: dict = option(
        identity="run", recipe=False, default_factory=dict, help="the method's own options (validated by the pruner)"
    )
    seed: int = option(
        0,
        identity="run",
        recipe=False,
        flag=True,
        ge=0,
        help="run seed; model init, data order, augmentation and pruning derive their own seeds",
    )
    # --- recipe --------------------------------------------------------------------------------------
    epochs: int | None = option(
        None, identity="run", flag=True, ge=1, help="epochs of the full-data budget (default: the dataset's)"
    )
    budget: Literal["epochs", "steps"] = option(
        "epochs", identity="run", help="epochs: same epochs, fewer steps; steps: same steps as full"
    )
    batch_size: int = option(128, identity="run", flag=True, ge=1, help="backprop batch size (default 128)")
    optimizer: Literal["sgd", "adamw", "lars", "lamb"] = option("sgd", identity="run", help="the optimizer")
    lr: float | None = option(
        None,
        identity="run",
        flag=True,
        gt=0.0,
        help="peak learning rate (default: per optimizer, scaled with batch size)",
    )
    momentum: float = option(0.9, identity="run", ge=0.0, lt=1.0, help="SGD/LARS momentum")
    nesterov: bool = option(True, identity="run", help="SGD/LARS Nesterov momentum")
    weight_decay: float = option(5e-4, identity="run", ge=0.0, help="weight decay")
    schedule: Literal["onecycle", "cosine", "step", "constant"] = option(
        "onecycle", identity="run", help="learning-rate schedule"
    )
    warmup: float = option(
        0.3,
        identity="run",
        ge=0.0,
        lt=1.0,
        help="warm-up fraction of training (onecycle: its pct_start; cosine: linear warm-up)",
    )
    label_smoothing: float = option(
        0.1, identity="run", ge=0.0, lt=1.0, help="in the per-sample training loss (also what pruners observe)"
    )
    augment: str | None = option(None, identity="run", help="crop+flip | crop | flip | none (default: the dataset's)")
    # --- execution -----------------------------------------------------------------------------------
    device: Literal["auto", "cpu", "cuda"] = option(
        "auto",
        identity="execution",
        flag=True,
        legacy_key=True,
        help="auto | cpu | cuda (default auto: CUDA when present)",
    )
    precision: Literal["auto", "fp32", "bf16"] = option(
        "auto", identity="run", help="auto: bf16 autocast on CUDA, fp32 on CPU"
    )
    channels_last: bool | None = option(None, identity="run", help="channels-last memory format (None: on for CUDA)")
    compile: bool = option(False, identity="resume", legacy_key=True, help="torch.compile the model")
    eval_every: int = option(
        1, identity="run", ge=1, help="evaluate every k epochs (the last epoch is always evaluated)"
    )
    eval_batch_size: int = option(1024, identity="execution", ge=1, help="evaluation batch size")
    num_workers: int = option(
        4, identity="execution", machine=True, ge=0, help="DataLoader workers (folder datasets only)"
    )
    image_size: int | None = option(None, identity="run", help="folder datasets: crop size (default 224)")
    data_dir: str | None = option(
        None,
        identity="execution",
        flag=True,
        machine=True,
        help="data folder (else $PRUNEBENCH_DATA, else ~/.cache/prunebench/data)",
    )
    download: bool = option(
        True, identity="execution", help="allow torchvision to download missing data (off if PRUNEBENCH_OFFLINE=1)"
    )
    # --- tracking ------------------------------------------------------------------------------------
    tracking: bool = option(True, identity="execution", recipe=False, flag=True, help="log the run to MLflow")
    tracking_uri: str | None = option(
        None,
        identity="execution",
        recipe=False,
        flag=True,
        machine=True,
        help="MLflow tracking URI (else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory)",
    )
    experiment: str = option(
        "prunebench", identity="execution", recipe=False, flag=True, help="MLflow experiment name (default prunebench)"
    )
    run_name: str | None = option(
        None, identity="execution", recipe=False, help="MLflow run name (default: the pruner's label)"
    )
    tags: dict = option(
        identity="execution", recipe=False, default_factory=dict, help="extra MLflow tags (e.g. study name, run key)"
    )
    record_kept: bool = option(
        True, identity="resume", help="keep per-epoch kept-set masks (Jaccard across seeds, reports)"
    )
    log_model: bool = option(
        False,
        identity="execution",
        help="log the final weights as an MLflow artifact (model/state_dict.pt: a "
        "torch.save'd state_dict of tensors only, loadable with weights_only=True)",
    )
    # --- checkpointing -------------------------------------------------------------------------------
    checkpoint_dir: str | None = option(
        None,
        identity="execution",
        flag=True,
        machine=True,
        legacy_key=True,
        help="write an atomic checkpoint into this folder every checkpoint_every epochs",
    )
    checkpoint_every: int = option(
        1,
        identity="execution",
        flag=True,
        legacy_key=True,
        ge=1,
        help="epochs between checkpoints (the last epoch is always checkpointed)",
    )
    resume: bool = option(
        False,
        identity="execution",
        flag=True,
        legacy_key=True,
        help="continue from --checkpoint-dir (same settings, same MLflow run)",
    )
    # --- static methods ------------------------------------------------------------------------------
    score_cache: str | None = option(
        "~/.cache/prunebench/scores",
        identity="execution",
        machine=True,
        legacy_key=True,
        help="folder caching proxy-run records; None/off: no cache",
    )
    # --- gradient-direction probe (off by default: it costs two gradient passes per probed epoch) ------
    probe_epochs: tuple[int, ...] = option(
        (), identity="run", ge=0, help="epochs after which to compare kept-set and full-data gradients"
    )
    probe_samples: int = option(
        2048, identity="run", ge=1, help="size of the fixed uniform full-data sample (and cap on kept samples used)"
    )

    def __post_init__(self) -> None:
        check_ranges(self, "config")
        from prunebench.catalog import augments  # the static index (no torch import; kept in sync by a test)

        AUGMENTS = augments()
        if self.augment is not None and self.augment not in AUGMENTS:
            raise ConfigError(f"config: augment {self.augment!r} is not valid; valid: {', '.join(AUGMENTS)}")
        if self.resume and not self.checkpoint_dir:
            raise ConfigError("config: resume needs checkpoint_dir (--checkpoint-dir DIR)")
        if not isinstance(self.pruner_options, dict) or not isinstance(self.tags, dict):
            raise ConfigError("config: pruner_options and tags must be tables (dicts)")

    @classmethod
    def from_dict(
        cls, raw: dict[str, Any], where: str = "config", strict: bool = False, key: Any = None
    ) -> TrainConfig:
        """Build from a dict, rejecting unknown keys: CLI strings are coerced, TOML values (``strict``) are
        type-checked as they are (see :func:`prunebench.options.check_value`)."""
        return build_options(cls, raw, where, strict=strict, key=key)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _names(**want: Any) -> tuple[str, ...]:
    """The fields whose metadata has every given value (``identity`` may be a tuple of kinds)."""

    def ok(f: dataclasses.Field, k: str, v: Any) -> bool:
        return f.metadata[k] in v if isinstance(v, tuple) else f.metadata[k] == v

    return tuple(f.name for f in dataclasses.fields(TrainConfig) if all(ok(f, k, v) for k, v in want.items()))


#: the experiment: part of the run key and of the settings a checkpoint is resumed with
RUN_FIELDS = _names(identity="run")
#: the settings a checkpoint must be resumed with (the experiment, plus record_kept and compile)
RESUME_FIELDS = _names(identity=("run", "resume"))
#: fields that change how a run executes, not what it computes (ignored when matching a checkpoint)
EXECUTION_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in RESUME_FIELDS)
#: fields whose values belong to one machine: logged to MLflow as tags ``prunebench.<field>``, not params
MACHINE_FIELDS = _names(machine=True)
#: fields a study file's [recipe] may set (the others the study sets itself, per run or in [study])
RECIPE_FIELDS = _names(recipe=True)
#: [recipe] fields a leaderboard run key hashes: the experiment's, plus the legacy-hashed ones (module doc)
RUN_KEY_RECIPE_FIELDS = tuple(n for n in RECIPE_FIELDS if n in RUN_FIELDS or n in _names(legacy_key=True))
#: fields with a ``prunebench run --flag`` of their own (the others: --set KEY=VALUE)
FLAG_FIELDS = _names(flag=True)


def resume_identity(config: TrainConfig) -> dict[str, Any]:
    """The settings a checkpoint records and is resumed with (:data:`RESUME_FIELDS`)."""
    d = config.to_dict()
    return {k: d[k] for k in RESUME_FIELDS}


def split_overrides(pairs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` overrides into config fields and pruner options.

    Keys naming a :class:`TrainConfig` field set it; ``pruner.KEY`` or any other key is a pruner option
    (validated later by the pruner, whose error lists its valid options).
    """
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg, opts = {}, {}
    for k, v in pairs.items():
        if k.startswith("pruner."):
            opts[k[len("pruner.") :]] = v
        elif k in fields:
            cfg[k] = v
        else:
            opts[k] = v
    return cfg, opts
