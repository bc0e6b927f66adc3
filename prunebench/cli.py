"""The ``prunebench`` command: parse, validate, call one function of a lower floor, print.

Bad input gives one line on stderr (what is wrong, what is valid) and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

from prunebench.errors import PrunebenchError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit with code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _quiet_libraries() -> None:
    for name in ("alembic", "mlflow", "optuna", "matplotlib", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # a locked or corrupt store: MLflow logs the whole SQL traceback; prunebench says it in one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def parse_set(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``key=value`` strings to a dict; values stay strings (coerced by the typed config later)."""
    out: dict[str, Any] = {}
    for p in pairs or ():
        k, sep, v = p.partition("=")
        if not sep or not k.strip():
            raise PrunebenchError(f"--set expects key=value, got {p!r}")
        k = k.strip()
        if k in out:
            raise PrunebenchError(f"--set {k} given twice")
        out[k] = v.strip()
    return out


# ---------------------------------------------------------------------------------------------------
# list
# ---------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from prunebench import catalog  # a static index of the registries: no torch import

    datasets = [(d["name"], d["description"]) for d in catalog.datasets()]
    models = [(m["name"], m["description"]) for m in catalog.models()] + [
        ("tv:<name>", "any torchvision classification model (ImageNet stem), randomly initialised")
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "pruners": [
                        p if args.long else {k: p[k] for k in ("name", "granularity", "description")}
                        for p in catalog.pruners()
                    ],
                    "datasets": [{"name": n, "description": d} for n, d in datasets],
                    "models": [{"name": n, "description": d} for n, d in models],
                },
                indent=2,
                default=list,
            )
        )
        return 0
    w = max(len(p["name"]) for p in catalog.pruners())
    print("Pruners")
    for p in catalog.pruners():
        print(f"  {p['name']:<{w}}  {p['granularity']:<6}  {p['description']}")
        if args.long:
            print(pruner_details(p, " " * (w + 12)))
    print("\nDatasets")
    for n, d in datasets:
        print(f"  {n:<{w}}  {d}")
    print(f"  {'':<{w}}  any of them as NAME:n=K[,seed=S]: a class-stratified subset of K training images (README)")
    print("\nModels")
    for n, d in models:
        print(f"  {n:<{w}}  {d}")
    return 0


def pruner_details(p: dict[str, Any], indent: str) -> str:
    """The method-table lines of one catalog entry (``prunebench list --long``)."""
    defaults = ", ".join(f"{k}={v}" for k, v in p["defaults"].items()) or "-"
    return "\n".join(
        f"{indent}{k:<9} {v}"
        for k, v in (
            ("family", p["family"]),
            ("paper", p["paper"]),
            ("cost", ", ".join(p["cost_profile"]) or "none"),
            ("weights", "yes (per-sample loss weights)" if p["uses_weights"] else "no"),
            ("defaults", defaults),
            ("source", p["defaults_source"]),
        )
    )


# ---------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------

SUMMARY_KEYS = (
    "final_acc",
    "best_acc",
    "final_top5",
    "train_time_s",
    "selection_time_s",
    "scoring_time_s",
    "samples_forward",
    "samples_backprop",
    "optimizer_steps",
    "realized_prune_ratio",
    "relative_compute",
    "jaccard_mean",
)


def _progress_printer(quiet: bool):
    if quiet:
        return None

    def show(m: dict[str, Any]) -> None:
        e, total = m["epoch"] + 1, m["epochs"]
        width = 20
        done = min(width, int(width * e / max(1, total)))
        acc = f"acc {m['test_acc']:.4f}" if "test_acc" in m else "acc   -   "
        jac = "" if math.isnan(m["jaccard"]) else f"  jaccard {m['jaccard']:.2f}"
        print(
            f"[{'#' * done}{'.' * (width - done)}] epoch {e}/{total}  loss {m['train_loss']:.4f}  {acc}  "
            f"kept {m['kept_fraction']:.1%}{jac}  {m['epoch_time_s']:.2f}s",
            file=sys.stderr,
            flush=True,
        )

    return show


