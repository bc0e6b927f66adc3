"""Reports: rendered from a small real study (tests/report_fixture.py); numbers checked against the
results table recomputed here with pandas; figures are valid PNGs; the HTML links only into its folder;
a headless Chromium loads it without console errors and renders every image."""

from __future__ import annotations

import html.parser
import math
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixture import EXPERIMENT, STUDY, STUDY_TOML, make_study
from scipy import stats

from prunebench.cli import main
from prunebench.reports import build_report, leaderboard_table, mean_std_ci, pareto_mask
from prunebench.reports.analysis import bin_ranks, cross_seed_jaccard, keep_by_rank
from prunebench.reports.inputs import method_from_label

EXPECTED_FIGURES = {
    "accuracy_vs_compute.png",
    "sweep-fx.png",
    "overhead.png",
    "accuracy_curves.png",
    "stability.png",
    "jaccard_consecutive.png",
    "jaccard_cross_seed.png",
    "usage_histograms.png",
    "orderdp_gamma.png",
    "paired_forest.png",
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-study")
    folder, uri = make_study(root)
    out = root / "reports" / STUDY
    assert main(["report", str(folder), "-o", str(out)]) == 0  # through the CLI, as a user would
    return folder, uri, out


@pytest.fixture(scope="module")
def results(study):
    return pd.read_parquet(study[0] / "results.parquet")


# ---------------------------------------------------------------------------------------------------
# numbers
# ---------------------------------------------------------------------------------------------------


def test_leaderboard_csv_equals_results_recomputed(study, results):
    lb = pd.read_csv(study[2] / "tables" / "leaderboard.csv")
    ok = results[results["status"] == "FINISHED"]
    assert len(lb) == ok.groupby(["method", "prune_ratio"]).ngroups == 5
    full = ok[ok["method"] == "full"]
    for (method, p), g in ok.groupby(["method", "prune_ratio"]):
        row = lb[(lb["method"] == method) & np.isclose(lb["prune_ratio"], p)].iloc[0]
        acc = g["final_acc"].to_numpy()
        sd = acc.std(ddof=1)
        half = stats.t.ppf(0.975, len(acc) - 1) * sd / math.sqrt(len(acc))
        assert row["n_seeds"] == len(acc) == 2
        assert row["acc_mean"] == pytest.approx(acc.mean(), abs=1e-12)
        assert row["acc_std"] == pytest.approx(sd, abs=1e-12)
        assert row["acc_ci_low"] == pytest.approx(acc.mean() - half, abs=1e-12)
        assert row["acc_ci_high"] == pytest.approx(acc.mean() + half, abs=1e-12)
        ref = full[full["seed"].isin(g["seed"])]["final_acc"].mean()
        if method != "full":  # method - full, paired by seed (positive = better)
            assert row["vs_full_mean"] == pytest.approx(acc.mean() - ref, abs=1e-12)
        scoring = g["scoring_relative_compute"].fillna(0) if "scoring_relative_compute" in g else 0.0
        assert row["compute_saved"] == pytest.approx(1 - (g["relative_compute"] + scoring).mean(), abs=1e-12)
        assert row["train_compute_saved"] == pytest.approx(1 - g["relative_compute"].mean(), abs=1e-12)
        assert row["realized_prune_ratio"] == pytest.approx(g["realized_prune_ratio"].mean(), abs=1e-12)
        for col in ("train_time_s", "selection_time_s", "scoring_time_s"):
            assert row[col] == pytest.approx(g[col].mean(), abs=1e-12)
    # the failed run is listed, never averaged: full's mean uses its two finished seeds only
    failed = pd.read_csv(study[2] / "tables" / "failed_runs.csv")
    assert list(failed["status"]) == ["FAILED"] and "training loss became" in failed["error"].iloc[0]
    assert lb.loc[lb["method"] == "full", "n_seeds"].iloc[0] == 2


def test_html_and_readme_show_the_table_numbers(study, results):
    page = (study[2] / "index.html").read_text()
    readme = (study[2] / "README.md").read_text()
    ok = results[results["status"] == "FINISHED"]
    for (method, p), g in ok.groupby(["method", "prune_ratio"]):
        acc = g["final_acc"]
        cell = f"{100 * acc.mean():.2f} ± {100 * acc.std(ddof=1):.2f}"
        assert cell in page and cell in readme, (method, p, cell)
    assert "<h3>prune ratio 0.3</h3>" in page and "### prune ratio 0.5" in readme
    # the best top-1 at p=0.5 is marked (the leader; with those not distinguishable from it), in both renderings
    at = ok[np.isclose(ok["prune_ratio"], 0.5)].groupby("method")["final_acc"].agg(["mean", "std"])
    best = at["mean"].idxmax()
    cell = f"{100 * at.loc[best, 'mean']:.2f} ± {100 * at.loc[best, 'std']:.2f}"
    assert f'<td class="best">{cell}</td>' in page and f"**{cell}**" in readme
    # header: study file verbatim, code version, hardware, library versions
    assert STUDY_TOML.splitlines()[3] in readme and "git SHA" in page and "report machine: CPU" in page
    for lib in ("torch", "torchvision", "mlflow", "optuna", "pandas", "seaborn", "numpy", "python"):
        assert f"{lib} " in page
    # no gradient probe in these runs: a note instead of a figure
    assert "gradient probe did not run" in page and not (study[2] / "figures" / "gradient_probe.png").exists()


def test_cross_seed_and_consecutive_jaccard_match_artifacts(study, results):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(study[1])
    g = results[(results["method"] == "orderdp-c0.8") & np.isclose(results["prune_ratio"], 0.5)].sort_values("seed")
    masks = []
    for rid, n in zip(g["run_id"], g["num_samples"]):
        packed = np.load(client.download_artifacts(rid, "kept_masks_packed.npy", tempfile.mkdtemp()))
        masks.append([set(np.flatnonzero(np.unpackbits(row, count=int(n)))) for row in packed])
    want = [len(a & b) / len(a | b) for a, b in zip(*masks)]
    cross = pd.read_csv(study[2] / "tables" / "jaccard_cross_seed.csv")
    got = cross[cross["row"] == "orderdp-c0.8 @ p=0.5"].sort_values("epoch")["value"].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-12)
    cons = pd.read_csv(study[2] / "tables" / "jaccard_consecutive.csv")
    got = cons[cons["row"] == "orderdp-c0.8 @ p=0.5"].sort_values("epoch")["value"].to_numpy()
    want = np.mean([[len(m[e] & m[e - 1]) / len(m[e] | m[e - 1]) for e in range(1, len(m))] for m in masks], axis=0)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_orderdp_gamma_table(study, results):
    from prunebench.pruners.orderdp import gamma

    t = pd.read_csv(study[2] / "tables" / "orderdp_keep_by_rank.csv")
    for p, g in t.groupby("prune_ratio"):
        r = results[(results["pruner"] == "orderdp") & np.isclose(results["prune_ratio"], p)].iloc[0]
        n, c = int(r["num_samples"]), float(r["pruner.candidate_ratio"])
        q = round((1 - p) * n)
        s = min(n, max(q, round(c * n)))
        assert (g["N"].iloc[0], g["s"].iloc[0], g["q"].iloc[0]) == (n, s, q)
        _, want = bin_ranks(gamma(n, s, q), 60)
        np.testing.assert_allclose(g["gamma"].to_numpy(), want, atol=1e-12)
        # every snapshot kept exactly q samples: the empirical frequency averages to q/N over ranks
        width = np.diff(np.unique(np.linspace(0, n, 61).round().astype(int)))
        assert np.sum(g["empirical"].to_numpy() * width) / n == pytest.approx(q / n, abs=1e-9)
        # ranks beyond N - s + q are never kept; the top ranks are kept with probability s/N (binned noise)
        tail = g["rank_bin_centre"] > n - s + q + 10
        assert (g.loc[tail, "empirical"] == 0).all()
        assert g.loc[g["rank_bin_centre"] < q - 10, "empirical"].mean() == pytest.approx(s / n, abs=0.08)


