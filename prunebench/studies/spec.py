"""Study files: a TOML file -> a validated :class:`Study` -> the grid of runs, each with a stable run key.

A study file declares the dataset, model and recipe once, the methods (a name, a registered pruner, its
options, its prune ratios), the seeds, the MLflow experiment and, optionally, Optuna sweeps. Every
mistake is a :class:`~prunebench.errors.ConfigError` of one line naming the file, the key and what is
valid. See the README's "Studies" section for the format.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prunebench.errors import ConfigError
from prunebench.harness.config import TrainConfig

#: TrainConfig fields a study owns itself (per run, or in [study]); they may not appear in [recipe]
_NOT_IN_RECIPE = ("pruner", "prune_ratio", "pruner_options", "seed", "tags", "experiment", "tracking",
                  "tracking_uri", "run_name")
RECIPE_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_IN_RECIPE)
#: recipe fields that change where or how a run executes but not what it computes: left out of run keys
EXECUTION_KEYS = ("data_dir", "download", "num_workers", "eval_batch_size", "record_kept", "log_model")

TOP_KEYS = ("study", "recipe", "methods", "sweeps")
STUDY_KEYS = ("name", "description", "experiment", "tracking_uri", "seeds", "prune_ratios")
METHOD_KEYS = ("pruner", "options", "prune_ratios")
SWEEP_KINDS = ("split", "pareto")
SWEEP_KEYS = ("kind", "pruner", "options", "prune_ratio", "space", "n_trials", "seeds", "storage",
              "study_name", "sampler", "seed", "early_stopping", "early_stopping_startup_trials",
              "early_stopping_warmup_epochs")
SPACE_KEYS = {"split": ("candidate_ratio",), "pareto": ("prune_ratio", "split")}
SAMPLERS = ("tpe", "random", "nsga2")
REFERENCE = "full"  # the method every leaderboard compares with: once per seed, prune ratio 0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class MethodSpec:
    """One method of a study: its name in the file, a registered pruner, its options and prune ratios."""

    name: str
    pruner: str
    options: dict[str, Any]
    prune_ratios: tuple[float, ...]


@dataclass(frozen=True)
class SweepSpec:
    """One Optuna sweep of a study (``kind`` ``split`` or ``pareto``)."""

    name: str
    kind: Literal["split", "pareto"]
    pruner: str
    options: dict[str, Any]
    prune_ratio: float | None  # split: the fixed prune ratio
    space: dict[str, tuple[float, float]]  # parameter -> (low, high)
    n_trials: int  # finished trials (complete or early-stopped) the study should reach, over all workers
    seeds: tuple[int, ...]  # each trial trains once per seed; the objective is the mean over them
    storage: str | None  # Optuna RDB storage URL (else --storage, else a SQLite file in the out dir)
    study_name: str  # the Optuna study name inside the storage
    sampler: Literal["tpe", "random", "nsga2"]
    seed: int  # sampler seed (mixed with the worker's identity, so workers do not propose alike)
    early_stopping: bool  # Optuna's median pruner on per-epoch accuracy ("early-stopped trials")
    early_stopping_startup_trials: int
    early_stopping_warmup_epochs: int


@dataclass(frozen=True)
class RunSpec:
    """One run of a leaderboard grid."""

    method: str
    pruner: str
    options: dict[str, Any]
    prune_ratio: float
    seed: int
    run_key: str
    config: TrainConfig


@dataclass(frozen=True)
class Study:
    """A validated study file. Build it with :func:`load_study`."""

    name: str
    path: Path
    source: str  # the file's text (copied next to the results)
    description: str
    experiment: str
    tracking_uri: str | None
    seeds: tuple[int, ...]
    recipe: dict[str, Any]  # validated [recipe] values as given (TrainConfig fields)
    methods: tuple[MethodSpec, ...]  # the reference `full` first
    sweeps: dict[str, SweepSpec] = field(default_factory=dict)

    def base_config(self, **changes: Any) -> TrainConfig:
        """The recipe as a :class:`TrainConfig` with the study's experiment, plus ``changes``."""
        raw = {**self.recipe, "experiment": self.experiment, "tracking_uri": self.tracking_uri, **changes}
        return TrainConfig(**raw)

    def run_key(self, method: MethodSpec | str, pruner: str, options: dict[str, Any], prune_ratio: float,
                seed: int) -> str:
        """Stable hash of study + method + pruner options (defaults filled in) + ratio + seed + recipe."""
        name = method.name if isinstance(method, MethodSpec) else method
        cfg = self.base_config().to_dict()
        recipe = {k: v for k, v in cfg.items() if k in RECIPE_KEYS and k not in EXECUTION_KEYS}
        payload = {"study": self.name, "method": name, "pruner": pruner, "options": full_options(pruner, options),
                   "prune_ratio": float(prune_ratio), "seed": int(seed), "recipe": recipe}
        blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def runs(self, **config_changes: Any) -> list[RunSpec]:
        """The grid: every method x its prune ratios x the seeds (``full`` once per seed), in file order."""
        out = []
        for seed in self.seeds:
            for m in self.methods:
                for p in m.prune_ratios:
                    key = self.run_key(m, m.pruner, m.options, p, seed)
                    tags = {"prunebench.study": self.name, "prunebench.method": m.name, "prunebench.run_key": key,
                            "prunebench.kind": "leaderboard"}
                    cfg = self.base_config(pruner=m.pruner, prune_ratio=p, pruner_options=dict(m.options), seed=seed,
                                           tags=tags, run_name=f"{m.name} p={p:g} seed={seed}", **config_changes)
                    out.append(RunSpec(m.name, m.pruner, dict(m.options), p, seed, key, cfg))
        return out