def _add_config_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """One flag per :class:`TrainConfig` field declared with ``flag=True`` (or per field of ``names``), its
    help from the declaration.

    A boolean field gets the flag that changes its default (``--resume``, ``--no-tracking``); the others
    take a value, validated with the rest of the config (:func:`build_run_config`)."""
    import dataclasses as dc

    from prunebench.harness.config import FLAG_FIELDS, TrainConfig

    for f in dc.fields(TrainConfig):
        if f.name not in (FLAG_FIELDS if names is None else names):
            continue
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if isinstance(f.default, bool):
            parser.add_argument(
                flag if not f.default else "--no-" + flag[2:],
                dest=f.name,
                action="store_const",
                const=not f.default,
                default=None,
                help=text if not f.default else f"do not {text}",
            )
        else:
            default = "" if "default" in text or f.default is None else f" (default {f.default})"
            parser.add_argument(flag, dest=f.name, help=text + default)


def build_run_config(args: argparse.Namespace):
    from prunebench.harness.config import FLAG_FIELDS, TrainConfig, split_overrides

    cfg_over, opts = split_overrides(parse_set(args.set))
    raw: dict[str, Any] = dict(cfg_over)
    for key in FLAG_FIELDS:
        v = getattr(args, key, None)
        if v is not None:
            if key in raw:
                raise PrunebenchError(f"{key} given both as an option and with --set; give it once")
            raw[key] = v
    raw["pruner_options"] = opts
    config = TrainConfig.from_dict(raw)
    _check_option_names(config.pruner, opts)
    _check_names(config)
    return config


def _check_names(config) -> None:
    """Dataset and model names against the static registry index (same messages as the registries)."""
    from prunebench import catalog

    datasets = {d["name"]: d for d in catalog.datasets()}
    base = config.dataset.partition(":")[0]
    if base not in datasets:
        valid = ", ".join(f"{n}:<{d['arg']}>" if d["arg"] else n for n, d in sorted(datasets.items()))
        raise PrunebenchError(f"unknown dataset {config.dataset!r}; valid: {valid}")
    models = sorted(m["name"] for m in catalog.models())
    if not config.model.startswith("tv:") and config.model not in models:
        raise PrunebenchError(
            f"unknown model {config.model!r}; valid: {', '.join(models)}, tv:<torchvision model name>"
        )
    if config.data_dir is not None and not os.path.isdir(os.path.expanduser(config.data_dir)):
        raise PrunebenchError(
            f"data dir {config.data_dir!r} does not exist (give an existing folder with --data-dir or PRUNEBENCH_DATA)"
        )


def _check_option_names(pruner: str, opts: dict[str, Any]) -> None:
    """A --set key that is neither a config field nor an option of the pruner: say both lists.

    Reads the static registry index (:mod:`prunebench.catalog`), so bad names fail before torch is imported.
    """
    from prunebench import catalog
    from prunebench.harness.config import TrainConfig

    index = {p["name"]: p for p in catalog.pruners()}
    if pruner not in index:
        raise PrunebenchError(f"unknown pruner {pruner!r}; valid: {', '.join(sorted(index))}")
    valid = list(index[pruner]["options"])
    for k in opts:
        if k not in valid:
            fields = ", ".join(
                f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("pruner_options", "tags")
            )
            raise PrunebenchError(
                f"unknown --set key {k!r}: not a config field ({fields}) nor an option of {pruner} "
                f"({', '.join(valid) or 'none'})"
            )


def _end_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cmd_run(args: argparse.Namespace) -> int:
    config = build_run_config(args)  # validated against the static index first: bad input fails before torch loads
    from prunebench.harness import train
    from prunebench.harness.checkpoint import resume_or_start

    config, note = resume_or_start(config)
    if note and int(os.environ.get("RANK", "0")) == 0:
        print(f"prunebench: {note}", file=sys.stderr, flush=True)

    rank = int(os.environ.get("RANK", "0"))  # under torchrun only rank 0 prints
    result = train(config, progress=_progress_printer(args.quiet or rank != 0))
    _end_distributed()
    if rank != 0:
        return 0
    row = result.row
    if args.json:
        print(json.dumps(row, default=str, allow_nan=True))
        return 0
    print(
        f"{row['label']} on {row['dataset']}/{row['model']} seed {row['seed']} ({row['epochs']} epochs, {row['device']})"
    )
    for k in SUMMARY_KEYS:
        v = row.get(k)
        if isinstance(v, float):
            v = f"{v:.4f}"
        print(f"  {k:<22} {v}")
    if row.get("run_id"):
        print(f"  {'mlflow run':<22} {row['run_id']}")
    _print_scoring(row)
    return 0


