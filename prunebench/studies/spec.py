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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prunebench.errors import ConfigError
from prunebench.harness.config import RECIPE_FIELDS, RUN_KEY_RECIPE_FIELDS, TrainConfig
from prunebench.options import check_value, type_name

#: the TrainConfig fields [recipe] may set (the field metadata says which: ``recipe=False`` for those a study
#: owns itself, per run or in [study])
RECIPE_KEYS = RECIPE_FIELDS

TOP_KEYS = ("study", "recipe", "methods", "sweeps", "executor")
STUDY_KEYS = (
    "name",
    "description",
    "experiment",
    "tracking_uri",
    "seeds",
    "prune_ratios",
    "proxy_charge",
    "baselines",
    "plugins",
    "epochs",
    "ratios_by_epochs",
    "probe",
    "reuse",
)
PROBE_KEYS = ("methods", "at")
PROXY_CHARGES = ("full", "amortised")  # prunebench.reports.stats.PROXY_CHARGES (a study may not import reports)
BASELINE_KINDS = ("static", "dynamic")
METHOD_KEYS = ("pruner", "options", "prune_ratios")
SWEEP_KINDS = ("accuracy", "pareto")
SWEEP_KEYS = (
    "kind",
    "pruner",
    "options",
    "prune_ratio",
    "space",
    "grid_points",
    "n_trials",
    "seeds",
    "storage",
    "study_name",
    "sampler",
    "seed",
    "early_stopping",
    "early_stopping_startup_trials",
    "early_stopping_warmup",
)
AXIS_KEYS = ("low", "high", "points", "values", "relative")
SAMPLERS = ("grid", "tpe", "random", "nsga2")
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
class Axis:
    """One searched dimension of a sweep: the prune ratio or one declared option of the sweep's pruner.

    ``values`` (a grid: explicit, or ``points`` evenly spaced in ``[low, high]``) or a range for Optuna's
    samplers. ``relative``: the values are positions in ``[0, 1]`` of the range the pruner declares for
    the option at the run's prune ratio (``Pruner.option_range``), e.g. OrderDP's ``candidate_ratio`` in
    ``[1-p, 1]``: 0 is its lower end, 1 its upper end.
    """

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] | None = None  # the grid (None: a range only, for Optuna's samplers)
    relative: bool = False

    @property
    def column(self) -> str:
        """The axis' column in sweep tables: ``prune_ratio``, ``candidate_ratio`` or ``candidate_ratio@rel``."""
        return f"{self.name}@rel" if self.relative else self.name


