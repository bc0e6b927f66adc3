"""The cost model and the paired statistics: one definition, used by the leaderboard (CLI) and the report.

Cost model
----------
A method's cost is everything it spent, in two units, both over full data's training on the same recipe:

* compute: ``total_compute = train_compute + scoring_compute``. ``train_compute`` is the row's
  ``relative_compute`` (forward-only sample passes + 3 x backpropagated sample-visits of training, over
  ``3 E N``: a training pass counts three forwards, so extra forward passes of dynamic methods are in it);
  ``scoring_compute`` is ``scoring_relative_compute``, the proxy run(s) of a static method on the same
  scale. A cached proxy carries the cost of the run that produced it (``ProxyRunner``), so a cache hit
  never changes the compute.
* seconds: ``total_cost_s = train_time_s + scoring_cost_s``, with ``scoring_cost_s`` the scoring phase
  with the proxy's ORIGINAL training time in it: ``scoring_time_s - scoring_proxy_wall_s +
  scoring_proxy_time_s`` (the wall time this run spent in the proxy runner, training it or reading its
  cache, replaced by the time of the run that trained it). Tables written before ``scoring_proxy_wall_s``
  existed: a cache hit adds ``scoring_proxy_time_s`` to the measured scoring time (the cache read stays in,
  well under a second), a miss keeps the measured time.

``proxy_charge`` (a study's ``[study] proxy_charge``): ``"full"`` (default) charges a proxy shared by
several runs to each of them in full, as if each method ran alone; ``"amortised"`` divides its compute
and time by the number of finished runs in the table that used it (same dataset, model, run seed and
proxy recipe: ``pruner.proxy_model`` (default: the run's model), ``pruner.proxy_epochs``,
``pruner.proxy_seeds`` (default 1); runs averaging several proxy seeds are grouped apart, so they may be
overcharged, never undercharged).

Paired statistics
-----------------
Methods are compared on the seeds both ran (a seed fixes the data order, augmentation and initial
weights of every method alike). For a method and a reference at one prune ratio, ``d_s = acc_method(s) -
acc_reference(s)`` over the shared seeds ``s`` (method - reference: positive = the method is better);
mean, sample sd, the t-based 95% interval ``mean +/- t(0.975, n-1) sd / sqrt(n)`` and a verdict:
``better`` (interval above 0), ``worse`` (below 0) or ``not distinguishable`` (it contains 0, or one
pair only); ``no shared seeds`` when the reference did not run on any of the method's seeds (e.g. a
baseline not run at that ratio). References: ``full`` (its ratio-0 runs) and a baseline per family (default
``random-static`` for static methods, ``random-dynamic`` for epoch- and batch-level ones).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

PROXY_CHARGES = ("full", "amortised")
DEFAULT_BASELINES = {"static": "random-static", "dynamic": "random-dynamic"}
PROXY_KEYS = ("pruner.proxy_model", "pruner.proxy_epochs", "pruner.proxy_seeds")
REFERENCE = "full"
FEW_SEEDS = 3  # fewer paired seeds than this: the verdict is flagged as resting on few seeds
SETTING = ["dataset", "model"]

COST_DEFINITION = (
    "Cost = training + scoring: total compute = sample-visit cost of training (forward-only passes + 3 x "
    "backpropagated sample-visits, over full data's) + the proxy run(s) a static method needed, on the same "
    "scale; total seconds = training time + scoring time with the proxy's original training time (a cached "
    "proxy carries its cost). Compute saved = 1 - total compute."
)
SIGN_CONVENTION = "Differences are method - reference (percentage points): positive = the method is better."


def family(granularity: Any) -> str:
    """static / epoch-level / batch-level, from a pruner's ``granularity`` (static, epoch, batch)."""
    g = str(granularity)
    return {"static": "static", "epoch": "epoch-level", "batch": "batch-level"}.get(g, g)