def _print_scoring(row: dict[str, Any]) -> None:
    """Static methods: the proxy run's cost beside the training cost, and whether the cache served it."""
    if "scoring_cache_hit" not in row:
        return
    for k in (
        "scoring_proxy_time_s",
        "scoring_samples_backprop",
        "scoring_samples_forward",
        "scoring_relative_compute",
        "scoring_proxy_acc",
        "scoring_cache_hit",
    ):
        v = row.get(k)
        print(f"  {k:<22} {f'{v:.4f}' if isinstance(v, float) else v}")
    if row["scoring_cache_hit"]:
        print(
            "prunebench: proxy scores reused from the score cache (scoring_time_s is the lookup; "
            "scoring_proxy_time_s is what the cached proxy run took)",
            file=sys.stderr,
        )


# ---------------------------------------------------------------------------------------------------
# export-scores
# ---------------------------------------------------------------------------------------------------


def cmd_export_scores(args: argparse.Namespace) -> int:
    args.tracking = False  # scores only: no MLflow run
    config = build_run_config(args)
    from prunebench.harness.export import export_arrays, static_scores

    written = export_arrays(static_scores(config), args.out, args.format)
    for p in written:
        print(p)
    return 0


# ---------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    target = args.target
    if target.endswith(".toml") and not os.path.isfile(target):  # before pandas/seaborn/mlflow are imported
        raise PrunebenchError(f"study file {target} does not exist")
    if (
        (os.sep in target or os.path.splitext(target)[1])
        and not os.path.exists(target)
        and not target.endswith(".toml")
        and args.results is None
    ):
        raise PrunebenchError(
            f"{target} does not exist: pass a results folder, a study .toml file or an MLflow experiment name"
        )
    from prunebench.reports import build_report

    index = build_report(
        args.target,
        args.output,
        results_dir=args.results,
        tracking_uri=args.tracking_uri,
        title=args.title,
        prior_report=args.prior_report,
        proxy_charge=args.proxy_charge,
    )
    print(index)
    return 0


# ---------------------------------------------------------------------------------------------------
# export-coreset
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _ExportArgs:
    prune_ratio: float | None = None  # keep round((1-p)N); None: the run's own prune ratio
    seed: int = 0  # tie-breaking seed


def cmd_export_coreset(args: argparse.Namespace) -> int:
    from prunebench.harness.export import export_coreset, load_run_usage
    from prunebench.options import build_options

    a = build_options(
        _ExportArgs,
        {k: v for k, v in (("prune_ratio", args.prune_ratio), ("seed", args.seed)) if v is not None},
        "export-coreset",
    )
    usage, row = load_run_usage(args.run_id, args.tracking_uri)
    p = a.prune_ratio if a.prune_ratio is not None else row.get("prune_ratio")
    if p is None:
        raise PrunebenchError(f"run {args.run_id!r} records no prune_ratio; give --prune-ratio")
    summary = export_coreset(usage, float(p), args.out, seed=a.seed, usage_out=args.usage_out)
    summary["run_id"] = args.run_id
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"wrote {summary['kept']} of {summary['num_samples']} indices (most used; p={summary['prune_ratio']:g}) "
        f"to {summary['out']}; min usage kept {summary['min_usage_kept']}, "
        f"{summary['tied_at_threshold']} of {summary['tie_pool']} tied samples drawn at random"
    )
    print(
        f"train on it: prunebench run --pruner from-indices --prune-ratio {summary['prune_ratio']:g} "
        f"--set indices_file={summary['out']}" + (f" --dataset {row['dataset']}" if row.get("dataset") else "")
    )
    return 0