def full_options(pruner: str, options: dict[str, Any]) -> dict[str, Any]:
    """The pruner's options with defaults filled in (so spelling out a default keeps the run key)."""
    from prunebench.options import build_options
    from prunebench.pruners import get_pruner_class

    opts = build_options(get_pruner_class(pruner).Options, options, f"pruner {pruner!r}")
    return dataclasses.asdict(opts)


# ---------------------------------------------------------------------------------------------------
# loading and validation
# ---------------------------------------------------------------------------------------------------


class _File:
    """Error helper: every message starts with the file name and the dotted key."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)

    def error(self, key: str, msg: str) -> ConfigError:
        return ConfigError(f"{self.name}: {key}: {msg}" if key else f"{self.name}: {msg}")

    def table(self, raw: Any, key: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.error(key, f"expected a table, got {_tname(raw)}")
        return raw

    def unknown(self, raw: dict[str, Any], valid: tuple[str, ...], key: str) -> None:
        for k in raw:
            if k not in valid:
                where = f"{key}.{k}" if key else k
                raise self.error(where, f"unknown key; valid keys{' in ' + key if key else ''}: {', '.join(valid)}")


def _tname(v: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(v), type(v).__name__)


def _check_type(value: Any, annotation: Any, f: _File, key: str) -> None:
    """TOML values are typed: reject a string where a number is meant, a number for a boolean, ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, f, key)
            except ConfigError:
                pass
        names = " or ".join(_ann_name(a) for a in args if a is not type(None))
        raise f.error(key, f"expected {names}, got {_tname(value)} {value!r}")
    if origin is Literal:
        if value not in args or isinstance(value, bool):
            raise f.error(key, f"{value!r} is not valid; valid: {', '.join(map(repr, args))}")
        return
    if origin is tuple:
        if not isinstance(value, list):
            raise f.error(key, f"expected a list, got {_tname(value)} {value!r}")
        for v in value:
            _check_type(v, args[0] if args else str, f, key)
        return
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str),
          dict: lambda v: isinstance(v, dict)}.get(annotation)
    if ok is not None and not ok(value):
        raise f.error(key, f"expected {_ann_name(annotation)}, got {_tname(value)} {value!r}")


def _ann_name(a: Any) -> str:
    if typing.get_origin(a) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(a)))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(
        a, getattr(a, "__name__", str(a)))