def test_every_plotted_point_has_an_interval(study, results):
    ok = results[results["status"] == "FINISHED"]
    pts = pd.read_csv(study[2] / "tables" / "accuracy_vs_compute.csv")
    assert len(pts) == ok.groupby(["method", "prune_ratio"]).ngroups == 5
    assert pts[["y_low", "y_high", "x_low", "x_high"]].notna().all().all()
    assert ((pts["y_low"] <= pts["y"]) & (pts["y"] <= pts["y_high"])).all()
    for _, r in pts.iterrows():  # the vertical interval is the t interval of the seeds' final top-1
        acc = ok[(ok["method"] == r["series"]) & np.isclose(ok["prune_ratio"], r["prune_ratio"])]["final_acc"]
        half = stats.t.ppf(0.975, len(acc) - 1) * acc.std(ddof=1) / math.sqrt(len(acc))
        assert (r["y_low"], r["y_high"]) == pytest.approx((acc.mean() - half, acc.mean() + half), abs=1e-12)
    # the forest plot: every difference it draws has its interval (2 seeds paired everywhere)
    pt = pd.read_csv(study[2] / "tables" / "paired.csv")
    drawn = pt[pt["reference_kind"].isin(["full", "baseline"])]
    assert len(drawn) == 4 + 2  # 4 methods x full; orderdp-c0.8 x random-dynamic at 0.3 and 0.5
    none = drawn["n_pairs"] == 0  # random-dynamic did not run at 0.3: nothing to draw there
    assert none.sum() == 1 and drawn.loc[none, "verdict"].iloc[0] == "no shared seeds"
    drawn = drawn[~none]
    assert drawn[["diff_ci_low", "diff_ci_high"]].notna().all().all() and (drawn["n_pairs"] == 2).all()
    assert drawn["few_seeds"].all() and "(n=2)" in (study[2] / "README.md").read_text()