# ---------------------------------------------------------------------------------------------------
# leaderboard, sweep (one call each into prunebench.studies)
# ---------------------------------------------------------------------------------------------------


class _Live:
    """Progress on stderr: the study's log lines, and the running cells' progress (epoch, accuracy, ETA).

    On a terminal the running cells share one live line, rewritten in place under the log lines; into a
    file or pipe each cell's progress is one line per epoch.
    """

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.cells: dict[str, str] = {}

    def log(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K")
        print(line, file=self.stream, flush=True)
        self._redraw()

    def show(self, cell: str, text: str | None) -> None:
        if text is None:
            self.cells.pop(cell, None)
        else:
            self.cells[cell] = text
        if self.tty:
            self._redraw()
        elif text is not None:
            print(f"  {cell}: {text}", file=self.stream, flush=True)

    def _redraw(self) -> None:
        if not self.tty:
            return
        import shutil

        line = " | ".join(f"{c}: {t}" for c, t in self.cells.items())
        width = shutil.get_terminal_size().columns
        self.stream.write("\r\x1b[2K" + (line if len(line) < width else line[: width - 2] + "~"))
        self.stream.flush()


def cmd_leaderboard(args: argparse.Namespace) -> int:
    jobs = _positive_int(args.jobs, "--jobs")
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise PrunebenchError(
                f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. --seeds 0,1"
            ) from None
    _check_study_file(args.study)
    from prunebench.studies import format_leaderboard, leaderboard_table, load_study, run_leaderboard

    study = load_study(args.study)
    live = None if args.quiet else _Live()
    res = run_leaderboard(
        study,
        args.out,
        jobs=jobs,
        dry_run=args.dry_run,
        tracking_uri=args.tracking_uri,
        executor=_executor(args, study),
        data_dir=args.data_dir,
        retry_failed=not args.no_retry_failed,
        log=live.log if live else None,
        show=live.show if live else None,
        seeds=seeds,
        imports=args.imports,
        train=not args.tabulate,
        methods=[m for m in args.methods.split(",") if m.strip()] if args.methods is not None else None,
    )
    if args.dry_run:
        print(res.to_string(index=False))
        counts = res["state"].value_counts().to_dict()
        print(f"{len(res)} runs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
        return 0
    print(format_leaderboard(leaderboard_table(res, study.proxy_charge, study.baselines)))
    failed = int((res["status"] != "FINISHED").sum())
    if failed:
        print(f"{failed} of {len(res)} runs failed (see the error column of the results table)", file=sys.stderr)
    return 1 if failed else 0


def _executor(args: argparse.Namespace, study):
    """The study's ``[executor]`` table overridden by the command's executor flags."""
    from prunebench.studies.executors import parse_executor

    table = {}
    if study.executor is not None:
        table = {
            f.name: getattr(study.executor, f.name)
            for f in dataclasses.fields(study.executor)
            if getattr(study.executor, f.name) != f.default
        }
    flags = {
        "kind": args.executor,
        "gpus_per_run": args.gpus_per_run,
        "cpus_per_run": args.cpus_per_run,
        "gpus": args.gpus,
        "address": args.ray_address,
        "partition": args.partition,
        "time_limit_min": args.time_limit,
        "array_parallelism": args.array_parallelism,
        "sbatch": args.sbatch,
    }
    return parse_executor(
        {k: list(v) if isinstance(v, tuple) else v for k, v in table.items()},
        "executor",
        **{k: v for k, v in flags.items() if v is not None},
    )


def _add_executor_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where cells run (else the study file's [executor] table; docs/clusters.md)")
    g.add_argument(
        "--executor",
        choices=("local", "ray", "slurm"),
        help="local: a process pool here (--jobs); ray: a running Ray cluster; slurm: job arrays (submitit)",
    )
    g.add_argument(
        "--gpus-per-run",
        dest="gpus_per_run",
        help="GPUs per cell (local: 0.5 puts two runs on one GPU; default 1 when the recipe trains on CUDA, else 0)",
    )
    g.add_argument("--cpus-per-run", dest="cpus_per_run", help="ray/slurm: CPU cores per cell (default 1)")
    g.add_argument(
        "--gpus", help="local: GPU indices to place runs on, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES, else all)"
    )
    g.add_argument(
        "--ray-address", dest="ray_address", help="ray: the cluster's address (default $RAY_ADDRESS, else auto)"
    )
    g.add_argument("--partition", help="slurm: partition")
    g.add_argument("--time-limit", dest="time_limit", help="slurm: minutes per cell (default 60)")
    g.add_argument(
        "--array-parallelism", dest="array_parallelism", help="slurm: cells running at once (default: no limit)"
    )
    g.add_argument(
        "--sbatch",
        action="append",
        metavar="--OPT=VALUE",
        help="slurm: an extra sbatch option (repeatable), e.g. --sbatch=--qos=normal",
    )


def cmd_status(args: argparse.Namespace) -> int:
    _check_study_file(args.study)
    from prunebench.studies import load_study
    from prunebench.studies.status import format_status, grid_status

    study = load_study(args.study)
    table = grid_status(study, args.tracking_uri)
    if args.json:
        print(table.to_json(orient="records"))
    else:
        print(format_status(study, table, cells=not args.summary))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    n_trials = _positive_int(args.n_trials, "--n-trials") if args.n_trials is not None else None
    _check_study_file(args.study)
    import optuna

    from prunebench.studies import format_sweep, load_study, pick_sweep, run_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own progress lines say the same, shorter
    study = load_study(args.study)
    names = [args.sweep] if args.sweep else list(study.sweeps) or [None]
    live = None if args.quiet else _Live()
    for name in names:
        spec = pick_sweep(study, name)
        result = run_sweep(
            study,
            storage=args.storage,
            n_trials=n_trials,
            sweep=spec.name,
            out_dir=args.out,
            tracking_uri=args.tracking_uri,
            data_dir=args.data_dir,
            early_stopping=args.early_stopping,
            log=live.log if live else None,
            show=live.show if live else None,
            jobs=_positive_int(args.jobs, "--jobs"),
            imports=args.imports,
            train=not args.tabulate,
            executor=_executor(args, study),
        )
        print(f"{study.name}/{spec.name} ({spec.kind}, {spec.pruner}): {result.folder}")
        print(format_sweep(result))
    return 0


def _check_study_file(path: str) -> None:
    """A missing study file is reported before the registries are imported (same message as load_study)."""
    if not os.path.exists(path):
        raise PrunebenchError(f"{path}: study file not found")


def _positive_int(v: str, flag: str) -> int:
    try:
        n = int(v)
    except (TypeError, ValueError):
        raise PrunebenchError(f"{flag} expects an integer >= 1, got {v!r}") from None
    if n < 1:
        raise PrunebenchError(f"{flag} expects an integer >= 1, got {v!r}")
    return n


# ---------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="prunebench",
        description="Head-to-head benchmarks of data-pruning methods under one training loop.",
        allow_abbrev=False,
    )
    common = argparse.ArgumentParser(add_help=False)  # options of every command
    common.add_argument(
        "--plugin",
        action="append",
        metavar="FILE_OR_MODULE",
        help="import a pruner plugin first: a .py file or a module name (repeatable; docs/adding-a-pruner.md)",
    )
    sub = p.add_subparsers(
        dest="command", parser_class=functools.partial(_Parser, allow_abbrev=False, parents=[common]), metavar="COMMAND"
    )
    _add_list(sub)
    _add_run(sub)
    _add_leaderboard(sub)
    _add_status(sub)
    _add_sweep(sub)
    _add_report(sub)
    _add_export_scores(sub)
    _add_export_coreset(sub)
    return p


def _add_list(sub) -> None:
    pl = sub.add_parser("list", help="pruners, datasets and models")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument(
        "--long",
        action="store_true",
        help="per pruner also its family, paper, cost profile, "
        "whether it weights losses, and its option defaults with their sources",
    )
    pl.set_defaults(func=cmd_list)


def _add_run(sub) -> None:
    pr = sub.add_parser("run", help="train one run (default: digits with orderdp)")
    _add_config_flags(pr)
    pr.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config field (e.g. optimizer=adamw, budget=steps) or pruner option (e.g. candidate_ratio=0.8)",
    )
    pr.add_argument("--json", action="store_true", help="print exactly one JSON object (the result row) on stdout")
    pr.add_argument("--quiet", action="store_true", help="no progress on stderr")
    pr.set_defaults(func=cmd_run)


def _add_leaderboard(sub) -> None:
    pb = sub.add_parser("leaderboard", help="run a study file's grid (resumable) and rank the methods")
    pb.add_argument("study", metavar="STUDY.toml", help="study file (see README, Studies)")
    pb.add_argument("--out", help="results folder (default results/<study name>/ under the working directory)")
    pb.add_argument("--jobs", default="1", help="trainings run in parallel processes (default 1)")
    pb.add_argument("--dry-run", action="store_true", help="list the runs and which are already done; run nothing")
    pb.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (else the file's, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    pb.add_argument(
        "--data-dir", dest="data_dir", help="data folder (else $PRUNEBENCH_DATA, else ~/.cache/prunebench/data)"
    )
    pb.add_argument(
        "--no-retry-failed", action="store_true", help="keep failed runs as failed instead of running them again"
    )
    pb.add_argument(
        "--tabulate",
        action="store_true",
        help="train nothing: write the tables of the cells done so far (e.g. while the grid still runs)",
    )
    pb.add_argument(
        "--methods",
        help="run only these of the study's methods (comma-separated names as in the file; full too only when named)",
    )
    pb.add_argument("--seeds", help="run only these of the study's seeds (comma-separated, e.g. 1 or 0,2)")
    pb.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="RESULTS",
        help="a results table of an earlier leaderboard (results folder, results.csv/.parquet, or a "
        "report folder): its finished cells of this grid are not run again (repeatable)",
    )
    pb.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on stderr (else a live line per running cell: epoch, accuracy so far, ETA)",
    )
    pb.set_defaults(func=cmd_leaderboard)

    _add_executor_flags(pb)


