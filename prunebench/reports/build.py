"""``build_report``: results table (+ the runs' MLflow histories and artifacts) -> a report folder.

The folder is self-contained: ``index.html`` (opens from disk, links only into the folder), ``README.md``
(the same content for GitHub), ``tables/*.csv`` (the raw numbers behind every table and heatmap) and
``figures/*.png``. Nothing is re-trained or re-scored.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prunebench.reports import analysis, budget, figures
from prunebench.reports.budget_sections import budget_sections
from prunebench.reports.inputs import HISTORY_KEYS, PriorReport, ReportError, RunStore, Source, finished, resolve_source
from prunebench.reports.render import Document, Figure, Section, Table, to_html, to_markdown
from prunebench.reports.stats import (
    COST_DEFINITION,
    FEW_SEEDS,
    PROXY_CHARGES,
    SIGN_CONVENTION,
    format_diff,
    paired_table,
    study_options,
    with_costs,
)
from prunebench.reports.sweeps import sweep_sections
from prunebench.reports.tables import GROUP, curve_volatility, leaderboard_table, stability_table

MAIN_FIGURE = "figures/accuracy_vs_compute.png"
LIBRARIES = ("torch", "torchvision", "mlflow", "optuna", "pandas", "seaborn", "matplotlib", "numpy", "scipy")
GAMMA_BINS = 60  # rank bins of the empirical keep frequency (N ranks are too noisy one by one)


# ---------------------------------------------------------------------------------------------------
# provenance
# ---------------------------------------------------------------------------------------------------


def git_sha(path: Path | None = None) -> str:
    """``git rev-parse HEAD`` of the repository holding the prunebench code, else "unknown"."""
    path = path or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def hardware() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"CPU": f"{cpu} ({os.cpu_count()} logical cores)"}
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        out["memory"] = f"{mem:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        gpus = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except Exception:
        gpus = []
    out["GPU"] = ", ".join(gpus) if gpus else "none"
    return out


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _distinct(df: pd.DataFrame, col: str) -> str:
    if col not in df.columns:
        return "not recorded"
    vals = sorted({str(v) for v in df[col].dropna()})
    return ", ".join(vals) if vals else "not recorded"


# ---------------------------------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------------------------------


def _pct(x: float, nd: int = 2) -> str:
    return "–" if pd.isna(x) else f"{100 * x:.{nd}f}"


def _sec(x: float) -> str:
    return "–" if pd.isna(x) else (f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}")


def _diff_cell(r: pd.Series, pre: str) -> str:
    if pd.isna(r.get(f"{pre}_mean")):
        return "–"
    return format_diff(
        r[f"{pre}_mean"], r[f"{pre}_ci_low"], r[f"{pre}_ci_high"], r[f"{pre}_n_pairs"], r[f"{pre}_verdict"]
    )


def _rank(r: pd.Series) -> str:
    if pd.isna(r["rank"]):
        return "ref."
    tied = not pd.isna(r["tied_with_leader"]) and bool(r["tied_with_leader"])
    return f"{int(r['rank'])}" + ("=" if tied and r["rank"] > 1 else "")


def leaderboard_display(t: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The displayed leaderboard of one prune ratio (strings, rank order) and its marks: the top-1 cells
    of the leader and of every method not distinguishable from it (only accuracy is highlighted)."""
    cols = {
        "#": lambda r: _rank(r),
        "method": lambda r: r["series"],
        "seeds": lambda r: f"{r['n_seeds']}",
        "top-1 % (mean ± std)": lambda r: f"{_pct(r['acc_mean'])} ± {_pct(r['acc_std'])}",
        "95% CI": lambda r: "–" if pd.isna(r["acc_ci_low"]) else f"[{_pct(r['acc_ci_low'])}, {_pct(r['acc_ci_high'])}]",
        "vs full (pp) [95% CI]": lambda r: _diff_cell(r, "vs_full"),
        "vs baseline (pp) [95% CI]": lambda r: (
            "–" if pd.isna(r.get("vs_baseline_mean")) else f"{_diff_cell(r, 'vs_baseline')} vs {r['baseline']}"
        ),
        "realized prune %": lambda r: _pct(r["realized_prune_ratio"], 1),
        "compute saved % (total)": lambda r: _pct(r["compute_saved"], 1),
        "compute saved % (training only)": lambda r: _pct(r["train_compute_saved"], 1),
        "cost s (mean ± std)": lambda r: (
            _sec(r["total_cost_s"]) + ("" if pd.isna(r["total_cost_s_std"]) else f" ± {_sec(r['total_cost_s_std'])}")
        ),
        "scoring s": lambda r: _sec(r["scoring_cost_s"]),
        "wall-clock saved %": lambda r: _pct(r["wallclock_saved"], 1),
    }
    disp = pd.DataFrame({name: [f(r) for _, r in t.iterrows()] for name, f in cols.items()})
    lead = (t["method"] != "full") & t["tied_with_leader"].fillna(False).astype(bool)
    bold = pd.DataFrame(False, index=disp.index, columns=disp.columns)
    bold["top-1 % (mean ± std)"] = lead.to_numpy()
    return disp, bold