def test_prior_report_stands_in_for_a_lost_mlflow_store(study, results, tmp_path):
    # orderdp-c0.8's runs are in a store that is gone; the others are still in theirs
    lost = results.copy()
    lost.loc[lost["method"] == "orderdp-c0.8", "tracking_uri"] = f"sqlite:///{tmp_path / 'gone.db'}"
    out = build_report(lost, tmp_path / "again", prior_report=study[2]).parent
    for name in (
        "histories.csv",
        "jaccard_cross_seed.csv",
        "jaccard_consecutive.csv",
        "usage_histograms.csv",
        "orderdp_keep_by_rank.csv",
        "stability.csv",
    ):
        a, b = pd.read_csv(study[2] / "tables" / name), pd.read_csv(out / "tables" / name)
        pd.testing.assert_frame_equal(a, b, check_dtype=False, obj=name)
    readme = (out / "README.md").read_text()
    assert "come from an earlier report's tables" in readme and "per-epoch histories (runs): 4 from" in readme
    assert "OrderDP keep-by-rank (method, ratio cells): 2 from" in readme
    assert {p.name for p in (out / "figures").iterdir()} == EXPECTED_FIGURES - {
        "sweep-fx.png"
    }  # a DataFrame has no sweeps
    # without it, the lost runs' per-epoch parts are simply absent
    bare = build_report(lost, tmp_path / "bare").parent
    hist = pd.read_csv(bare / "tables" / "histories.csv")
    assert len(hist) and "orderdp-c0.8" not in set(hist["method"])


# ---------------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------------