def _add_status(sub) -> None:
    pst = sub.add_parser("status", help="done / running / failed / pending cells of a study, from the tracking store")
    pst.add_argument("study", metavar="STUDY.toml", help="study file (its leaderboard grid and grid sweeps)")
    pst.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (else the file's, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    pst.add_argument("--summary", action="store_true", help="only the counts, not the cells that are not done")
    pst.add_argument("--json", action="store_true", help="one JSON list of cells")
    pst.set_defaults(func=cmd_status)


def _add_sweep(sub) -> None:
    ps = sub.add_parser("sweep", help="run or join a study file's Optuna sweep(s) (resumable, multi-worker)")
    ps.add_argument("study", metavar="STUDY.toml", help="study file with [sweeps.NAME] tables")
    ps.add_argument("--sweep", help="which sweep (default: each declared sweep in turn)")
    ps.add_argument(
        "--storage",
        help="Optuna RDB storage URL, e.g. postgresql://user@host/db (default: the file's, else sqlite:///<out>/optuna.db)",
    )
    ps.add_argument(
        "--n-trials",
        dest="n_trials",
        help="finished trials the study should reach, over all workers (default: the file's)",
    )
    ps.add_argument(
        "--out", help="results folder; the sweep writes <out>/sweeps/<name>/ (default results/<study name>/)"
    )
    ps.add_argument("--jobs", default="1", help="grid sweeps: trainings run in parallel processes (default 1)")
    ps.add_argument(
        "--tabulate",
        action="store_true",
        help="train nothing: write the sweep's tables from the runs done so far (e.g. while it still runs)",
    )
    ps.add_argument(
        "--import",
        dest="imports",
        action="append",
        metavar="RESULTS",
        help="a results table whose finished cells are not run again, e.g. the leaderboard's for full (repeatable)",
    )
    ps.add_argument("--tracking-uri", dest="tracking_uri", help="MLflow tracking URI")
    ps.add_argument("--data-dir", dest="data_dir", help="data folder")
    es = ps.add_mutually_exclusive_group()
    es.add_argument(
        "--early-stopping",
        dest="early_stopping",
        action="store_true",
        default=None,
        help="early stopping of trials (Optuna median pruner on per-epoch accuracy)",
    )
    es.add_argument(
        "--no-early-stopping", dest="early_stopping", action="store_false", help="no early stopping of trials"
    )
    ps.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _add_executor_flags(ps)
    ps.set_defaults(func=cmd_sweep)


def _add_report(sub) -> None:
    rp = sub.add_parser("report", help="comparison report (HTML, Markdown, CSV, PNG) of a study's results")
    rp.add_argument(
        "target",
        metavar="STUDY_OR_EXPERIMENT",
        help="a results folder (results.parquet), a study .toml file, or an MLflow experiment name",
    )
    rp.add_argument("-o", "--output", help="report folder (default reports/<study or experiment name>)")
    rp.add_argument("--results", help="results folder of a study file (default results/<study name>)")
    rp.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help="MLflow store of an experiment name (else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    rp.add_argument("--title", help="report title (default: prunebench report: <name>)")
    rp.add_argument(
        "--prior-report",
        dest="prior_report",
        metavar="DIR",
        help="an earlier report folder: its per-run tables (tables/histories.csv, ...) stand in for runs "
        "the MLflow store lacks (it may be the output folder itself)",
    )
    rp.add_argument(
        "--proxy-charge",
        dest="proxy_charge",
        choices=("full", "amortised"),
        help="charge a proxy shared by several runs in full to each (default, or the study's "
        "[study] proxy_charge) or amortise it over them",
    )
    rp.set_defaults(func=cmd_report)


def _add_export_scores(sub) -> None:
    pe = sub.add_parser(
        "export-scores",
        help="score and select with a static pruner (no final training); write scores and kept indices as .npy or .csv",
    )
    pe.add_argument("--pruner", required=True, help="a static pruner (el2n, forgetting, ccs, ...)")
    pe.add_argument("--out", required=True, help="output folder")
    pe.add_argument("--format", choices=("npy", "csv"), default="npy", help="npy (one file per array) or csv")
    _add_config_flags(pe, ("dataset", "model", "prune_ratio", "seed", "batch_size", "lr", "data_dir", "device"))
    pe.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="config field or pruner option (proxy_epochs=5)"
    )
    pe.set_defaults(func=cmd_export_scores, epochs=None, tracking_uri=None, experiment=None)