def _num(df: pd.DataFrame, col: str, default: float = 0.0) -> pd.Series:
    if col not in df.columns:
        return pd.Series(default, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _flag(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df.columns:
        return pd.Series(False, index=df.index)
    return df[col].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def with_costs(df: pd.DataFrame, proxy_charge: str = "full") -> pd.DataFrame:
    """``df`` plus the cost columns of the module docstring: ``train_compute``, ``scoring_compute``,
    ``total_compute``, ``scoring_cost_s``, ``total_cost_s``, ``proxy_sharing`` (runs sharing the proxy;
    1 when charged in full or without a proxy) and ``family``."""
    if proxy_charge not in PROXY_CHARGES:
        raise ValueError(f"proxy_charge {proxy_charge!r} is not valid; valid: {', '.join(PROXY_CHARGES)}")
    out = df.copy()
    train_c = _num(out, "relative_compute", np.nan)
    proxy_c = _num(out, "scoring_relative_compute").fillna(0.0)
    measured = _num(out, "scoring_time_s").fillna(0.0)
    proxy_t = _num(out, "scoring_proxy_time_s").fillna(0.0)
    # the pruner's own scoring/selection work: the measured scoring time less the time in the proxy runner
    own = (measured - np.where(_flag(out, "scoring_cache_hit"), 0.0, proxy_t)).clip(lower=0.0)
    if "scoring_proxy_wall_s" in out.columns:
        wall = _num(out, "scoring_proxy_wall_s")
        own = own.where(wall.isna(), (measured - wall).clip(lower=0.0))
    share = pd.Series(1.0, index=out.index)
    if proxy_charge == "amortised" and (proxy_c > 0).any():
        ok = out.get("status", pd.Series("FINISHED", index=out.index)).astype(str).eq("FINISHED") & (proxy_c > 0)
        ident = out.reindex(columns=SETTING + ["seed", *PROXY_KEYS, "num_samples", "epochs"])
        # defaults of the static pruners' options: the proxy is the run's model, one proxy seed
        ident["pruner.proxy_model"] = ident["pruner.proxy_model"].fillna(ident["model"])
        ident["pruner.proxy_seeds"] = pd.to_numeric(ident["pruner.proxy_seeds"], errors="coerce").fillna(1)
        key = pd.Series(["|".join(map(str, t)) for t in ident.itertuples(index=False)], index=out.index)
        counts = key[ok].value_counts()
        share = key.map(counts).where(ok, 1.0).fillna(1.0).astype(float)
    out["train_compute"] = train_c
    out["scoring_compute"] = proxy_c / share
    out["total_compute"] = train_c + out["scoring_compute"]
    out["scoring_cost_s"] = own + proxy_t / share
    out["total_cost_s"] = _num(out, "train_time_s", np.nan) + out["scoring_cost_s"]
    out["proxy_sharing"] = share
    out["family"] = [family(g) for g in out["granularity"]] if "granularity" in out.columns else ""
    return out


# ---------------------------------------------------------------------------------------------------
# paired statistics
# ---------------------------------------------------------------------------------------------------


def t_interval(x: np.ndarray, level: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sample sd, and the t-based ``level`` interval of the mean (NaN sd/interval for n < 2)."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return (np.nan,) * 4
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan, np.nan
    sd = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m, sd, m - half, m + half


def verdict(lo: float, hi: float) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "not distinguishable"
    return "better" if lo > 0 else ("worse" if hi < 0 else "not distinguishable")


def _accs(ok: pd.DataFrame, method: str, p: float | None) -> pd.Series:
    g = ok[ok["method"] == method]
    if p is not None:
        g = g[np.isclose(g["prune_ratio"].astype(float), p)]
    return g.groupby("seed")["final_acc"].mean()


def paired(a: pd.Series, b: pd.Series, level: float = 0.95) -> dict[str, Any]:
    """Paired comparison of two per-seed series (index: seed): ``a - b`` on the shared seeds."""
    seeds = sorted(set(a.dropna().index) & set(b.dropna().index))
    d = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float) if seeds else np.array([])
    m, sd, lo, hi = t_interval(d, level)
    return {
        "n_pairs": len(seeds),
        "paired_seeds": " ".join(str(int(s)) for s in seeds),
        "diff_mean": m,
        "diff_sd": sd,
        "diff_ci_low": lo,
        "diff_ci_high": hi,
        "verdict": verdict(lo, hi) if seeds else "no shared seeds",
        "few_seeds": len(seeds) < FEW_SEEDS,
    }


def baseline_for(granularity: Any, baselines: dict[str, str] | None = None) -> str:
    b = {**DEFAULT_BASELINES, **(baselines or {})}
    return b["static"] if str(granularity) == "static" else b["dynamic"]


PAIRED_COLUMNS = [
    "dataset",
    "model",
    "prune_ratio",
    "method",
    "family",
    "rank",
    "acc_mean",
    "n_seeds",
    "reference",
    "reference_kind",
    "n_pairs",
    "paired_seeds",
    "diff_mean",
    "diff_sd",
    "diff_ci_low",
    "diff_ci_high",
    "verdict",
    "few_seeds",
    "tied_with_leader",
]


def paired_table(df: pd.DataFrame, baselines: dict[str, str] | None = None, level: float = 0.95) -> pd.DataFrame:
    """Per (dataset, model, prune ratio, method): the paired difference against ``full`` and against
    the family baseline, the rank within the ratio and whether the method is distinguishable from the
    ratio's leader. One row per (…, method, reference); see the module docstring.

    Columns: dataset, model, prune_ratio, method, family, rank (1 = highest mean final top-1 within the
    ratio; equal means: lower ``total_compute`` first, when the table has it), acc_mean, n_seeds, reference, reference_kind (``full``/``baseline``/``leader``), n_pairs,
    paired_seeds, diff_mean, diff_sd, diff_ci_low, diff_ci_high, verdict, few_seeds, and
    ``tied_with_leader`` (True for the leader and for methods whose paired difference against it is not
    distinguishable from 0).
    """
    ok = df[df.get("status", "FINISHED") == "FINISHED"] if "status" in df.columns else df
    ok = ok.dropna(subset=["final_acc"])
    rows = []
    for setting, s in ok.groupby(SETTING, sort=True) if set(SETTING) <= set(ok.columns) else [(("?", "?"), ok)]:
        full = s[s["method"] == REFERENCE].groupby("seed")["final_acc"].mean()
        ratios = sorted(float(p) for p in s.loc[s["method"] != REFERENCE, "prune_ratio"].unique())
        for p in ratios:
            rows += _paired_rows_at(s, setting, p, full, baselines, level)
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def _paired_rows_at(
    s: pd.DataFrame, setting: tuple, p: float, full: pd.Series, baselines: dict[str, str] | None, level: float
) -> list[dict]:
    """The rows of :func:`paired_table` for the methods of one setting ``s`` at prune ratio ``p``; ``full`` is
    the full-data final top-1 per seed."""
    rows: list[dict] = []
    at = s[np.isclose(s["prune_ratio"].astype(float), p) & (s["method"] != REFERENCE)]
    agg = at.groupby("method").agg(acc=("final_acc", "mean"))
    agg["cost"] = at.groupby("method")["total_compute"].mean() if "total_compute" in at.columns else 0.0
    agg = agg.reset_index().sort_values(["acc", "cost", "method"], ascending=[False, True, True])
    means = agg.set_index("method")["acc"]  # ranked: higher mean top-1, then lower total compute
    ranks = pd.Series(np.arange(1, len(means) + 1), index=means.index)
    leader = means.index[0]
    for method in means.index:
        g = at[at["method"] == method]
        gran = g["granularity"].iloc[0] if "granularity" in g.columns else ""
        mine = g.groupby("seed")["final_acc"].mean()
        base = {
            "dataset": setting[0],
            "model": setting[1],
            "prune_ratio": p,
            "method": method,
            "family": family(gran),
            "rank": int(ranks[method]),
            "acc_mean": float(means[method]),
            "n_seeds": int(mine.size),
        }
        refs = [(REFERENCE, "full", full)]
        b = baseline_for(gran, baselines)
        if b != method:
            refs.append((b, "baseline", _accs(s, b, p)))
        if method != leader:
            refs.append((leader, "leader", _accs(s, leader, p)))
        tied = True
        for name, kind, ref in refs:
            r = paired(mine, ref, level)
            if kind == "leader":
                tied = r["verdict"] == "not distinguishable"
            rows.append({**base, "reference": name, "reference_kind": kind, **r})
        for r in rows[-len(refs) :]:
            r["tied_with_leader"] = tied
    return rows


def paired_wide(pt: pd.DataFrame) -> pd.DataFrame:
    """``paired_table`` as one row per (dataset, model, prune ratio, method), with ``vs_full_*``,
    ``vs_baseline_*`` (and ``baseline``) columns, ranked within each ratio."""
    key = SETTING + ["prune_ratio", "method"]
    first = pt.drop_duplicates(key)[key + ["family", "rank", "acc_mean", "n_seeds", "tied_with_leader"]]
    out = first.set_index(key)
    for kind, pre in (("full", "vs_full"), ("baseline", "vs_baseline")):
        part = pt[pt["reference_kind"] == kind].set_index(key)
        for c in ("n_pairs", "diff_mean", "diff_sd", "diff_ci_low", "diff_ci_high", "verdict", "few_seeds"):
            out[f"{pre}_{c.removeprefix('diff_')}"] = part[c].reindex(out.index) if len(part) else np.nan
        if kind == "baseline":
            out["baseline"] = part["reference"].reindex(out.index) if len(part) else np.nan
    return out.reset_index().sort_values(SETTING + ["prune_ratio", "rank", "method"]).reset_index(drop=True)


def format_diff(mean: float, lo: float, hi: float, n: int | float, verdict_: str) -> str:
    """``+0.61 [+0.30, +0.92] better`` in percentage points; ``(n=2)`` when fewer than 3 seeds are paired."""
    if pd.isna(mean):
        return "–"
    ci = "" if pd.isna(lo) else f" [{100 * lo:+.2f}, {100 * hi:+.2f}]"
    short = {"better": "better", "worse": "worse", "not distinguishable": "n.d."}.get(verdict_, verdict_)
    few = f" (n={int(n)})" if not pd.isna(n) and int(n) < FEW_SEEDS else ""
    return f"{100 * mean:+.2f}{ci} {short}{few}"


def pareto_mask(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True for points no other point beats (lower or equal cost and higher or equal accuracy, one strictly)."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    out = np.ones(cost.size, dtype=bool)
    for i in range(cost.size):
        dominated = (cost <= cost[i]) & (acc >= acc[i]) & ((cost < cost[i]) | (acc > acc[i]))
        out[i] = not dominated.any()
    return out


def study_options(study_text: str | None) -> dict[str, Any]:
    """``proxy_charge`` and ``baselines`` from a study file's ``[study]`` table (defaults when absent)."""
    import tomllib

    out: dict[str, Any] = {"proxy_charge": "full", "baselines": dict(DEFAULT_BASELINES)}
    if not study_text:
        return out
    try:
        st = tomllib.loads(study_text).get("study", {})
    except tomllib.TOMLDecodeError:
        return out
    if isinstance(st, dict):
        if st.get("proxy_charge") in PROXY_CHARGES:
            out["proxy_charge"] = st["proxy_charge"]
        if isinstance(st.get("baselines"), dict):
            out["baselines"].update({k: str(v) for k, v in st["baselines"].items() if k in DEFAULT_BASELINES})
    return out