# ---------------------------------------------------------------------------------------------------
# data from MLflow
# ---------------------------------------------------------------------------------------------------


def _histories(ok: pd.DataFrame, store: RunStore) -> pd.DataFrame:
    recs = []
    for _, row in ok.iterrows():
        for key in HISTORY_KEYS:
            s = store.history(row, key)
            if s is None:
                continue
            recs.append(
                pd.DataFrame(
                    {
                        "series": row["series"],
                        "method": row["method"],
                        "dataset": row["dataset"],
                        "model": row["model"],
                        "prune_ratio": row["prune_ratio"],
                        "seed": row["seed"],
                        "run_id": row.get("run_id"),
                        "key": key,
                        "epoch": s.index.astype(int),
                        "value": s.to_numpy(),
                    }
                )
            )
    cols = ["series", "method", "dataset", "model", "prune_ratio", "seed", "run_id", "key", "epoch", "value"]
    return pd.concat(recs, ignore_index=True) if recs else pd.DataFrame(columns=cols)


def _own_histories(hist: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """The histories (read once for a larger table) of the runs of ``ok``, with ``ok``'s series names."""
    names = ok[["run_id", "series"]].dropna(subset=["run_id"]).drop_duplicates("run_id")
    mine = hist[hist["run_id"].isin(names["run_id"])].drop(columns=["series"]).merge(names, on="run_id", how="left")
    return mine[list(hist.columns)].reset_index(drop=True)


def _row_label(series: str, p: float) -> str:
    return f"{series} @ p={p:g}"


def _groups(ok: pd.DataFrame, exclude_full: bool = True):
    for key, g in ok.groupby(GROUP + ["series"], sort=True):
        if exclude_full and key[3] == "full":
            continue
        yield dict(zip(GROUP + ["series"], key)), g.sort_values("seed")


def _prior_group(store: RunStore, g: pd.DataFrame, table: str, k: dict) -> pd.DataFrame | None:
    """The earlier report's aggregate of this (method, ratio), when it aggregated exactly these runs and
    the store has none of them."""
    if store.prior is None or any(store.in_store(r) for _, r in g.iterrows()):
        return None
    if not store.prior.same_runs(k["method"], k["prune_ratio"], g["run_id"]):
        return None
    return store.prior.group_table(table, k["method"], k["prune_ratio"])


def _cross_seed(ok: pd.DataFrame, store: RunStore) -> pd.DataFrame:
    recs = []
    for k, g in _groups(ok):
        if g["seed"].nunique() < 2:
            continue
        masks = [m for m in (store.kept_masks(r) for _, r in g.iterrows()) if m is not None]
        if len(masks) < 2:
            prior = _prior_group(store, g, "jaccard_cross_seed.csv", k)
            if prior is not None:
                recs += [
                    {
                        **k,
                        "row": _row_label(k["series"], k["prune_ratio"]),
                        "epoch": int(r["epoch"]),
                        "value": float(r["value"]),
                        "n_seeds": int(r["n_seeds"]),
                    }
                    for _, r in prior.iterrows()
                ]
            continue
        for e, v in enumerate(analysis.cross_seed_jaccard(masks)):
            recs.append(
                {**k, "row": _row_label(k["series"], k["prune_ratio"]), "epoch": e, "value": v, "n_seeds": len(masks)}
            )
    return pd.DataFrame(recs)


def _usage(ok: pd.DataFrame, store: RunStore) -> list[dict[str, Any]]:
    items = []
    for k, g in _groups(ok):
        if str(g["granularity"].iloc[0]) == "static":
            continue
        arrays = [a for a in (store.array(r, "usage_counts") for _, r in g.iterrows()) if a is not None]
        if not arrays:
            prior = _prior_group(store, g, "usage_histograms.csv", k)
            if prior is not None:
                p = prior.sort_values("usage")
                freq = np.zeros(int(p["usage"].max()) + 1)
                freq[p["usage"].astype(int).to_numpy()] = p["fraction"].to_numpy(float)
                items.append({**k, "freq": freq, "epochs": int(g["epochs"].iloc[0]), "n_runs": len(g)})
            continue
        u = np.concatenate(arrays).astype(np.int64)
        items.append({**k, "freq": np.bincount(u) / u.size, "epochs": int(g["epochs"].iloc[0]), "n_runs": len(arrays)})
    return items


def _gamma_items(ok: pd.DataFrame, store: RunStore) -> list[dict[str, Any]]:
    """The keep-by-rank section: every method whose pruner declares ``rank_keep_probability`` (OrderDP's
    gamma), against the keep frequency per plan-time score rank its runs realized."""
    from prunebench.errors import ConfigError
    from prunebench.pruners import get_pruner_class, keep_count

    items = []
    for k, g in _groups(ok):
        r0 = g.iloc[0]
        try:
            cls = get_pruner_class(str(r0["pruner"]))
        except ConfigError:  # a plugin not loaded here: no prediction to draw
            continue
        if pd.isna(r0.get("num_samples", np.nan)):  # a table without the training set's size: nothing to predict
            continue
        n, p = int(r0["num_samples"]), float(r0["prune_ratio"])
        opts = {c[len("pruner.") :]: r0[c] for c in g.columns if c.startswith("pruner.")}
        gam = cls.rank_keep_probability(n, p, opts)
        if gam is None:
            continue
        q = keep_count(n, p)
        # OrderDP's candidate count s from gamma_1 = s/N (exact for ranks <= q); not from the last non-zero
        # gamma, which underflows to 0 in float64 long before rank N - s + q (it read s = 40,146 for 40,000)
        s = int(round(float(gam[0]) * n))
        item = {**k, "n": n, "s": s, "q": q, "gamma": gam, "centres": None, "n_epochs": 0}
        kept_sum, exp_sum, count = np.zeros(n), np.zeros(n), 0
        rng = np.random.default_rng(0)  # the analysis' own tie order; never the runs' generators
        for _, row in g.iterrows():
            scores, epochs, masks = (
                store.array(row, "plan_scores"),
                store.array(row, "plan_score_epochs"),
                store.kept_masks(row),
            )
            if scores is None or epochs is None or masks is None:
                continue
            for sc, e in zip(scores, epochs):
                if e >= masks.shape[0]:
                    continue
                kr, er = analysis.keep_by_rank(sc, masks[e], gam, rng)
                kept_sum += kr
                exp_sum += er
                count += 1
        prior = _prior_group(store, g, "orderdp_keep_by_rank.csv", k) if not count else None
        if prior is not None:
            p = prior.sort_values("rank_bin_centre")
            item.update(
                centres=p["rank_bin_centre"].to_numpy(float),
                empirical_binned=p["empirical"].to_numpy(float),
                expected_binned=p["expected_with_ties"].to_numpy(float),
                gamma_binned=p["gamma"].to_numpy(float),
                n_epochs="an earlier report's",
            )
        if count:
            centres, emp = analysis.bin_ranks(kept_sum / count, GAMMA_BINS)
            _, exp = analysis.bin_ranks(exp_sum / count, GAMMA_BINS)
            _, gb = analysis.bin_ranks(gam, GAMMA_BINS)
            item.update(centres=centres, empirical_binned=emp, expected_binned=exp, gamma_binned=gb, n_epochs=count)
        items.append(item)
    return items


# ---------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------


REPORT_ENTRIES = ("figures", "tables", "index.html", "README.md")


def build_report(
    results: pd.DataFrame | str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    results_dir: str | os.PathLike | None = None,
    tracking_uri: str | None = None,
    title: str | None = None,
    prior_report: str | os.PathLike | None = None,
    proxy_charge: str | None = None,
    baselines: dict[str, str] | None = None,
) -> Path:
    """Write a comparison report of ``results`` into ``out_dir`` and return the path of its ``index.html``.

    Parameters
    ----------
    results : a results DataFrame (one row per run, see ``RunResult.row``), a results folder
        (``results.parquet``/``results.csv``, ``study.toml``, optional ``sweeps/<name>/results.csv``), a study TOML
        file (its folder is ``results/<name>/`` unless ``results_dir``), or an MLflow experiment name.
    out_dir : the report folder (created; its ``figures/``, ``tables/``, ``index.html`` and ``README.md``
        are replaced); default ``reports/<study or experiment name>``.
    tracking_uri : the MLflow store of an experiment name (else ``$MLFLOW_TRACKING_URI``, else
        ``sqlite:///mlflow.db``). Runs read from a table use the table's ``tracking_uri`` column.
    prior_report : an earlier report folder whose per-run tables (``tables/histories.csv``, ...) stand in
        for runs the MLflow store lacks (:class:`~prunebench.reports.inputs.PriorReport`); it may be
        ``out_dir`` itself (read before anything is written). The report says what came from it.
    proxy_charge, baselines : the cost model's proxy charge (``full``/``amortised``) and the family
        baselines of the paired statistics; default: the study file's ``[study]`` options, else ``full``
        and random-static / random-dynamic (:mod:`prunebench.reports.stats`).
    """
    from prunebench.errors import ConfigError
    from prunebench.safety import safe_component, staged_dir

    src = resolve_source(results, results_dir=results_dir, tracking_uri=tracking_uri)
    opts = study_options(src.study_text)
    if proxy_charge is not None:
        if proxy_charge not in PROXY_CHARGES:
            raise ReportError(f"proxy charge {proxy_charge!r} is not valid; valid: {', '.join(PROXY_CHARGES)}")
        opts["proxy_charge"] = proxy_charge
    opts["baselines"].update(baselines or {})
    if out_dir is None:  # the name comes from the data: one safe folder name inside reports/
        try:
            out = Path("reports") / safe_component(src.name, f"{src.origin}: study name")
        except ConfigError as e:
            raise ReportError(f"{e}; pass -o DIR to choose the report folder") from None
    else:
        out = Path(out_dir)
    prior = PriorReport(prior_report) if prior_report is not None else None
    store = RunStore(prior)
    try:
        # built in a staging folder and swapped in whole: a failure part way keeps the previous report
        entries = REPORT_ENTRIES + tuple(f"epochs-{e}" for e in budget.budgets(src.table))
        with staged_dir(out, entries) as stage:
            _build(src, stage, store, title, opts)
        return out / "index.html"
    finally:
        store.close()


@dataclass
class _Report:
    """What every section of one report reads: the results, the derived tables and where to write."""

    src: Source
    store: RunStore
    df: pd.DataFrame  # every run
    ok: pd.DataFrame  # the finished runs, with their costs
    multi: bool  # more than one (dataset, model): series names carry it
    colors: dict[str, Any]
    figdir: Path
    tabdir: Path
    charge: str
    baselines: dict[str, str]
    lb: pd.DataFrame  # leaderboard table
    pt: pd.DataFrame  # paired table
    stab: pd.DataFrame  # stability table
    hist: pd.DataFrame  # per-epoch histories

    @property
    def charge_text(self) -> str:
        return (
            "a proxy shared by several runs is charged in full to each of them (as if each method ran alone)"
            if self.charge == "full"
            else "a proxy shared by several runs is amortised: its cost is divided among the finished runs that used it"
        )


def _build(
    src: Source, out: Path, store: RunStore, title: str | None, opts: dict[str, Any], hist: pd.DataFrame | None = None
) -> Path:
    if len(budget.budgets(src.table)) > 1:
        return _build_budgets(src, out, store, title, opts)
    c = _prepare(src, out, store, opts, hist)
    header = _provenance_section(c)
    sections = [
        header,
        _leaderboard_section(c),
        _paired_section(c),
        _compute_section(c),
        *sweep_sections(src.sweeps, c.ok, c.figdir, c.tabdir),  # every sweep of the study with results
        _curves_section(c),
        _overlap_section(c),
        _usage_section(c),
        _gradient_section(c),
    ]
    _add_notes(c, header)
    return _write(c, out, title, sections)


def _per_budget(ok: pd.DataFrame, make) -> pd.DataFrame:
    """``make(runs of one budget)`` for each budget, concatenated, with an ``epochs`` first column."""
    parts = [make(g).assign(epochs=int(e)) for e, g in ok.groupby("epochs", sort=True)]
    out = pd.concat(parts, ignore_index=True)
    return out[["epochs", *[c for c in out.columns if c != "epochs"]]]


def _build_budgets(src: Source, out: Path, store: RunStore, title: str | None, opts: dict[str, Any]) -> Path:
    """A study with several epoch budgets: the leaderboard per budget, the Budget and OrderDP-by-budget
    sections, and one complete single-budget report per budget in ``epochs-<E>/`` (every per-method section
    of a single-budget report, never mixing budgets), linked from here."""
    df, ok, multi, colors, figdir, tabdir = _setup(src, out, opts)
    charge, baselines = opts["proxy_charge"], opts["baselines"]
    lb = _per_budget(ok, lambda g: leaderboard_table(g, charge, baselines))
    pt = _per_budget(ok, lambda g: paired_table(g, baselines))
    for t in (lb, pt):
        t.insert(5, "series", _series(t, multi))
    lb.to_csv(tabdir / "leaderboard.csv", index=False)
    pt.to_csv(tabdir / "paired.csv", index=False)
    df.drop(columns=["series"]).to_csv(tabdir / "runs.csv", index=False)
    hist = _histories(ok, store)
    if not hist.empty:
        hist.to_csv(tabdir / "histories.csv", index=False)
    c = _Report(src, store, df, ok, multi, colors, figdir, tabdir, charge, baselines, lb, pt, pd.DataFrame(), hist)
    header = _provenance_section(c)
    details = Section("Per-budget reports", "per-budget")
    details.add(
        "Every per-method section of a single-budget report (paired comparisons, accuracy vs compute, "
        "training curves and stability, kept-set overlap, sample usage and OrderDP's weights, gradient "
        "direction) for the runs of one budget at a time, so that no figure or table mixes budgets:"
    )
    for e in budget.budgets(ok):
        part = src.table[pd.to_numeric(src.table["epochs"], errors="coerce") == e]
        sub = Source(
            part.reset_index(drop=True),
            f"{src.name} ({e} epochs)",
            f"{src.origin}, the runs of {e} epochs",
            src.study_text,
            src.study_path,
        )
        _build(
            sub,
            out / f"epochs-{e}",
            store,
            f"{title or f'prunebench report: {src.name}'} — {e} epochs",
            opts,
            hist=hist,
        )
        details.add(
            ("link", f"epochs-{e}/index.html", f"{e} epochs: epochs-{e}/index.html"),
            ("link", f"epochs-{e}/README.md", f"{e} epochs (Markdown): epochs-{e}/README.md"),
        )
    sections = [
        header,
        _leaderboard_section(c),
        *budget_sections(ok, hist, store, colors, figdir, tabdir),
        *sweep_sections(src.sweeps, ok, figdir, tabdir),
        details,
    ]
    _add_notes(c, header)
    return _write(c, out, title, sections)


def _series(d: pd.DataFrame, multi: bool) -> list[str]:
    return [f"{m} ({ds}/{mo})" if multi else m for m, ds, mo in zip(d["method"], d["dataset"], d["model"])]


def _setup(src: Source, out: Path, opts: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, bool, dict, Path, Path]:
    """Every run, the finished runs with their costs and series names, the colours and the (emptied)
    ``figures/`` and ``tables/`` folders of ``out``."""
    df = src.table.copy()
    ok = with_costs(finished(df), opts["proxy_charge"])
    if ok.empty:
        raise ReportError(f"{src.origin}: no finished runs to report ({len(df)} rows, none with status FINISHED)")
    multi = ok.groupby(["dataset", "model"]).ngroups > 1
    for d in (df, ok):
        d["series"] = _series(d, multi)
    colors = figures.palette(sorted(ok["series"].unique(), key=lambda s: (not s.startswith("full"), s)))
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("figures", "tables"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()
    return df, ok, multi, colors, out / "figures", out / "tables"


def _prepare(
    src: Source, out: Path, store: RunStore, opts: dict[str, Any], hist: pd.DataFrame | None = None
) -> _Report:
    """The finished runs, the report's folders and the tables every section reads (written to tables/);
    ``hist``: the runs' histories when already read (a budget report's sub-reports)."""
    df, ok, multi, colors, figdir, tabdir = _setup(src, out, opts)
    charge, baselines = opts["proxy_charge"], opts["baselines"]
    lb = leaderboard_table(ok, charge, baselines)
    pt = paired_table(ok, baselines)
    pt.insert(4, "series", _series(pt, multi))
    pt.to_csv(tabdir / "paired.csv", index=False)
    lb.insert(4, "series", _series(lb, multi))
    lb.to_csv(tabdir / "leaderboard.csv", index=False)
    df.drop(columns=["series"]).to_csv(tabdir / "runs.csv", index=False)

    hist = _histories(ok, store) if hist is None else _own_histories(hist, ok)
    vol = pd.DataFrame()
    if not hist.empty and (hist["key"] == "test_acc").any():
        per_run = (
            hist[hist["key"] == "test_acc"]
            .groupby(GROUP + ["run_id"])
            .apply(lambda g: curve_volatility(g.set_index("epoch")["value"]), include_groups=False)
        )
        vol = per_run.groupby(GROUP).mean().rename("curve_volatility").reset_index()
    stab = stability_table(ok, vol)
    stab.insert(4, "series", _series(stab, multi))
    stab.to_csv(tabdir / "stability.csv", index=False)
    return _Report(src, store, df, ok, multi, colors, figdir, tabdir, charge, baselines, lb, pt, stab, hist)


def _provenance_section(c: _Report) -> Section:
    src, df, ok = c.src, c.df, c.ok
    prov = [
        ("source", src.origin),
        ("study file", src.study_path or "none (not a study)"),
        ("runs", f"{len(df)} ({len(ok)} finished, {len(df) - len(ok)} not)"),
        ("report made by prunebench at git SHA", git_sha()),
        ("results made with prunebench", _distinct(df, "prunebench_version")),
        ("results' devices", _distinct(df, "device")),
        ("results' torch", _distinct(df, "torch_version")),
    ]
    for col in ("git_sha", "code_version", "hostname", "cpu", "gpu"):
        if col in df.columns:
            prov.append((f"results' {col}", _distinct(df, col)))
    prov += [(f"report machine: {k}", v) for k, v in hardware().items()]
    prov += [("report libraries", ", ".join(f"{k} {v}" for k, v in library_versions().items()))]
    header = Section("Provenance", "provenance")
    header.add(Table(pd.DataFrame(prov, columns=["what", "value"]), kind="kv"))
    if src.study_text:
        header.add(("h3", f"Study file ({src.study_path})"), ("pre", src.study_text, "toml"))

    return header


def _leaderboard_section(c: _Report) -> Section:
    df, lb, multi, baselines, charge_text = c.df, c.lb, c.multi, c.baselines, c.charge_text
    lead = Section("Leaderboard", "leaderboard")
    lead.add(
        "Final test top-1 over seeds: mean ± sample std and the t-based 95% confidence interval of the "
        f"mean. vs full / vs baseline: the paired difference on the seeds both ran (per-seed method − "
        f"reference, mean and t-based 95% interval, in percentage points) with its verdict — better / worse "
        f"when the interval excludes 0, n.d. (not distinguishable) otherwise; (n=2) marks fewer than "
        f"{FEW_SEEDS} paired seeds. {SIGN_CONVENTION} Baselines: {baselines['static']} for static methods, "
        f"{baselines['dynamic']} for epoch- and batch-level ones. # ranks by mean top-1 within the ratio; "
        "'=' marks methods not distinguishable from rank 1 (paired by seed), and their top-1 cells (with "
        f"the leader's) are highlighted — only accuracy is ever highlighted. {COST_DEFINITION} Here {charge_text}. "
        "Compute saved (training only) leaves the scoring out; cost s = total seconds, mean ± std over seeds; "
        "wall-clock saved = 1 − cost s / full's on the same seeds."
    )
    by_budget = "epochs" in lb.columns  # a budget report: one board per budget, full data of that budget
    for key, t in lb.groupby(["dataset", "model"] + (["epochs"] if by_budget else []), sort=True):
        ds, mo = key[0], key[1]
        full_rows = t[t["method"] == "full"]
        ratios = sorted(t.loc[t["method"] != "full", "prune_ratio"].unique()) or [0.0]
        for p in ratios:
            sub = pd.concat([full_rows, t[(t["prune_ratio"] == p) & (t["method"] != "full")]]).reset_index(drop=True)
            disp, bold = leaderboard_display(sub)
            lead.add(
                (
                    "h3",
                    (f"{int(key[2])} epochs, " if by_budget else "")
                    + f"prune ratio {p:g}"
                    + (f" — {ds} / {mo}" if multi else ""),
                ),
                Table(disp, bold, csv="tables/leaderboard.csv" if p == ratios[-1] else None),
            )
    failed = df[df["status"] != "FINISHED"]
    if len(failed):
        cols = [c for c in ("method", "prune_ratio", "seed", "status", "error") if c in failed.columns]
        failed[cols].to_csv(c.tabdir / "failed_runs.csv", index=False)
        lead.add(
            ("note", f"{len(failed)} run(s) did not finish and are left out of every number:"),
            Table(failed[cols].astype(str).reset_index(drop=True), csv="tables/failed_runs.csv", kind="kv"),
        )
    return lead


def _paired_section(c: _Report) -> Section:
    pt, figdir = c.pt, c.figdir
    pair = Section("Paired comparisons", "paired")
    if pt.empty:
        pair.add(("note", "No pruning method finished: nothing to compare with full data."))
    else:
        figures.paired_forest(pt, figdir / "paired_forest.png")
    pair.add(
        *(
            []
            if pt.empty
            else [
                Figure(
                    "figures/paired_forest.png",
                    "Paired differences with 95% intervals",
                    f"Per prune ratio, each method's per-seed difference in final top-1 against full data (left) "
                    f"and against its family baseline (right): mean over the paired seeds and the t-based 95% "
                    f"interval. {SIGN_CONVENTION} Green: better, red: worse, grey: not distinguishable (the "
                    f"interval contains 0). Methods in rank order; n=2 marks fewer than {FEW_SEEDS} paired seeds. "
                    f"The numbers: tables/paired.csv (one row per method, ratio and reference, the leader included).",
                )
            ]
        )
    )
    few = pt[pt["few_seeds"] & pt["reference_kind"].isin(["full", "baseline"])]
    if len(few):
        pair.add(
            (
                "note",
                f"{few.drop_duplicates(['method', 'prune_ratio']).shape[0]} (method, ratio) cell(s) have "
                f"fewer than {FEW_SEEDS} seeds paired with their reference: their intervals are wide or "
                f"absent and their verdicts weak.",
            )
        )
    return pair


def _compute_section(c: _Report) -> Section:
    ok, lb, colors, figdir, tabdir, charge_text = c.ok, c.lb, c.colors, c.figdir, c.tabdir, c.charge_text
    comp = Section("Accuracy vs compute", "compute")
    points = figures.accuracy_vs_compute(ok, colors, figdir / "accuracy_vs_compute.png")
    points.to_csv(tabdir / "accuracy_vs_compute.csv", index=False)
    comp.add(
        Figure(
            MAIN_FIGURE,
            "Accuracy vs total compute",
            f"Final test top-1 against total compute, one panel per family of methods (static: one subset "
            f"before training; epoch-level: a new subset each epoch; batch-level: selection inside each "
            f"batch). {COST_DEFINITION} Here {charge_text}. One line per method through its prune ratios; "
            f"points are means over seeds with t-based 95% intervals (vertical: top-1; horizontal: total "
            f"compute, where it varies over seeds). Full data is in every panel: the black square at 1, "
            f"the dashed line and its 95% band. The dotted grey staircase is the Pareto front of all "
            f"(method, ratio) means of all families: no other point has both less total compute and more "
            f"accuracy. Points: tables/accuracy_vs_compute.csv.",
        )
    )
    figures.overhead(lb, figdir / "overhead.png", ok)
    comp.add(
        Figure(
            "figures/overhead.png",
            "Where the time went",
            "Mean wall-clock per method and prune ratio (leaderboard order), split into training without "
            "selection, selection/planning inside training, and scoring before training with the proxy "
            f"at its original training time (a cache hit costs what the miss cost; {charge_text}). Error "
            "bar: ± one std of the total over seeds; dots: each seed's total. Evaluation is excluded "
            "everywhere.",
        )
    )
    return comp


def _curves_section(c: _Report) -> Section:
    hist, stab, colors, figdir, tabdir = c.hist, c.stab, c.colors, c.figdir, c.tabdir
    curves = Section("Training curves and stability", "curves")
    if not hist.empty and (hist["key"] == "test_acc").any():
        figures.accuracy_curves(hist, colors, figdir / "accuracy_curves.png")
        curves.add(
            Figure(
                "figures/accuracy_curves.png",
                "Accuracy over epochs",
                "Test top-1 after each epoch, mean over seeds with a ± std band; one panel per prune "
                "ratio, full data dashed black in each.",
            )
        )
        hist.to_csv(tabdir / "histories.csv", index=False)
    else:
        curves.add(("note", "No per-epoch histories could be read from MLflow: no accuracy curves."))
    figures.stability(stab, colors, figdir / "stability.png")
    curves.add(
        Figure(
            "figures/stability.png",
            "Stability over seeds",
            "Left: the standard deviation of the final top-1 over seeds per method and prune ratio "
            "(lower is more stable). Right (when curves exist): accuracy-curve volatility, the mean "
            "absolute change of test top-1 from one epoch to the next over the second half of training.",
        )
    )
    sd = stab.copy()
    curves.add(
        Table(
            pd.DataFrame(
                {
                    "method": sd["series"],
                    "prune ratio": sd["prune_ratio"].map(lambda p: f"{p:g}"),
                    "seeds": sd["n_seeds"],
                    "std final top-1 (pp)": sd["final_acc_std"].map(lambda x: _pct(x)),
                    "range final top-1 (pp)": sd["final_acc_range"].map(lambda x: _pct(x)),
                    "curve volatility (pp)": (
                        sd["curve_volatility"] if "curve_volatility" in sd else pd.Series(np.nan, index=sd.index)
                    ).map(lambda x: _pct(x)),
                }
            ),
            csv="tables/stability.csv",
        )
    )
    return curves


def _overlap_section(c: _Report) -> Section:
    hist, ok, store, figdir, tabdir = c.hist, c.ok, c.store, c.figdir, c.tabdir
    ov = Section("Kept-set overlap (Jaccard)", "jaccard")
    jac = hist[(hist["key"] == "jaccard") & ~hist["series"].str.startswith("full")] if not hist.empty else hist
    if not jac.empty:
        jac = jac.assign(row=[_row_label(s, p) for s, p in zip(jac["series"], jac["prune_ratio"])])
        jac.groupby(["row", "epoch"], sort=False)["value"].mean().reset_index().to_csv(
            tabdir / "jaccard_consecutive.csv", index=False
        )
        figures.jaccard_heatmap(jac, "Consecutive-epoch overlap (mean over seeds)", figdir / "jaccard_consecutive.png")
        ov.add(
            Figure(
                "figures/jaccard_consecutive.png",
                "Consecutive-epoch overlap",
                "Jaccard overlap |A ∩ B| / |A ∪ B| of the kept sets of epoch e and epoch e − 1, mean over "
                "seeds; one row per method and prune ratio. 1 = the same samples every epoch (static "
                "subsets); uniform random subsets of a fraction k overlap about k / (2 − k). Full data "
                "(always 1) is left out.",
            )
        )
    else:
        ov.add(("note", "No per-epoch Jaccard histories in MLflow: no consecutive-overlap heatmap."))
    cross = _cross_seed(ok, store)
    if not cross.empty:
        cross.to_csv(tabdir / "jaccard_cross_seed.csv", index=False)
        figures.jaccard_heatmap(cross, "Cross-seed overlap at the same epoch", figdir / "jaccard_cross_seed.png")
        ov.add(
            Figure(
                "figures/jaccard_cross_seed.png",
                "Cross-seed overlap",
                "Per epoch, the Jaccard overlap of the kept sets of two runs that differ only in the seed, "
                "averaged over all pairs of seeds. High values mean the method picks the same samples "
                "whatever the seed (a property of the data); values near the random level mean the "
                "choice is mostly the seed's.",
            )
        )
    else:
        ov.add(
            (
                "note",
                "No cross-seed overlap: it needs kept masks (kept_masks_packed.npy) of at least two seeds of a method.",
            )
        )
    return ov


def _usage_section(c: _Report) -> Section:
    ok, store, colors, figdir, tabdir = c.ok, c.store, c.colors, c.figdir, c.tabdir
    us = Section("Sample usage and OrderDP's weights", "usage")
    usage = _usage(ok, store)
    if usage:
        figures.usage_histograms(usage, colors, figdir / "usage_histograms.png")
        pd.DataFrame(
            [
                {"method": it["series"], "prune_ratio": it["prune_ratio"], "usage": k, "fraction": float(f)}
                for it in usage
                for k, f in enumerate(it["freq"])
            ]
        ).to_csv(tabdir / "usage_histograms.csv", index=False)
        us.add(
            Figure(
                "figures/usage_histograms.png",
                "Per-sample usage (dynamic methods)",
                "For each dynamic method and prune ratio: the fraction of training samples that were "
                "backpropagated in k of the epochs (usage counts pooled over seeds). Dotted: the "
                "Binomial(E, 1 − p) distribution that a fresh uniform subset each epoch would give. Mass "
                "at 0 = samples never trained on; a wide spread = the method concentrates on some samples.",
            )
        )
    else:
        us.add(("note", "No usage counts (usage_counts.npy) of dynamic methods in MLflow."))
    _gamma_section(c, us)
    return us


def _gamma_section(c: _Report, us: Section) -> None:
    ok, store, figdir, tabdir = c.ok, c.store, c.figdir, c.tabdir
    gam = _gamma_items(ok, store)
    if gam:
        figures.orderdp_gamma(gam, figdir / "orderdp_gamma.png")
        rows = []
        for it in gam:
            if it["centres"] is not None:
                rows += [
                    {
                        "method": it["series"],
                        "prune_ratio": it["prune_ratio"],
                        "N": it["n"],
                        "s": it["s"],
                        "q": it["q"],
                        "rank_bin_centre": x,
                        "gamma": g,
                        "expected_with_ties": e,
                        "empirical": m,
                    }
                    for x, g, e, m in zip(
                        it["centres"], it["gamma_binned"], it["expected_binned"], it["empirical_binned"]
                    )
                ]
        if rows:
            pd.DataFrame(rows).to_csv(tabdir / "orderdp_keep_by_rank.csv", index=False)
        snaps = ", ".join(f"{it['series']} p={it['prune_ratio']:g}: {it['n_epochs']}" for it in gam)
        us.add(
            Figure(
                "figures/orderdp_gamma.png",
                "OrderDP: surrogate weights vs empirical keep frequency",
                "Black: gamma_j, the probability that OrderDP(N, s, q) keeps the sample whose stored loss "
                "has rank j (1 = largest) — the weights of the surrogate loss whose gradient the kept-set "
                "mean estimates without bias: flat at s/N for the top q ranks, falling to 0 after rank "
                "N − s + q (grey verticals). Red: how often the runs actually kept each rank, ranking "
                "samples by the pruner's stored scores at plan time (logged for up to 10 epochs per run) "
                f"and averaging over {GAMMA_BINS} rank bins (snapshots used — {snaps}). Dotted grey: gamma "
                "averaged over tied scores (never-trained samples share the initial score), the exact "
                "expectation of the red points.",
            )
        )
        if any(it["centres"] is None for it in gam):
            us.add(
                (
                    "note",
                    "Some OrderDP runs logged no plan-time scores (plan_scores.npy; older runs): their "
                    "panel shows gamma only.",
                )
            )


def _gradient_section(c: _Report) -> Section:
    hist, colors, figdir = c.hist, c.colors, c.figdir
    gr = Section("Gradient direction", "gradient")
    if not hist.empty and hist["key"].isin(["grad_cosine", "grad_norm_kept"]).any():
        figures.gradient_probe(hist[hist["key"].str.startswith("grad_")], colors, figdir / "gradient_probe.png")
        gr.add(
            Figure(
                "figures/gradient_probe.png",
                "Kept-set gradient vs full-data gradient",
                "Cosine between the mean gradient of the kept samples and the full-data gradient at the "
                "probe's checkpoints (1 = same direction), and the two gradients' norms, mean ± std over "
                "seeds.",
            )
        )
    else:
        gr.add(
            (
                "note",
                "The gradient probe did not run for these runs (no grad_cosine / grad_norm_kept "
                "metrics in MLflow): no gradient figure.",
            )
        )
    return gr


def _add_notes(c: _Report, header: Section) -> None:
    notes, store = list(c.src.notes), c.store
    notes += store.notes
    if store.prior is not None and store.prior.used:
        prior_lines = store.prior.summary()
        notes += [
            "Parts of this report come from an earlier report's tables, not from MLflow: "
            + "; ".join(prior_lines)
            + ". The figures built from them (accuracy curves, stability "
            "volatility, overlap heatmaps, usage histograms, OrderDP's keep-by-rank) show those numbers."
        ]
    if notes:
        header.add(*[("note", n) for n in dict.fromkeys(notes)])


def _write(c: _Report, out: Path, title: str | None, sections: list[Section]) -> Path:
    src, ok = c.src, c.ok
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    doc = Document(
        title or f"prunebench report: {src.name}",
        f"{ok['method'].nunique() - int((ok['method'] == 'full').any())} methods and full data, "
        f"{ok.loc[ok['method'] != 'full', 'prune_ratio'].nunique()} prune ratios, "
        f"{ok['seed'].nunique()} seeds on {', '.join(sorted(set(ok['dataset'].astype(str))))} / "
        f"{', '.join(sorted(set(ok['model'].astype(str))))}; generated {when} by prunebench report.",
        sections,
    )
    (out / "index.html").write_text(to_html(doc))
    (out / "README.md").write_text(to_markdown(doc))
    return out / "index.html"