def _add_export_coreset(sub) -> None:
    pe = sub.add_parser("export-coreset", help="write a run's (1-p)N most-used samples as an index file")
    pe.add_argument("run_id", help="MLflow run id of a prunebench run")
    pe.add_argument("--out", required=True, help="index file to write (.npy or .csv), for --pruner from-indices")
    pe.add_argument("--prune-ratio", dest="prune_ratio", help="keep round((1-p)N) samples (default: the run's ratio)")
    pe.add_argument("--seed", help="seed for breaking ties between equal usage counts (default 0)")
    pe.add_argument("--usage-out", dest="usage_out", help="also write the per-sample usage counts (.npy or .csv)")
    pe.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        help="MLflow tracking URI (else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    pe.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    pe.set_defaults(func=cmd_export_coreset)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _quiet_libraries()
    from prunebench.errors import Terminated
    from prunebench.safety import handle_sigterm

    handle_sigterm()  # SIGTERM (timeout, docker stop, Slurm, ...) ends a run like Ctrl-C, as KILLED
    try:
        if args.plugin:
            from prunebench.plugins import load_plugins

            load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except PrunebenchError as e:
        msg = " ".join(str(e).split("\n"))
        print(f"prunebench: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(
            "prunebench: terminated (SIGTERM); the run is marked KILLED and its checkpoint, if any, kept",
            file=sys.stderr,
        )
        return 143
    except KeyboardInterrupt:
        print("prunebench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