def _png_ok(path: Path) -> tuple[int, int]:
    """Parse the PNG's chunks (signature, IHDR, CRCs, IDAT decompresses, IEND); return (width, height)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, (path, kind)
        chunks.append(kind)
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", path
    w, h = struct.unpack(">II", data[16:24])
    assert len(zlib.decompress(idat)) > w * h  # at least one byte per pixel: the image data is all there
    return w, h


def test_every_figure_is_a_valid_png(study):
    figs = {p.name for p in (study[2] / "figures").iterdir()}
    assert figs == EXPECTED_FIGURES
    for f in figs:
        w, h = _png_ok(study[2] / "figures" / f)
        assert w > 200 and h > 150


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [v for k, v in attrs if k in ("src", "href") and v is not None]


def test_html_references_only_files_inside_the_folder(study):
    out = study[2].resolve()
    parser = _Links()
    parser.feed((out / "index.html").read_text())
    files = [u for u in parser.links if not u.startswith("#")]
    assert {f"figures/{f}" for f in EXPECTED_FIGURES} <= set(files)
    for u in files:
        assert "://" not in u and not u.startswith("/"), u
        target = (out / u).resolve()
        assert target.is_relative_to(out) and target.is_file(), u
    readme = (out / "README.md").read_text()
    assert all(f"](figures/{f})" in readme for f in EXPECTED_FIGURES)
    assert "<script" not in (out / "index.html").read_text()


def _chromium(*args: str, timeout: int = 90) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (Debian: apt-get install chromium; see .ci/setup.d/20-chromium.sh)"
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                exe,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--enable-logging=stderr",
                "--v=0",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_loads_the_report(study, tmp_path):
    import matplotlib.image

    index = study[2] / "index.html"
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1280,2000", index.resolve().as_uri())
    assert r.returncode == 0 and shot.is_file(), r.stderr[-2000:]
    assert _console(r.stderr) == []
    img = matplotlib.image.imread(shot)[..., :3]
    nonwhite = (img.min(axis=2) < 0.9).mean()
    assert img.std() > 0.05 and nonwhite > 0.03, (img.std(), nonwhite)
    # every image decodes in the browser: a copy of the page counts images that failed to load
    copy = tmp_path / "copy"
    shutil.copytree(study[2], copy)
    probe = (
        "<script>window.addEventListener('load',()=>{const im=[...document.images];"
        "document.title='images:'+im.length+' broken:'+im.filter(i=>!i.complete||i.naturalWidth===0).length;});"
        "</script></body>"
    )
    (copy / "probe.html").write_text(index.read_text().replace("</body>", probe))
    r = _chromium("--dump-dom", "--virtual-time-budget=10000", (copy / "probe.html").as_uri())
    assert f"<title>images:{len(EXPECTED_FIGURES)} broken:0</title>" in r.stdout, r.stdout[:300]
    # the checks can fail: a page with a console error and a missing image is caught
    bad = copy / "bad.html"
    bad.write_text(
        index.read_text()
        .replace("figures/overhead.png", "figures/missing.png")
        .replace("</body>", "<script>console.error('boom')</script>" + probe)
    )
    r = _chromium("--dump-dom", "--virtual-time-budget=10000", bad.as_uri())
    assert any("boom" in line for line in _console(r.stderr))
    assert "broken:1</title>" in r.stdout


# ---------------------------------------------------------------------------------------------------
# inputs, CLI
# ---------------------------------------------------------------------------------------------------


def test_study_toml_and_experiment_inputs_give_the_same_leaderboard(study, results, tmp_path, monkeypatch):
    from prunebench.reports import resolve_source

    folder, uri, _ = study
    toml = tmp_path / "fixture.toml"
    toml.write_text(STUDY_TOML)
    monkeypatch.chdir(folder.parent.parent)  # results/<name>/ is found from the study's name
    src = resolve_source(str(toml))
    assert src.study_text == STUDY_TOML and len(src.table) == len(results)
    exp = resolve_source(EXPERIMENT, tracking_uri=uri)
    a = leaderboard_table(src.table).set_index(["method", "prune_ratio"]).sort_index()
    b = leaderboard_table(exp.table).set_index(["method", "prune_ratio"]).sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a["acc_mean"], b["acc_mean"], atol=1e-12)
    np.testing.assert_allclose(a["compute_saved"], b["compute_saved"], atol=1e-12)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["report", "does/not/exist"], "does not exist"),
        (["report", "no-such-experiment", "--tracking-uri", "TRACKING"], "unknown MLflow experiment"),
        (["report", "STUDYTOML"], "results folder"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(study, tmp_path, capsys, argv, words):
    toml = tmp_path / "other.toml"
    toml.write_text('name = "never-run"\n')
    argv = [a.replace("TRACKING", study[1]).replace("STUDYTOML", str(toml)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("prunebench: error:") and words in err, err


def test_empty_and_malformed_tables_are_errors(tmp_path):
    from prunebench.reports import ReportError

    with pytest.raises(ReportError, match="lacks column"):
        build_report(pd.DataFrame({"pruner": ["full"]}), tmp_path / "r")
    (tmp_path / "res").mkdir()
    with pytest.raises(ReportError, match="no results table"):
        build_report(tmp_path / "res", tmp_path / "r")


# ---------------------------------------------------------------------------------------------------
# pure functions
# ---------------------------------------------------------------------------------------------------


def test_mean_std_ci_by_hand():
    m, sd, lo, hi = mean_std_ci([0.5, 0.7, 0.6])
    assert m == pytest.approx(0.6) and sd == pytest.approx(0.1)
    assert hi - m == pytest.approx(4.302652729911275 * 0.1 / math.sqrt(3))  # t_{0.975, 2}
    assert all(math.isnan(v) for v in mean_std_ci([0.5])[1:])


def test_pareto_mask():
    cost = np.array([1.0, 0.5, 0.5, 0.7, 0.3])
    acc = np.array([0.9, 0.8, 0.7, 0.75, 0.5])
    assert pareto_mask(cost, acc).tolist() == [True, True, False, False, True]


def test_keep_by_rank_matches_a_simulation_of_orderdp():
    """Simulate OrderDP's selection on fixed scores (with a tied block) and compare per-rank keep
    frequencies with the expectation keep_by_rank derives from gamma."""
    from prunebench.pruners.orderdp import gamma

    rng = np.random.default_rng(1)
    n, s, q = 40, 30, 12
    scores = rng.permutation(np.r_[np.linspace(0.1, 2.0, 30), np.full(10, 3.0)])
    gam = gamma(n, s, q)
    trials, kept_sum, exp_sum = 4000, np.zeros(n), np.zeros(n)
    for _ in range(trials):
        cand = rng.choice(n, s, replace=False)
        order = cand[np.lexsort((rng.random(s), -scores[cand]))][:q]
        mask = np.zeros(n, bool)
        mask[order] = True
        k, e = keep_by_rank(scores, mask, gam, rng)
        kept_sum += k
        exp_sum += e
    # the tied top block of 10 shares one probability: gamma's mean over ranks 1..10 (= s/N here)
    np.testing.assert_allclose(exp_sum[:10] / trials, gam[:10].mean())
    np.testing.assert_allclose(kept_sum / trials, exp_sum / trials, atol=0.035)
    assert kept_sum.sum() == trials * q


def test_cross_seed_jaccard_by_hand():
    a = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], bool)
    b = np.array([[1, 0, 1, 0], [1, 0, 1, 0]], bool)
    np.testing.assert_allclose(cross_seed_jaccard([a, b]), [1 / 3, 1.0])


def test_method_from_label():
    assert method_from_label("orderdp[c=0.8,init=3,p=0.4]") == "orderdp[c=0.8,init=3]"
    assert method_from_label("random-dynamic[p=0.5]") == "random-dynamic"
    assert method_from_label("full") == "full"