@dataclass(frozen=True)
class SweepSpec:
    """One sweep of a study: a pruner, fixed options, and a space over its options and the prune ratio.

    ``kind``: ``accuracy`` (maximise the mean final accuracy over the seeds) or ``pareto`` (maximise
    accuracy, minimise total relative compute). ``sampler`` ``grid`` runs every point of the grid (each
    point x seed a run with a stable run key, like a leaderboard cell); the others are Optuna samplers.
    """

    name: str
    kind: Literal["accuracy", "pareto"]
    pruner: str
    options: dict[str, Any]  # fixed options
    prune_ratio: float | None  # the fixed prune ratio (None: prune_ratio is an axis)
    axes: tuple[Axis, ...]
    n_trials: int  # Optuna: finished trials (complete or early-stopped) to reach; grid: the grid's size
    seeds: tuple[int, ...]  # each point trains once per seed
    storage: str | None  # Optuna RDB storage URL (else --storage, else a SQLite file in the out dir)
    study_name: str  # the Optuna study name inside the storage
    sampler: Literal["grid", "tpe", "random", "nsga2"]
    seed: int  # sampler seed (mixed with the worker's identity, so workers do not propose alike)
    early_stopping: bool  # Optuna's median pruner on per-epoch accuracy ("early-stopped trials")
    early_stopping_startup_trials: int
    early_stopping_warmup: float  # fraction of each run before which no trial is stopped

    @property
    def space(self) -> dict[str, Axis]:
        return {a.name: a for a in self.axes}

    def grid(self) -> list[dict[str, Any]]:
        """Every point of a grid sweep (axis name -> value, in axis order; the product of the axes' values)."""
        import itertools

        if any(a.values is None for a in self.axes):
            raise ConfigError(
                f"sweep {self.name}: axis {next(a.name for a in self.axes if a.values is None)} is a range, not a grid"
            )
        return [
            dict(zip([a.name for a in self.axes], combo)) for combo in itertools.product(*(a.values for a in self.axes))
        ]

    def resolve(self, point: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """(prune ratio, full option dict) of one point; relative axes become option values."""
        from prunebench.pruners import get_pruner_class

        p = float(point.get("prune_ratio", self.prune_ratio))
        opts = dict(self.options)
        for a in self.axes:
            if a.name == "prune_ratio":
                continue
            v = point[a.name]
            if a.relative:
                lo, hi = get_pruner_class(self.pruner).option_range(a.name, p)
                v = round(min(hi, max(lo, lo + float(v) * (hi - lo))), 12)
            opts[a.name] = v
        return p, opts

    def label(self, point: dict[str, Any]) -> str:
        """A point's method name: ``<sweep>[candidate_ratio=0.6,prune_ratio=0.5]`` (values as given)."""
        inner = ",".join(f"{self.space[k].column}={_fmt(v)}" for k, v in point.items())
        return f"{self.name}[{inner}]"


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


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
class ProbePlan:
    """``[study] probe``: the gradient-direction probe for the named methods, after the epochs at the given
    fractions of each run (``at = [0.5, 1.0]`` on an 18-epoch run: after epochs 9 and 18, i.e. indices 8 and 17)."""

    methods: tuple[str, ...]
    at: tuple[float, ...]

    def epochs(self, total: int) -> tuple[int, ...]:
        """0-based epoch indices of a ``total``-epoch run (each fraction rounded to a whole epoch, at least 1)."""
        return tuple(sorted({min(total, max(1, round(f * total))) - 1 for f in self.at}))


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
    proxy_charge: str = "full"  # a proxy shared by several runs: charged in full to each, or "amortised"
    baselines: dict[str, str] = field(default_factory=lambda: {"static": "random-static", "dynamic": "random-dynamic"})
    executor: Any = None  # [executor] table: an executors.ExecutorSpec (where cells run; not part of run keys)
    epochs: tuple[int, ...] = ()  # the budget axis ([study] epochs; empty: the recipe's epochs only)
    ratios_by_epochs: dict[int, tuple[float, ...]] = field(default_factory=dict)  # prune ratios kept at a budget
    probe: ProbePlan | None = None  # [study] probe: which methods run the gradient probe, when
    reuse: tuple[Path, ...] = ()  # other study files whose cells of the same configuration count here

    def base_config(self, **changes: Any) -> TrainConfig:
        """The recipe as a :class:`TrainConfig` with the study's experiment, plus ``changes``."""
        raw = {**self.recipe, "experiment": self.experiment, "tracking_uri": self.tracking_uri, **changes}
        return TrainConfig(**raw)

    def run_key(
        self,
        method: MethodSpec | str,
        pruner: str,
        options: dict[str, Any],
        prune_ratio: float,
        seed: int,
        recipe: dict[str, Any] | None = None,
    ) -> str:
        """Stable hash of study + method + pruner options (defaults filled in) + ratio + seed + recipe
        (``recipe``: the cell's changes to [recipe], e.g. its epochs on a budget axis)."""
        name = method.name if isinstance(method, MethodSpec) else method
        payload = {"study": self.name, "method": name, **self._identity(pruner, options, prune_ratio, seed, recipe)}
        return _digest(payload)

    def cell_identity(
        self, pruner: str, options: dict[str, Any], prune_ratio: float, seed: int, recipe: dict[str, Any] | None = None
    ) -> str:
        """What a cell trains, whatever the study and method are called: the run key's payload less the
        study and method names. Equal identities in two study files are the same run (``[study] reuse``)."""
        return _digest(self._identity(pruner, options, prune_ratio, seed, recipe))

    def _identity(
        self, pruner: str, options: dict[str, Any], prune_ratio: float, seed: int, recipe: dict[str, Any] | None
    ) -> dict[str, Any]:
        cfg = self.base_config(**(recipe or {})).to_dict()
        fields = {k: cfg[k] for k in RUN_KEY_RECIPE_FIELDS}  # the experiment's fields (TrainConfig's metadata)
        return {
            "pruner": pruner,
            "options": _key_options(pruner, options),
            "prune_ratio": float(prune_ratio),
            "seed": int(seed),
            "recipe": fields,
        }

    def budgets(self) -> tuple[int | None, ...]:
        """The epochs axis: ``[study] epochs``, or ``(None,)`` (the recipe's epochs)."""
        return self.epochs or (None,)

    def cell_recipe(self, method: MethodSpec, epochs: int | None) -> dict[str, Any]:
        """A cell's changes to [recipe]: its budget's epochs, and the probe where ``[study] probe`` names it."""
        out: dict[str, Any] = {} if epochs is None else {"epochs": epochs}
        if self.probe is not None and method.name in self.probe.methods:
            total = epochs if epochs is not None else int(self.base_config().epochs or 10)
            out["probe_epochs"] = self.probe.epochs(total)
        return out

    def cells(self) -> list[tuple[int, int | None, MethodSpec, float]]:
        """(seed, epochs, method, prune ratio) of every cell: budget by budget (shortest first), then seed by
        seed, then the methods in file order; at a budget of ``ratios_by_epochs`` only the ratios it lists."""
        out = []
        for e in self.budgets():
            for seed in self.seeds:
                for m in self.methods:
                    allowed = self.ratios_by_epochs.get(e) if e is not None else None
                    out += [
                        (seed, e, m, p)
                        for p in m.prune_ratios
                        if m.name == REFERENCE or allowed is None or p in allowed
                    ]
        return out

    def runs(self, **config_changes: Any) -> list[RunSpec]:
        """The grid: every method x its prune ratios x the seeds (``full`` once per seed) x the budgets."""
        out = []
        for seed, e, m, p in self.cells():
            recipe = self.cell_recipe(m, e)
            key = self.run_key(m, m.pruner, m.options, p, seed, recipe)
            tags = {
                "prunebench.study": self.name,
                "prunebench.method": m.name,
                "prunebench.run_key": key,
                "prunebench.kind": "leaderboard",
            }
            name = f"{m.name} p={p:g} seed={seed}" + (f" epochs={e}" if e is not None else "")
            cfg = self.base_config(
                pruner=m.pruner,
                prune_ratio=p,
                pruner_options=dict(m.options),
                seed=seed,
                tags=tags,
                run_name=name,
                **recipe,
                **config_changes,
            )
            out.append(RunSpec(m.name, m.pruner, dict(m.options), p, seed, key, cfg))
        return out

    def reused_keys(self) -> dict[str, str]:
        """Run keys of the ``[study] reuse`` studies' cells -> the run key of this study's cell with the same
        :meth:`cell_identity` (the cells this study can take from those studies' results tables)."""
        mine: dict[str, str] = {}
        for seed, e, m, p in self.cells():
            recipe = self.cell_recipe(m, e)
            mine[self.cell_identity(m.pruner, m.options, p, seed, recipe)] = self.run_key(
                m, m.pruner, m.options, p, seed, recipe
            )
        out: dict[str, str] = {}
        for path in self.reuse:
            other = load_study(path)
            for seed, e, m, p in other.cells():
                recipe = other.cell_recipe(m, e)
                own = mine.get(other.cell_identity(m.pruner, m.options, p, seed, recipe))
                if own is not None:
                    out[other.run_key(m, m.pruner, m.options, p, seed, recipe)] = own
        return out


def _digest(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def full_options(pruner: str, options: dict[str, Any]) -> dict[str, Any]:
    """The pruner's options with defaults filled in (so spelling out a default keeps the run key)."""
    from prunebench.options import build_options
    from prunebench.pruners import get_pruner_class

    opts = build_options(get_pruner_class(pruner).Options, options, f"pruner {pruner!r}")
    return dataclasses.asdict(opts)


def _key_options(pruner: str, options: dict[str, Any]) -> dict[str, Any]:
    """What a run key hashes of the options: :func:`full_options`, less options added after runs were keyed
    that are left at their default (``omit_default_in_key``, :func:`prunebench.options.key_options`)."""
    from prunebench.options import key_options
    from prunebench.pruners import get_pruner_class

    return key_options(get_pruner_class(pruner).Options, full_options(pruner, options))


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


_tname = type_name


def _check_type(value: Any, annotation: Any, f: _File, key: str) -> None:
    """TOML values are typed: reject a string where a number is meant, a number for a boolean, ..."""
    check_value(value, annotation, f"{f.name}: {key}", strict=True)


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
    if not isinstance(v, list) or not v or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in v):
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
            raise f.error(
                f"{key}.{k}", f"unknown option of pruner {pruner!r}; valid options: {', '.join(valid) or '(none)'}"
            )
        _check_type(v, hints[k], f, f"{key}.{k}")
    return dict(raw)


def _check_pruner(
    pruner: str,
    options: dict[str, Any],
    ratios: tuple[float, ...],
    epochs: int,
    f: _File,
    key: str,
    num_samples: int = 10_000,
) -> None:
    """Build the pruner once per ratio, so option values and their dependence on p are checked now."""
    from prunebench.pruners import create_pruner

    for p in ratios:
        try:
            create_pruner(pruner, num_samples=num_samples, num_epochs=epochs, prune_ratio=p, seed=0, **options)
        except ConfigError as e:
            raise f.error(key, f"at prune ratio {p:g}: {e}") from None


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; raises :class:`ConfigError` naming the file and key."""
    path = Path(path)
    f = _File(path)
    text, raw = _read_toml(path)
    f.unknown(raw, TOP_KEYS, "")
    st = _study_table(raw, f)
    name = _str(st["name"], f, "study.name", _NAME)
    experiment = _str(st.get("experiment", name), f, "study.experiment")
    seeds = _seeds(st["seeds"], f, "study.seeds")
    recipe, base = _load_recipe(raw, f, experiment)
    budgets = _budgets(st, f)
    epochs = base.epochs or 10
    default_ratios = _ratios(st["prune_ratios"], f, "study.prune_ratios") if "prune_ratios" in st else None
    methods = _load_methods(f.table(raw.get("methods", {}), "methods"), f, default_ratios, budgets or (epochs,))
    sweeps_raw = f.table(raw.get("sweeps", {}), "sweeps")
    sweeps = {
        sname: _load_sweep(sname, f.table(s, f"sweeps.{sname}"), f, name, seeds, epochs)
        for sname, s in sweeps_raw.items()
    }
    proxy_charge = st.get("proxy_charge", "full")
    if proxy_charge not in PROXY_CHARGES:
        raise f.error("study.proxy_charge", f"{proxy_charge!r} is not valid; valid: {', '.join(PROXY_CHARGES)}")
    baselines = _baselines(st, f, [m.name for m in methods])
    if len(methods) == 1 and not sweeps:
        raise f.error("methods", "no methods: add at least one [methods.NAME] table (or a [sweeps.NAME] table)")
    from prunebench.studies.executors import parse_executor

    executor = parse_executor(raw.get("executor", {}), f"{path}: executor")
    return Study(
        name=name,
        path=path,
        source=text,
        description=st.get("description", ""),
        experiment=experiment,
        tracking_uri=_str(st["tracking_uri"], f, "study.tracking_uri") if "tracking_uri" in st else None,
        seeds=seeds,
        recipe=dict(recipe),
        methods=tuple(methods),
        sweeps=sweeps,
        proxy_charge=proxy_charge,
        baselines=baselines,
        executor=executor,
        epochs=budgets,
        ratios_by_epochs=_ratios_by_epochs(st, f, budgets),
        probe=_probe(st, f, [m.name for m in methods]),
        reuse=_reuse(st, f, path),
    )


def _budgets(st: dict[str, Any], f: _File) -> tuple[int, ...]:
    """``[study] epochs``: the budget axis (each cell once per value), increasing, no repeats."""
    if "epochs" not in st:
        return ()
    v = st["epochs"]
    if not isinstance(v, list) or not v or any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in v):
        raise f.error("study.epochs", f"expected a non-empty list of epoch counts >= 1, e.g. [6, 18, 54], got {v!r}")
    if len(set(v)) != len(v):
        raise f.error("study.epochs", f"epoch counts repeat: {v}")
    return tuple(sorted(v))


def _ratios_by_epochs(st: dict[str, Any], f: _File, budgets: tuple[int, ...]) -> dict[int, tuple[float, ...]]:
    """``[study] ratios_by_epochs = { "54" = [0.5] }``: at that budget only these prune ratios run."""
    raw = f.table(st.get("ratios_by_epochs", {}), "study.ratios_by_epochs")
    out: dict[int, tuple[float, ...]] = {}
    for k, v in raw.items():
        key = f"study.ratios_by_epochs.{k}"
        if not k.isdigit() or int(k) not in budgets:
            raise f.error(key, f"{k!r} is not one of [study] epochs {list(budgets) or '(none given)'}")
        out[int(k)] = _ratios(v, f, key)
    return out


def _probe(st: dict[str, Any], f: _File, names: list[str]) -> ProbePlan | None:
    """``[study] probe = { methods = [...], at = [0.25, 0.5, 0.75, 1.0] }``."""
    if "probe" not in st:
        return None
    raw = f.table(st["probe"], "study.probe")
    f.unknown(raw, PROBE_KEYS, "study.probe")
    methods = raw.get("methods")
    if not isinstance(methods, list) or not methods or any(m not in names for m in methods):
        raise f.error(
            "study.probe.methods",
            f"expected a non-empty list of this study's methods ({', '.join(names)}), got {methods!r}",
        )
    at = raw.get("at", [1.0])
    if (
        not isinstance(at, list)
        or not at
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 < x <= 1 for x in at)
    ):
        raise f.error("study.probe.at", f"expected a non-empty list of run fractions in (0, 1], got {at!r}")
    return ProbePlan(tuple(methods), tuple(float(x) for x in at))


def _reuse(st: dict[str, Any], f: _File, path: Path) -> tuple[Path, ...]:
    """``[study] reuse = ["cifar10-cpu.toml"]``: study files (relative to this one) whose results tables,
    given with ``--import``, supply this study's cells of the same configuration."""
    raw = st.get("reuse", [])
    if not isinstance(raw, list):
        raise f.error("study.reuse", f"expected a list of study files, got {_tname(raw)}")
    out = []
    for x in raw:
        p = path.parent / _str(x, f, "study.reuse")
        if not p.is_file() or p.resolve() == path.resolve():
            raise f.error("study.reuse", f"{x!r}: no such study file next to this one (or this file itself)")
        out.append(p)
    return tuple(out)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: study file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the study file ({e})") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def _study_table(raw: dict[str, Any], f: _File) -> dict[str, Any]:
    """[study], its required keys present and its description a string (the rest is checked where read);
    the study's pruner plugins are imported here, before its methods are checked."""
    from prunebench.plugins import load_plugins

    if "study" not in raw:
        raise f.error("study", "missing table [study] (needs at least name and seeds)")
    st = f.table(raw["study"], "study")
    f.unknown(st, STUDY_KEYS, "study")
    if "name" not in st:
        raise f.error("study.name", "missing; give the study a name (letters, digits, _ . + -)")
    _str(st["name"], f, "study.name", _NAME)
    plugins = st.get("plugins", [])  # pruner plugins, imported before the methods are checked
    if not isinstance(plugins, list):
        raise f.error("study.plugins", f"expected a list of .py files or module names, got {_tname(plugins)}")
    try:
        load_plugins([_str(x, f, "study.plugins") for x in plugins], base=Path(f.name).parent)
    except ConfigError as e:
        raise f.error("study.plugins", str(e)) from None
    if not isinstance(st.get("description", ""), str):
        raise f.error("study.description", f"expected a string, got {_tname(st['description'])}")
    _str(st.get("experiment", st["name"]), f, "study.experiment")
    if "tracking_uri" in st:
        _str(st["tracking_uri"], f, "study.tracking_uri")
    if "seeds" not in st:
        raise f.error("study.seeds", "missing; give a list of run seeds, e.g. seeds = [0, 1, 2]")
    _seeds(st["seeds"], f, "study.seeds")
    if "prune_ratios" in st:
        _ratios(st["prune_ratios"], f, "study.prune_ratios")
    return st


def _load_recipe(raw: dict[str, Any], f: _File, experiment: str) -> tuple[dict[str, Any], TrainConfig]:
    """[recipe] as given (the run key hashes these values) and as a validated :class:`TrainConfig`.

    Which keys are valid, their types and ranges all come from :class:`TrainConfig`'s field metadata."""
    recipe = f.table(raw.get("recipe", {}), "recipe")
    fields = {x.name for x in dataclasses.fields(TrainConfig)}
    for k in recipe:
        if k not in RECIPE_KEYS:
            owned = f" ({k} is set by the study itself)" if k in fields else ""
            raise f.error(f"recipe.{k}", f"unknown key{owned}; valid keys in recipe: {', '.join(RECIPE_KEYS)}")
    try:
        base = TrainConfig.from_dict(
            {**recipe, "experiment": experiment},
            where=f"{f.name}: recipe",
            strict=True,
            key=lambda k: f"{f.name}: recipe.{k}",
        )
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(
            msg if msg.startswith(f.name) else f"{f.name}: recipe: {msg.removeprefix('config: ')}"
        ) from None
    _check_names(base, f)
    return recipe, base


def _load_methods(
    methods_raw: dict[str, Any], f: _File, default_ratios: tuple[float, ...] | None, budgets: tuple[int, ...]
) -> list[MethodSpec]:
    """[methods.NAME] tables, after the reference ``full`` (always in the grid, once per seed)."""
    methods: list[MethodSpec] = [MethodSpec(REFERENCE, REFERENCE, {}, (0.0,))]
    for mname, m in methods_raw.items():
        key = f"methods.{mname}"
        _str(mname, f, key, _NAME)
        m = f.table(m, key)
        f.unknown(m, METHOD_KEYS, key)
        pruner = _pruner_name(
            m.get("pruner", mname),
            f,
            f"{key}.pruner",
            "" if "pruner" in m else " (the method name is used when pruner is not given)",
        )
        options = _pruner_options(pruner, m.get("options", {}), f, f"{key}.options")
        if mname == REFERENCE or pruner == REFERENCE:
            if mname != REFERENCE or pruner != REFERENCE:
                raise f.error(key, f"the reference method must be named {REFERENCE!r} with pruner {REFERENCE!r}")
            if "prune_ratios" in m and _ratios(m["prune_ratios"], f, f"{key}.prune_ratios") != (0.0,):
                raise f.error(f"{key}.prune_ratios", "full trains on all data: its only prune ratio is 0")
            continue
        if "prune_ratios" in m:
            ratios = _ratios(m["prune_ratios"], f, f"{key}.prune_ratios")
        elif default_ratios is not None:
            ratios = default_ratios
        else:
            raise f.error(f"{key}.prune_ratios", "missing, and [study] has no prune_ratios to inherit")
        for epochs in budgets:
            _check_pruner(pruner, options, ratios, epochs, f, f"{key}.options" if options else key)
        methods.append(MethodSpec(mname, pruner, options, ratios))
    return methods


def _pruner_name(v: Any, f: _File, key: str, hint: str = "") -> str:
    """A registered pruner's name, else one line listing the valid ones."""
    from prunebench.pruners import get_pruner_class, list_pruners

    pruner = _str(v, f, key)
    try:
        get_pruner_class(pruner)
    except ConfigError:
        raise f.error(key, f"unknown pruner {pruner!r}{hint}; valid: {', '.join(list_pruners())}") from None
    return pruner


def _baselines(st: dict[str, Any], f: _File, names: list[str]) -> dict[str, str]:
    baselines = {"static": "random-static", "dynamic": "random-dynamic"}
    if "baselines" in st:
        b = f.table(st["baselines"], "study.baselines")
        f.unknown(b, BASELINE_KINDS, "study.baselines")
        for kind, v in b.items():
            if v not in names:
                raise f.error(
                    f"study.baselines.{kind}", f"{v!r} is not a method of this study; valid: {', '.join(names)}"
                )
            baselines[kind] = v
    return baselines


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
        raise f.error(
            "recipe.dataset", f"unknown dataset {cfg.dataset!r}; valid: {', '.join(list_datasets())}"
        ) from None
    if not cfg.model.startswith("tv:") and cfg.model not in list_models():
        raise f.error(
            "recipe.model", f"unknown model {cfg.model!r}; valid: {', '.join(list_models())}, tv:<torchvision model>"
        )


def _load_sweep(
    sname: str, s: dict[str, Any], f: _File, study_name: str, study_seeds: tuple[int, ...], epochs: int
) -> SweepSpec:
    from prunebench.pruners import get_pruner_class, list_pruners

    key = f"sweeps.{sname}"
    _str(sname, f, key, _NAME)
    f.unknown(s, SWEEP_KEYS, key)
    if "kind" not in s:
        raise f.error(f"{key}.kind", f"missing; valid: {', '.join(SWEEP_KINDS)}")
    kind = s["kind"]
    if kind not in SWEEP_KINDS:
        raise f.error(f"{key}.kind", f"{kind!r} is not valid; valid: {', '.join(SWEEP_KINDS)}")
    if "pruner" not in s:
        raise f.error(f"{key}.pruner", f"missing; name the pruner to sweep, one of: {', '.join(list_pruners())}")
    pruner = _pruner_name(s["pruner"], f, f"{key}.pruner")
    options = _pruner_options(pruner, s.get("options", {}), f, f"{key}.options")
    prune_ratio, axes, sampler = _sweep_space(s, get_pruner_class(pruner), options, f, key)
    seeds = _sweep_seeds(s, study_seeds, f, key)
    early = s.get("early_stopping", False)
    if not isinstance(early, bool):
        raise f.error(f"{key}.early_stopping", f"expected true or false, got {_tname(early)} {early!r}")
    if early and kind == "pareto":
        raise f.error(f"{key}.early_stopping", "early stopping of trials needs one objective; a pareto sweep has two")
    if early and sampler == "grid":
        raise f.error(
            f"{key}.early_stopping",
            "a grid sweep runs every point to the end; early stopping needs "
            'an Optuna sampler (sampler = "tpe" or "random")',
        )
    warm = s.get("early_stopping_warmup", 0.5)
    if isinstance(warm, bool) or not isinstance(warm, (int, float)) or not 0.0 <= warm < 1.0:
        raise f.error(f"{key}.early_stopping_warmup", f"expected a fraction of the run in [0, 1), got {warm!r}")
    if sampler == "grid" and "n_trials" in s:
        raise f.error(f"{key}.n_trials", "a grid sweep runs every point of its grid; n_trials is for Optuna samplers")
    spec = SweepSpec(
        name=sname,
        kind=kind,
        pruner=pruner,
        options=options,
        prune_ratio=prune_ratio,
        axes=axes,
        n_trials=_int(s.get("n_trials", 20), f, f"{key}.n_trials", 1),
        seeds=seeds,
        storage=_str(s["storage"], f, f"{key}.storage") if "storage" in s else None,
        study_name=_str(s.get("study_name", f"{study_name}/{sname}"), f, f"{key}.study_name"),
        sampler=sampler,
        seed=_int(s.get("seed", 0), f, f"{key}.seed", 0),
        early_stopping=early,
        early_stopping_startup_trials=_int(
            s.get("early_stopping_startup_trials", 4), f, f"{key}.early_stopping_startup_trials", 0
        ),
        early_stopping_warmup=float(warm),
    )
    if sampler == "grid":
        spec = dataclasses.replace(spec, n_trials=len(spec.grid()))
    _check_corners(spec, epochs, f, key)
    return spec


def _sweep_space(
    s: dict[str, Any], cls: type, options: dict[str, Any], f: _File, key: str
) -> tuple[float | None, tuple[Axis, ...], str]:
    """A sweep's fixed prune ratio (``None`` when it is an axis), its axes and its sampler."""
    hints = typing.get_type_hints(cls.Options)
    declared = tuple(x.name for x in dataclasses.fields(cls.Options))
    space_raw = f.table(s.get("space", {}), f"{key}.space")
    if not space_raw:
        raise f.error(
            f"{key}.space",
            f"empty; give at least one axis: prune_ratio or an option of {cls.name!r} "
            f"({', '.join(declared) or 'none'})",
        )
    grid_points = _int(s.get("grid_points", 5), f, f"{key}.grid_points", 2)
    if "prune_ratio" in s and "prune_ratio" in space_raw:
        raise f.error(f"{key}.prune_ratio", "is also an axis of the space; give one of the two")
    prune_ratio = _ratio(s["prune_ratio"], f, f"{key}.prune_ratio") if "prune_ratio" in s else None
    if prune_ratio is None and "prune_ratio" not in space_raw:
        raise f.error(f"{key}.prune_ratio", "missing; fix it (prune_ratio = 0.5) or search it (space.prune_ratio)")
    for k in space_raw:
        if k != "prune_ratio" and k not in declared:
            raise f.error(
                f"{key}.space.{k}",
                f"not an option of pruner {cls.name!r}; valid axes: prune_ratio" + "".join(f", {d}" for d in declared),
            )
        if k in options:
            raise f.error(f"{key}.options.{k}", "is an axis of the space; set it there, not in options")
    sampler = s.get("sampler")
    if sampler is not None and sampler not in SAMPLERS:
        raise f.error(f"{key}.sampler", f"{sampler!r} is not valid; valid: {', '.join(SAMPLERS)}")
    gridded = all(isinstance(v, dict) and ("values" in v or "points" in v) for v in space_raw.values())
    if sampler is None:
        sampler = "grid" if len(space_raw) == 1 or gridded else "tpe"
    axes = tuple(
        _axis(k, v, hints.get(k, float), cls, sampler == "grid", grid_points, f, f"{key}.space.{k}")
        for k, v in space_raw.items()
    )
    return prune_ratio, axes, sampler


def _sweep_seeds(s: dict[str, Any], study_seeds: tuple[int, ...], f: _File, key: str) -> tuple[int, ...]:
    if "seeds" in s:
        return _seeds(s["seeds"], f, f"{key}.seeds")
    if len(study_seeds) >= 2:
        return study_seeds
    raise f.error(
        f"{key}.seeds",
        f"the study has {len(study_seeds)} seed; a sweep point needs >= 2 for an "
        "interval: give seeds = [0, 1] (or seeds = [0] to accept no interval)",
    )


def _check_corners(spec: SweepSpec, epochs: int, f: _File, key: str) -> None:
    """Build the pruner at every grid point (Optuna samplers: every combination of the axes' ends), so an
    option value invalid at some prune ratio is an error now, not in the middle of the sweep."""
    import itertools

    from prunebench.pruners import create_pruner

    if spec.sampler == "grid":
        corners = spec.grid()
    else:
        ends = [a.values if a.values is not None else (a.low, a.high) for a in spec.axes]
        corners = [dict(zip([a.name for a in spec.axes], c)) for c in itertools.product(*ends)]
    for pt in corners:
        pr, opts = spec.resolve(pt)
        if not 0.0 <= pr < 1.0:
            raise f.error(f"{key}.space.prune_ratio", f"prune ratio {pr:g} is not in [0, 1)")
        where = ", ".join(f"{k}={_fmt(v)}" for k, v in pt.items())
        try:
            create_pruner(spec.pruner, num_samples=10_000, num_epochs=epochs, prune_ratio=pr, seed=0, **opts)
        except ConfigError as e:
            raise f.error(f"{key}.space", f"at {where}: {e}") from None


def _axis(name: str, raw: Any, hint: Any, cls: type, grid: bool, grid_points: int, f: _File, key: str) -> Axis:
    """One axis from ``[low, high]`` or ``{ values = [...] }`` or ``{ low, high, points, relative }``."""
    if name == "prune_ratio":
        hint = float
    kind = "int" if hint is int else "float" if hint in (float, int) or name == "prune_ratio" else "categorical"
    if isinstance(raw, list):
        raw = {"low": raw[0], "high": raw[1]} if len(raw) == 2 else {"bad": raw}
        if "bad" in raw:
            raise f.error(
                key, f"expected [low, high] or a table with values = [...] or low, high, points; got {raw['bad']!r}"
            )
    raw = f.table(raw, key)
    f.unknown(raw, AXIS_KEYS, key)
    relative = raw.get("relative", False)
    if not isinstance(relative, bool):
        raise f.error(f"{key}.relative", f"expected true or false, got {_tname(relative)} {relative!r}")
    if relative:
        if name == "prune_ratio" or cls.option_range(name, 0.5) is None:
            raise f.error(
                f"{key}.relative",
                f"pruner {cls.name!r} declares no p-dependent range for {name!r}; give the option's values themselves",
            )
        kind = "float"
    if "values" in raw:
        return _listed_axis(name, raw, hint, kind, relative, f, key)
    if kind == "categorical":
        raise f.error(key, f"option {name!r} is not numeric: list its values, {{ values = [...] }}")
    if "low" not in raw or "high" not in raw:
        raise f.error(key, "expected [low, high] or a table with values = [...] or low, high, points")
    lo, hi = raw["low"], raw["high"]
    for v, k in ((lo, "low"), (hi, "high")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise f.error(f"{key}.{k}", f"expected a number, got {_tname(v)} {v!r}")
    if not lo <= hi:
        raise f.error(key, f"expected low <= high, got [{lo!r}, {hi!r}]")
    if relative and not 0.0 <= lo <= hi <= 1.0:
        raise f.error(
            key, f"a relative axis lies in [0, 1] (0: the range's low end, 1: its high end), got [{lo:g}, {hi:g}]"
        )
    points = raw.get("points")
    if points is not None:
        points = _int(points, f, f"{key}.points", 1)
        if points == 1 and lo != hi:
            raise f.error(f"{key}.points", "one point needs low == high; use 2 or more to span a range")
    values = None
    if points is not None or grid:
        values = grid_values(float(lo), float(hi), points or grid_points, integer=kind == "int")
    return Axis(name, kind, float(lo), float(hi), values, relative)


def _listed_axis(name: str, raw: dict[str, Any], hint: Any, kind: str, relative: bool, f: _File, key: str) -> Axis:
    """The axis of :func:`_axis` given by its values, ``{ values = [...] }``."""
    if "low" in raw or "high" in raw or "points" in raw:
        raise f.error(key, "give either values = [...] or low, high (and points), not both")
    vals = raw["values"]
    if not isinstance(vals, list) or not vals:
        raise f.error(f"{key}.values", f"expected a non-empty list, got {vals!r}")
    for v in vals:
        if relative or name == "prune_ratio":
            _check_type(v, float, f, f"{key}.values")
        else:
            _check_type(v, hint, f, f"{key}.values")
    if len({repr(v) for v in vals}) != len(vals):
        raise f.error(f"{key}.values", f"values repeat: {vals}")
    nums = kind != "categorical"
    return Axis(
        name,
        kind if nums else "categorical",
        min(vals) if nums else None,
        max(vals) if nums else None,
        tuple(float(v) if kind == "float" else v for v in vals),
        relative,
    )


def grid_values(low: float, high: float, points: int, integer: bool = False) -> tuple[Any, ...]:
    """``points`` evenly spaced values from ``low`` to ``high`` (both included; 12 decimals, so 0.1 + 0.2
    prints as 0.3); integers rounded and de-duplicated."""
    if points == 1 or low == high:
        return (int(round(low)),) if integer else (float(low),)
    step = (high - low) / (points - 1)
    vals = [round(low + i * step, 12) for i in range(points)]
    vals[-1] = float(high)
    if integer:
        return tuple(dict.fromkeys(int(round(v)) for v in vals))
    return tuple(vals)