def _ratio(v: Any, f: _File, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise f.error(key, f"expected a number in [0, 1), got {_tname(v)} {v!r}")
    if not 0.0 <= v < 1.0:
        raise f.error(key, f"prune ratio must be in [0, 1), got {v!r}")
    return float(v)


def _ratios(v: Any, f: _File, key: str) -> tuple[float, ...]:
    if not isinstance(v, list) or not v:
        raise f.error(key, f"expected a non-empty list of prune ratios in [0, 1), got {v!r}")
    out = tuple(_ratio(x, f, key) for x in v)
    if len(set(out)) != len(out):
        raise f.error(key, f"prune ratios repeat: {list(out)}")
    return out


def _seeds(v: Any, f: _File, key: str) -> tuple[int, ...]:
    if (not isinstance(v, list) or not v
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v)):
        raise f.error(key, f"expected a non-empty list of integers >= 0, got {v!r}")
    if len(set(v)) != len(v):
        raise f.error(key, f"seeds repeat: {v}")
    return tuple(v)


def _str(v: Any, f: _File, key: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(v, str) or not v:
        raise f.error(key, f"expected a non-empty string, got {_tname(v)} {v!r}")
    if pattern is not None and not pattern.match(v):
        raise f.error(key, f"{v!r} is not a valid name; use letters, digits and _ . + - (not starting with a symbol)")
    return v


def _int(v: Any, f: _File, key: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise f.error(key, f"expected an integer >= {lo}, got {_tname(v)} {v!r}")
    return v


def _pruner_options(pruner: str, raw: Any, f: _File, key: str) -> dict[str, Any]:
    from prunebench.pruners import get_pruner_class

    raw = f.table(raw, key)
    cls = get_pruner_class(pruner)
    hints = typing.get_type_hints(cls.Options)
    valid = tuple(x.name for x in dataclasses.fields(cls.Options))
    for k, v in raw.items():
        if k not in valid:
            raise f.error(f"{key}.{k}", f"unknown option of pruner {pruner!r}; valid options: {', '.join(valid) or '(none)'}")
        _check_type(v, hints[k], f, f"{key}.{k}")
    return dict(raw)


def _check_pruner(pruner: str, options: dict[str, Any], ratios: tuple[float, ...], epochs: int, f: _File,
                  key: str, num_samples: int = 10_000) -> None:
    """Build the pruner once per ratio, so option values and their dependence on p are checked now."""
    from prunebench.pruners import create_pruner

    for p in ratios:
        try:
            create_pruner(pruner, num_samples=num_samples, num_epochs=epochs, prune_ratio=p, seed=0, **options)
        except ConfigError as e:
            raise f.error(key, f"at prune ratio {p:g}: {e}") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; raises :class:`ConfigError` naming the file and key."""
    from prunebench.pruners import get_pruner_class, list_pruners

    path = Path(path)
    f = _File(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the study file ({e})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    f.unknown(raw, TOP_KEYS, "")

    # [study]
    if "study" not in raw:
        raise f.error("study", "missing table [study] (needs at least name and seeds)")
    st = f.table(raw["study"], "study")
    f.unknown(st, STUDY_KEYS, "study")
    if "name" not in st:
        raise f.error("study.name", "missing; give the study a name (letters, digits, _ . + -)")
    name = _str(st["name"], f, "study.name", _NAME)
    description = st.get("description", "")
    if not isinstance(description, str):
        raise f.error("study.description", f"expected a string, got {_tname(description)}")
    experiment = _str(st.get("experiment", name), f, "study.experiment")
    tracking_uri = _str(st["tracking_uri"], f, "study.tracking_uri") if "tracking_uri" in st else None
    if "seeds" not in st:
        raise f.error("study.seeds", "missing; give a list of run seeds, e.g. seeds = [0, 1, 2]")
    seeds = _seeds(st["seeds"], f, "study.seeds")
    default_ratios = _ratios(st["prune_ratios"], f, "study.prune_ratios") if "prune_ratios" in st else None

    # [recipe]
    recipe = f.table(raw.get("recipe", {}), "recipe")
    hints = typing.get_type_hints(TrainConfig)
    for k, v in recipe.items():
        if k not in RECIPE_KEYS:
            owned = f" ({k} is set by the study itself)" if k in _NOT_IN_RECIPE else ""
            raise f.error(f"recipe.{k}", f"unknown key{owned}; valid keys in recipe: {', '.join(RECIPE_KEYS)}")
        _check_type(v, hints[k], f, f"recipe.{k}")
    try:
        base = TrainConfig.from_dict({**recipe, "experiment": experiment}, where=f"{path}: recipe")
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(str(path)) else f"{path}: recipe: {msg.removeprefix('config: ')}") from None
    _check_names(base, f)
    epochs = base.epochs or 10

    # [methods.NAME]
    methods_raw = f.table(raw.get("methods", {}), "methods")
    methods: list[MethodSpec] = [MethodSpec(REFERENCE, REFERENCE, {}, (0.0,))]
    for mname, m in methods_raw.items():
        key = f"methods.{mname}"
        _str(mname, f, key, _NAME)
        m = f.table(m, key)
        f.unknown(m, METHOD_KEYS, key)
        pruner = _str(m.get("pruner", mname), f, f"{key}.pruner")
        try:
            get_pruner_class(pruner)
        except ConfigError:
            hint = "" if "pruner" in m else " (the method name is used when pruner is not given)"
            raise f.error(f"{key}.pruner", f"unknown pruner {pruner!r}{hint}; valid: {', '.join(list_pruners())}") from None
        options = _pruner_options(pruner, m.get("options", {}), f, f"{key}.options")
        if mname == REFERENCE or pruner == REFERENCE:
            if mname != REFERENCE or pruner != REFERENCE:
                raise f.error(key, f"the reference method must be named {REFERENCE!r} with pruner {REFERENCE!r}")
            if "prune_ratios" in m and _ratios(m["prune_ratios"], f, f"{key}.prune_ratios") != (0.0,):
                raise f.error(f"{key}.prune_ratios", "full trains on all data: its only prune ratio is 0")
            continue  # `full` is always in the grid, once per seed
        if "prune_ratios" in m:
            ratios = _ratios(m["prune_ratios"], f, f"{key}.prune_ratios")
        elif default_ratios is not None:
            ratios = default_ratios
        else:
            raise f.error(f"{key}.prune_ratios", "missing, and [study] has no prune_ratios to inherit")
        _check_pruner(pruner, options, ratios, epochs, f, f"{key}.options" if options else key)
        methods.append(MethodSpec(mname, pruner, options, ratios))

    # [sweeps.NAME]
    sweeps_raw = f.table(raw.get("sweeps", {}), "sweeps")
    sweeps = {}
    for sname, s in sweeps_raw.items():
        sweeps[sname] = _load_sweep(sname, f.table(s, f"sweeps.{sname}"), f, name, seeds, epochs)
    if len(methods) == 1 and not sweeps:
        raise f.error("methods", "no methods: add at least one [methods.NAME] table (or a [sweeps.NAME] table)")
    return Study(name=name, path=path, source=text, description=description, experiment=experiment,
                 tracking_uri=tracking_uri, seeds=seeds, recipe=dict(recipe), methods=tuple(methods), sweeps=sweeps)


def _check_names(cfg: TrainConfig, f: _File) -> None:
    """Dataset and model names are checked now (without loading data)."""
    from prunebench.datasets import list_datasets
    from prunebench.datasets.base import parse_dataset_name
    from prunebench.harness.models import list_models

    try:
        parse_dataset_name(cfg.dataset)
    except ConfigError as e:
        raise f.error("recipe.dataset", f"{e}") from None
    except Exception:
        raise f.error("recipe.dataset", f"unknown dataset {cfg.dataset!r}; valid: {', '.join(list_datasets())}") from None
    if not cfg.model.startswith("tv:") and cfg.model not in list_models():
        raise f.error("recipe.model", f"unknown model {cfg.model!r}; valid: {', '.join(list_models())}, tv:<torchvision model>")


def _load_sweep(sname: str, s: dict[str, Any], f: _File, study_name: str, study_seeds: tuple[int, ...],
                epochs: int) -> SweepSpec:
    from prunebench.pruners import get_pruner_class, list_pruners

    key = f"sweeps.{sname}"
    _str(sname, f, key, _NAME)
    f.unknown(s, SWEEP_KEYS, key)
    if "kind" not in s:
        raise f.error(f"{key}.kind", f"missing; valid: {', '.join(SWEEP_KINDS)}")
    kind = s["kind"]
    if kind not in SWEEP_KINDS:
        raise f.error(f"{key}.kind", f"{kind!r} is not valid; valid: {', '.join(SWEEP_KINDS)}")
    pruner = _str(s.get("pruner", "orderdp"), f, f"{key}.pruner")
    try:
        cls = get_pruner_class(pruner)
    except ConfigError:
        raise f.error(f"{key}.pruner", f"unknown pruner {pruner!r}; valid: {', '.join(list_pruners())}") from None
    if "candidate_ratio" not in {x.name for x in dataclasses.fields(cls.Options)}:
        raise f.error(f"{key}.pruner", f"pruner {pruner!r} has no candidate_ratio option to sweep; valid: orderdp, orderdp-fresh")
    options = _pruner_options(pruner, s.get("options", {}), f, f"{key}.options")
    if "candidate_ratio" in options:
        raise f.error(f"{key}.options.candidate_ratio", "is the swept parameter; set its range in space instead")
    space_raw = f.table(s.get("space", {}), f"{key}.space")
    f.unknown(space_raw, SPACE_KEYS[kind], f"{key}.space")
    space: dict[str, tuple[float, float]] = {}
    for k, v in space_raw.items():
        if (not isinstance(v, list) or len(v) != 2
                or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v) or not v[0] <= v[1]):
            raise f.error(f"{key}.space.{k}", f"expected [low, high] with low <= high, got {v!r}")
        space[k] = (float(v[0]), float(v[1]))
    prune_ratio = None
    if kind == "split":
        if "prune_ratio" not in s:
            raise f.error(f"{key}.prune_ratio", "missing; a split sweep tunes candidate_ratio at one prune ratio")
        prune_ratio = _ratio(s["prune_ratio"], f, f"{key}.prune_ratio")
        lo, hi = space.get("candidate_ratio", (1.0 - prune_ratio, 1.0))
        if lo < 1.0 - prune_ratio - 1e-12 or hi > 1.0:
            raise f.error(f"{key}.space.candidate_ratio",
                          f"[{lo:g}, {hi:g}] leaves the valid range [1-p, 1] = [{1 - prune_ratio:g}, 1]")
        space["candidate_ratio"] = (lo, hi)
    else:
        if "prune_ratio" in s:
            raise f.error(f"{key}.prune_ratio", "a pareto sweep searches the prune ratio; set space.prune_ratio instead")
        lo, hi = space.get("prune_ratio", (0.1, 0.9))
        if not 0.0 <= lo <= hi < 1.0:
            raise f.error(f"{key}.space.prune_ratio", f"[{lo:g}, {hi:g}] must lie in [0, 1)")
        slo, shi = space.get("split", (0.0, 1.0))
        if not 0.0 <= slo <= shi <= 1.0:
            raise f.error(f"{key}.space.split", f"[{slo:g}, {shi:g}] must lie in [0, 1]")
        space["prune_ratio"], space["split"] = (lo, hi), (slo, shi)
    _check_pruner(pruner, {**options, "candidate_ratio": 1.0}, (prune_ratio if prune_ratio is not None else space["prune_ratio"][0],),
                  epochs, f, key)
    sampler = s.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise f.error(f"{key}.sampler", f"{sampler!r} is not valid; valid: {', '.join(SAMPLERS)}")
    early = s.get("early_stopping", False)
    if not isinstance(early, bool):
        raise f.error(f"{key}.early_stopping", f"expected true or false, got {_tname(early)} {early!r}")
    if early and kind == "pareto":
        raise f.error(f"{key}.early_stopping", "early stopping of trials needs one objective; a pareto sweep has two")
    return SweepSpec(
        name=sname, kind=kind, pruner=pruner, options=options, prune_ratio=prune_ratio, space=space,
        n_trials=_int(s.get("n_trials", 20), f, f"{key}.n_trials", 1),
        seeds=_seeds(s["seeds"], f, f"{key}.seeds") if "seeds" in s else study_seeds,
        storage=_str(s["storage"], f, f"{key}.storage") if "storage" in s else None,
        study_name=_str(s.get("study_name", f"{study_name}/{sname}"), f, f"{key}.study_name"),
        sampler=sampler, seed=_int(s.get("seed", 0), f, f"{key}.seed", 0), early_stopping=early,
        early_stopping_startup_trials=_int(s.get("early_stopping_startup_trials", 4), f,
                                           f"{key}.early_stopping_startup_trials", 0),
        early_stopping_warmup_epochs=_int(s.get("early_stopping_warmup_epochs", 1), f,
                                          f"{key}.early_stopping_warmup_epochs", 0),
    )
