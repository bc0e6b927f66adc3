"""Static coreset methods: scoring functions against hand-worked numbers, selection rules, the proxy run,
its cache and cost columns, artifacts and export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_config

from prunebench.errors import ConfigError
from prunebench.harness import train
from prunebench.pruners import create_pruner, get_pruner_class, list_pruners
from prunebench.pruners import scores as S
from prunebench.pruners.coverage import facility_location, herding, kcenter_greedy
from prunebench.pruners.rules import central_band, class_budgets, stratified_sample, waterfill

STATIC = [
    "el2n",
    "grand",
    "forgetting",
    "aum",
    "least-confidence",
    "entropy",
    "margin",
    "kcenter-greedy",
    "herding",
    "moderate-ds",
    "ccs",
    "facility-location",
    "tdds",
]
RANKED = ["el2n", "grand", "forgetting", "aum", "least-confidence", "entropy", "margin", "moderate-ds", "ccs", "tdds"]


def test_every_static_method_registered():
    assert set(STATIC) <= set(list_pruners())
    assert all(get_pruner_class(n).granularity == "static" for n in STATIC)


# ---------------------------------------------------------------------------------------------------
# scoring functions: hand-worked numbers
# ---------------------------------------------------------------------------------------------------


def test_el2n_hand_worked():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    out = S.el2n(p, torch.tensor([0, 2]))
    # (0.3, 0.2, 0.1) and (0.7, 0.2, 0.9)
    assert out.tolist() == pytest.approx([math.sqrt(0.14), math.sqrt(1.34)])


@pytest.mark.parametrize("ls,bias", [(0.0, True), (0.1, True), (0.1, False)])
def test_grand_equals_autograd_norm_of_last_layer_gradient(ls, bias):
    g = torch.Generator().manual_seed(0)
    n, d, c = 5, 4, 3
    e = torch.randn(n, d, generator=g, dtype=torch.float64)
    head = torch.nn.Linear(d, c, bias=bias).double()
    y = torch.tensor([0, 1, 2, 1, 0])
    expected = []
    for i in range(n):
        head.zero_grad()
        F.cross_entropy(head(e[i : i + 1]), y[i : i + 1], label_smoothing=ls).backward()
        parts = [head.weight.grad.flatten()] + ([head.bias.grad] if bias else [])
        expected.append(torch.cat(parts).norm().item())
    probs = torch.softmax(head(e), dim=1).detach()
    assert S.grand(probs, y, e, ls, bias=bias).tolist() == pytest.approx(expected, rel=1e-9)
    feats = S.last_layer_grad_features(probs, y, e, ls)
    if bias:
        assert feats.norm(dim=1).tolist() == pytest.approx(expected, rel=1e-9)


def test_prob_margin_and_aum_hand_worked():
    p = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert S.prob_margin(p, torch.tensor([1, 0])).tolist() == pytest.approx([-0.2, 0.2])
    assert S.aum(torch.tensor([[0.2, -0.1], [0.4, -0.3]])).tolist() == pytest.approx([0.6, -0.4])


def test_forgetting_counts_transitions_and_never_learned():
    c = torch.tensor([[1, 0, 0, 1], [0, 1, 0, 1], [1, 1, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    # sample 0: T F T F -> 2 events; 1: F T T T -> 0; 2: F F F F -> never learned -> E = 4; 3: T T F F -> 1
    assert S.forgetting(c).tolist() == [2.0, 0.0, 4.0, 1.0]


def test_uncertainty_scores_hand_worked():
    p = torch.tensor([[0.6, 0.3, 0.1], [0.5, 0.5, 0.0]])
    assert S.least_confidence(p).tolist() == pytest.approx([0.4, 0.5])
    ent0 = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
    assert S.entropy(p).tolist() == pytest.approx([ent0, math.log(2)])
    assert S.margin(p).tolist() == pytest.approx([0.3, 0.0])


def _kl_abs(p1, p0):
    return sum(abs(a * (math.log(a + 1e-8) - math.log(b + 1e-8))) for a, b in zip(p1, p0))


def test_tdds_hand_worked():
    traj = [[0.5, 0.5], [0.8, 0.2], [0.8, 0.2], [0.6, 0.4]]
    a = [_kl_abs(traj[t + 1], traj[t]) for t in range(3)]
    probs = torch.tensor(traj, dtype=torch.float64)[:, None, :]  # T=4, N=1, C=2
    # W=3: windows (a0, a1) weight b(1-b)^1 and (a1, a2) weight b(1-b)^0; deviation norm = |x - y| / sqrt 2
    b = 0.9
    expected = b * (1 - b) * abs(a[0] - a[1]) / math.sqrt(2) + b * abs(a[1] - a[2]) / math.sqrt(2)
    assert S.tdds(probs, 3, b).item() == pytest.approx(expected, rel=1e-9)
    assert S.tdds(probs, 2, b).item() == 0.0  # one transition per window: no deviation
    with pytest.raises(ValueError):
        S.tdds(probs, 5, b)


def test_class_median_distance_hand_worked():
    e = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    y = torch.tensor([0, 0, 0, 1, 1])
    # class 0 median (2, 0); class 1 median (2, 2) (mean of the two middle values)
    assert S.class_median_distance(e, y, 2).tolist() == pytest.approx([2.0, 0.0, 8.0, math.sqrt(2), math.sqrt(2)])


# ---------------------------------------------------------------------------------------------------
# selection rules
# ---------------------------------------------------------------------------------------------------


def test_central_band_hand_worked():
    s = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0])
    kept = central_band(s, 3, torch.Generator().manual_seed(0))
    assert sorted(kept.tolist()) == [2, 3, 4]  # ranks 2..4 of 5: scores 2, 3, 4


def test_waterfill_hand_worked_and_exact():
    # ascending sizes 2, 5, 10 with k = 9: min(2, 9//3) = 2, min(5, 7//2) = 3, min(10, 4) = 4
    assert waterfill(torch.tensor([10, 2, 5]), 9).tolist() == [4, 2, 3]
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        sizes = torch.randint(0, 30, (50,), generator=g)
        k = int(torch.randint(0, int(sizes.sum()) + 1, (1,), generator=g))
        out = waterfill(sizes, k)
        assert int(out.sum()) == k and bool((out <= sizes).all()) and bool((out >= 0).all())


def test_stratified_sample_budget_and_strata():
    s = torch.cat([torch.zeros(100), torch.ones(10)])  # two populated strata (first and last of 2)
    kept = stratified_sample(s, 20, torch.Generator().manual_seed(0), strata=2)
    assert kept.numel() == 20 and torch.unique(kept).numel() == 20
    assert int((kept >= 100).sum()) == 10 and int((kept < 100).sum()) == 10  # water-filling: small stratum full


def _kcenter_reference(x, k, first):
    sel = [first]
    d = ((x - x[first]) ** 2).sum(1)
    for _ in range(k - 1):
        d[sel] = -1
        j = int(d.argmax())
        sel.append(j)
        d = torch.minimum(d, ((x - x[j]) ** 2).sum(1))
    return sel


def test_kcenter_greedy_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g, dtype=torch.float64)
    got = kcenter_greedy(x, 60, torch.Generator().manual_seed(3)).tolist()
    assert got == _kcenter_reference(x, 60, got[0])
    # points 0, 1, 2, 6, 10 on a line: from 0, 1 or 2 the far end 10 then 6 (4 from both); from 6 first 0
    # (36 > 16) then 10; from 10 first 0 then 6
    line = torch.tensor([[0.0], [1.0], [2.0], [6.0], [10.0]])
    expected = {0: [4, 3], 1: [4, 3], 2: [4, 3], 3: [0, 4], 4: [0, 3]}
    starts = set()
    for s in range(12):
        sel = kcenter_greedy(line, 3, torch.Generator().manual_seed(s)).tolist()
        assert sel[1:] == expected[sel[0]]
        starts.add(sel[0])
    assert len(starts) > 1  # the first center is random


def test_kcenter_greedy_lazy_bounds_match_brute_force_on_clusters():
    """Clustered points (where the lazy bounds skip most work) and block sizes that force the doubling
    path: the picks are exactly the naive greedy's."""
    g = torch.Generator().manual_seed(5)
    means = torch.randn(12, 16, generator=g, dtype=torch.float64) * 6
    x = means[torch.randint(0, 12, (1500,), generator=g)] + torch.randn(1500, 16, generator=g, dtype=torch.float64)
    for block in (1, 8, 64):
        got = kcenter_greedy(x, 300, torch.Generator().manual_seed(7), block=block).tolist()
        assert len(set(got)) == 300
        # each pick is the farthest point from the centers before it (float32 rounding: 1e-5 relative)
        d = ((x - x[got[0]]) ** 2).sum(1)
        for j in got[1:]:
            assert d[j] >= d.max() * (1 - 1e-5)
            d = torch.minimum(d, ((x - x[j]) ** 2).sum(1))
    dup = torch.zeros(50, 3)  # all points identical: any order, never a point twice
    sel = kcenter_greedy(dup, 50, torch.Generator().manual_seed(0))
    assert sorted(sel.tolist()) == list(range(50))


def test_herding_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 5, generator=g, dtype=torch.float64)
    got = herding(x, 20, torch.Generator().manual_seed(0)).tolist()
    mu, sel = x.mean(0), []
    for _ in range(20):
        best = min((i for i in range(60) if i not in sel), key=lambda i: (mu - x[sel + [i]].mean(0)).norm().item())
        sel.append(best)
    assert got == sel


def test_facility_location_matches_plain_greedy_and_weights():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(80, 3, generator=g)
    got, w = facility_location(x, 10, torch.Generator().manual_seed(0))
    d = torch.cdist(x.double(), x.double())
    sim = d.max() - d
    sel, cur = [], torch.zeros(80, dtype=torch.float64)
    for _ in range(10):
        gains = [(torch.clamp(sim[:, j] - cur, min=0).sum().item(), j) for j in range(80) if j not in sel]
        j = max(gains)[1]
        sel.append(j)
        cur = torch.maximum(cur, sim[:, j])
    assert got.tolist() == sel
    nearest = torch.tensor(sel)[sim[:, sel].argmax(dim=1)]
    assert w.tolist() == [float((nearest == j).sum()) for j in sel] and w.sum() == 80


# ---------------------------------------------------------------------------------------------------
# pruners on a real tiny proxy (the proxy_context fixture)
# ---------------------------------------------------------------------------------------------------

N = 200


def _prepared(name, proxy_context, ratio=0.4, seed=0, **opts):
    p = create_pruner(name, num_samples=N, num_epochs=3, prune_ratio=ratio, seed=seed, **opts)
    p.prepare(proxy_context(N))
    return p


@pytest.mark.parametrize("name", STATIC)
@pytest.mark.parametrize("ratio", [0.3, 0.55])
def test_budget_exact(name, ratio, proxy_context):
    p = _prepared(name, proxy_context, ratio)
    q = round((1 - ratio) * N)
    sel = p.plan_epoch(0)
    assert sel.indices.numel() == q and torch.unique(sel.indices).numel() == q
    if sel.weights is not None:  # facility location: cluster sizes normalised to mean 1
        assert float(sel.weights.mean()) == pytest.approx(1.0, rel=1e-5)


def test_every_static_method_offers_class_balanced():
    """DeepCore selects per class for every method: each static method has the option (from-indices
    selects nothing)."""
    import dataclasses

    static = [n for n in list_pruners() if get_pruner_class(n).granularity == "static" and n != "from-indices"]
    assert set(STATIC) <= set(static)
    for name in static:
        assert "class_balanced" in {f.name for f in dataclasses.fields(get_pruner_class(name).Options)}, name


@pytest.mark.parametrize("name", RANKED + ["kcenter-greedy", "herding", "facility-location"])
def test_class_balance_holds(name, proxy_context):
    p = _prepared(name, proxy_context, 0.55, class_balanced=True)
    labels = proxy_context(N).labels
    got = torch.bincount(labels[p.subset], minlength=4)
    assert got.tolist() == class_budgets(labels, 90, 4).tolist()


@pytest.mark.parametrize(
    "name,largest",
    [
        ("el2n", True),
        ("forgetting", True),
        ("aum", False),
        ("entropy", True),
        ("margin", False),
        ("least-confidence", True),
        ("tdds", True),
    ],
)
def test_rank_methods_keep_the_right_end(name, largest, proxy_context):
    p = _prepared(name, proxy_context, 0.5)
    s, kept = p.scores, p.subset
    mask = torch.zeros(N, dtype=torch.bool)
    mask[kept] = True
    if largest:
        assert s[mask].min() >= s[~mask].max()
    else:
        assert s[mask].max() <= s[~mask].min()


def test_moderate_keeps_the_central_band(proxy_context):
    p = _prepared("moderate-ds", proxy_context, 0.5)
    ranks = torch.argsort(torch.argsort(p.scores))
    assert sorted(ranks[p.subset].tolist()) == list(range(50, 150))


def test_ccs_drops_the_hardest_and_spreads_over_strata(proxy_context):
    p = _prepared("ccs", proxy_context, 0.5, hard_cutoff=0.2)
    d = p.scores  # difficulty = -AUM
    hardest = torch.topk(d, 40).indices
    assert not bool(torch.isin(hardest, p.subset).any())
    assert torch.allclose(d, -S.aum(p.context.proxy(_req(10))["margin"][0]))


def _req(epochs, record=()):
    from prunebench.pruners import ProxyRequest

    return ProxyRequest(epochs=epochs, seeds=(0,), record=record)


def test_options_validated():
    with pytest.raises(ConfigError, match="window"):
        create_pruner("tdds", num_samples=N, num_epochs=3, prune_ratio=0.5, proxy_epochs=3, window=5)
    with pytest.raises(ConfigError, match="valid: 'aum', 'forgetting', 'el2n'"):
        create_pruner("ccs", num_samples=N, num_epochs=3, prune_ratio=0.5, difficulty="loss")
    with pytest.raises(ConfigError, match="proxy_epochs must be >= 1"):
        create_pruner("el2n", num_samples=N, num_epochs=3, prune_ratio=0.5, proxy_epochs=0)
    p = create_pruner("el2n", num_samples=N, num_epochs=3, prune_ratio=0.5)
    from prunebench.pruners import PruneContext

    with pytest.raises(ConfigError, match="proxy run"):
        p.prepare(PruneContext(labels=torch.arange(N) % 4, num_classes=4))


def test_proxy_records_are_consistent(proxy_context):
    rec = proxy_context(N).proxy(_req(3, ("train_probs",)))
    tp, labels = rec["train_probs"][0], proxy_context(N).labels
    assert rec["margin"].shape == (1, 3, N) and rec["embeddings"].shape == (1, N, 256)
    # each sample is presented once per epoch: its recorded margin and correctness come from that forward
    assert torch.allclose(rec["margin"][0], S.prob_margin(tp, labels.expand(3, N)), atol=1e-6)
    assert torch.equal(rec["correct"][0], tp.argmax(dim=2) == labels)
    assert torch.allclose(tp.sum(dim=2), torch.ones(3, N), atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# through the loop: cost columns, cache, determinism, artifacts, export
# ---------------------------------------------------------------------------------------------------


def test_run_reports_proxy_cost_and_reuses_cache(synthetic, tmp_path):
    cfg = fast_config(
        pruner="forgetting", prune_ratio=0.5, epochs=2, score_cache=str(tmp_path), pruner_options={"proxy_epochs": 3}
    )
    a = train(cfg, data=synthetic)
    row = a.row
    assert row["scoring_cache_hit"] is False and row["scoring_proxy_runs"] == 1
    assert row["scoring_samples_backprop"] == 3 * 512  # proxy: 3 full epochs
    assert row["scoring_samples_forward"] == 512  # one no-grad pass for outputs and embeddings
    assert row["scoring_relative_compute"] == pytest.approx((512 + 3 * 3 * 512) / (3 * 2 * 512))
    assert row["samples_backprop"] == 2 * 256 and row["scoring_time_s"] >= row["scoring_proxy_time_s"] > 0
    assert len(list(tmp_path.glob("proxy-*.npz"))) == 1
    # a second run with the same key (here: another method with the same proxy recipe) reuses the records
    b = train({**cfg, "pruner": "ccs"}, data=synthetic)
    assert b.row["scoring_cache_hit"] is True and b.row["scoring_proxy_runs"] == 0
    assert b.row["scoring_samples_backprop"] == 3 * 512  # the cost of the proxy the scores came from
    c = train(cfg, data=synthetic)
    assert c.row["scoring_cache_hit"] is True
    np.testing.assert_array_equal(a.kept_masks, c.kept_masks)
    assert c.row["final_train_loss"] == a.row["final_train_loss"]
    # another run seed is another proxy: a miss, and another subset
    d = train({**cfg, "seed": 1}, data=synthetic)
    assert d.row["scoring_cache_hit"] is False
    assert not np.array_equal(a.kept_mask(0), d.kept_mask(0))


def test_same_seed_same_subset_without_cache(synthetic):
    cfg = fast_config(
        pruner="kcenter-greedy", prune_ratio=0.5, epochs=1, score_cache=None, pruner_options={"proxy_epochs": 2}
    )
    a, b = train(cfg, data=synthetic), train(cfg, data=synthetic)
    np.testing.assert_array_equal(a.kept_masks, b.kept_masks)
    assert "scoring_cache_hit" in a.row and a.row["scoring_cache_hit"] is False


def test_non_static_rows_have_zero_scoring_cost(synthetic):
    row = train(fast_config(pruner="random-dynamic", prune_ratio=0.5, epochs=1), data=synthetic).row
    assert row["scoring_samples_backprop"] == 0 and row["scoring_relative_compute"] == 0.0
    assert "scoring_cache_hit" not in row


def test_scores_and_kept_indices_logged_as_artifacts(synthetic, tracking_uri, tmp_path):
    from mlflow.tracking import MlflowClient

    r = train(
        fast_config(
            pruner="el2n",
            prune_ratio=0.5,
            epochs=1,
            tracking=True,
            tracking_uri=tracking_uri,
            score_cache=None,
            pruner_options={"proxy_epochs": 1},
        ),
        data=synthetic,
    )
    client = MlflowClient(tracking_uri=tracking_uri)
    names = {f.path for f in client.list_artifacts(r.row["run_id"])}
    assert {"static_scores.npy", "static_kept_indices.npy"} <= names
    kept = np.load(client.download_artifacts(r.row["run_id"], "static_kept_indices.npy", str(tmp_path)))
    np.testing.assert_array_equal(np.sort(kept), np.flatnonzero(r.kept_mask(0)))


def test_export_scores_cli(tmp_path, capsys):
    from prunebench.cli import main

    args = [
        "export-scores",
        "--pruner",
        "el2n",
        "--dataset",
        "synthetic",
        "--model",
        "mlp",
        "--prune-ratio",
        "0.5",
        "--set",
        "proxy_epochs=1",
        "--set",
        f"score_cache={tmp_path / 'cache'}",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args + ["--format", "npy"]) == 0
    scores = np.load(tmp_path / "o" / "scores.npy")
    kept = np.load(tmp_path / "o" / "kept_indices.npy")
    assert scores.shape == (512,) and kept.shape == (256,)
    assert scores[kept].min() >= np.delete(scores, kept).max()  # EL2N keeps the largest
    assert main(args + ["--format", "csv"]) == 0
    import pandas as pd

    df = pd.read_csv(tmp_path / "o" / "scores.csv")
    assert list(df.columns) == ["index", "scores", "labels", "kept"] and int(df["kept"].sum()) == 256
    np.testing.assert_allclose(df["scores"].to_numpy(), scores, rtol=1e-6)
    capsys.readouterr()
    assert main(["export-scores", "--pruner", "orderdp", "--dataset", "synthetic", "--out", str(tmp_path / "x")]) == 2
    assert "no static scores" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# per-class selection, proxy runs and the reference departures, against independent computations
# ---------------------------------------------------------------------------------------------------


def _by_class(labels, kept, c):
    members = torch.nonzero(labels == c).flatten()
    mask = torch.zeros(labels.numel(), dtype=torch.bool)
    mask[kept] = True
    return members, mask[members]


@pytest.mark.parametrize(
    "name,end",
    [
        ("el2n", "largest"),
        ("grand", "largest"),
        ("forgetting", "largest"),
        ("aum", "smallest"),
        ("least-confidence", "largest"),
        ("entropy", "largest"),
        ("margin", "smallest"),
        ("tdds", "largest"),
        ("moderate-ds", "central"),
        ("ccs", "ccs"),
    ],
)
def test_class_balanced_applies_the_rule_within_each_class(name, end, proxy_context):
    """Each class keeps its largest-remainder share, chosen by the method's rule among that class alone
    (as DeepCore's balance=True): sorted scores per class, not the code's own selection."""
    p = _prepared(name, proxy_context, 0.55, class_balanced=True)
    labels = proxy_context(N).labels
    budgets = class_budgets(labels, 90, 4).tolist()
    for c in range(4):
        members, kept = _by_class(labels, p.subset, c)
        s = p.scores[members].double()
        assert int(kept.sum()) == budgets[c]
        if end == "largest":
            assert s[kept].min() >= s[~kept].max()
        elif end == "smallest":
            assert s[kept].max() <= s[~kept].min()
        elif end == "central":  # ranks within the class: [(n_c - b)//2, (n_c - b)//2 + b)
            ranks = torch.argsort(torch.argsort(s))
            lo = (members.numel() - budgets[c]) // 2
            assert sorted(ranks[kept].tolist()) == list(range(lo, lo + budgets[c]))
        else:  # CCS: the class's hardest round(0.1 n_c) are dropped, the rest is sampled
            hardest = torch.argsort(s, descending=True)[: round(0.1 * members.numel())]
            assert not bool(kept[hardest].any())
    # the global rule would cross classes: the per-class subset is a different one
    g = _prepared(name, proxy_context, 0.55, class_balanced=False)
    if end in ("largest", "smallest"):
        assert set(g.subset.tolist()) != set(p.subset.tolist())


def _brute_facility(x, k):
    """Plain greedy facility location with CRAIG's similarity, every gain recomputed (float64)."""
    d = torch.cdist(x.double(), x.double())
    sim = d.max() - d
    sel, cur = [], torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(k):
        gains = [(torch.clamp(sim[:, j] - cur, min=0).sum().item(), j) for j in range(x.shape[0]) if j not in sel]
        j = max(gains)[1]
        sel.append(j)
        cur = torch.maximum(cur, sim[:, j])
    nearest = torch.tensor(sel)[sim[:, sel].argmax(dim=1)]
    return sel, [float((nearest == j).sum()) for j in sel]


def _brute_herding(x, k):
    """Each step: the unselected sample whose addition puts the selected mean closest to the mean of all."""
    x = x.double()
    mu, sel = x.mean(0), []
    for t in range(k):
        means = (x[sel].sum(0) + x) / (t + 1)  # the selected mean with each candidate added
        dist = (means - mu).norm(dim=1)
        dist[sel] = float("inf")
        sel.append(int(dist.argmin()))
    return sel


@pytest.mark.parametrize("name", ["kcenter-greedy", "herding", "facility-location"])
def test_greedy_covers_per_class_match_brute_force(name, proxy_context):
    """class_balanced greedy covers run the greedy on each class's embeddings alone; picks (in order)
    and facility-location weights equal a brute-force greedy on that class."""
    p = _prepared(name, proxy_context, 0.55, class_balanced=True)
    labels = proxy_context(N).labels
    emb = proxy_context(N).proxy(_req(10))["embeddings"][0]
    budgets = class_budgets(labels, 90, 4).tolist()
    weights = {}
    if p.subset_weights is not None:
        weights = dict(zip(p.subset.tolist(), p.subset_weights.tolist()))
    start = 0
    for c in range(4):
        members = torch.nonzero(labels == c).flatten()
        picks = p.subset[start : start + budgets[c]].tolist()  # class by class, each in the order picked
        start += budgets[c]
        local = [int(torch.nonzero(members == i)) for i in picks]
        x = emb[members]
        if name == "kcenter-greedy":
            assert local == _kcenter_reference(x.double(), budgets[c], local[0])
        elif name == "herding":
            assert local == _brute_herding(x, budgets[c])
        else:  # ReLU embeddings tie exactly here: each pick has the best float64 gain (1e-6 relative)
            d = torch.cdist(x.double(), x.double())
            sim = d.max() - d
            cur = torch.zeros(members.numel(), dtype=torch.float64)
            for t, j in enumerate(local):
                gains = torch.clamp(sim - cur[:, None], min=0).sum(dim=0)
                gains[local[:t]] = -1.0
                assert gains[j] >= gains.max() * (1 - 1e-6)
                cur = torch.maximum(cur, sim[:, j])
            nearest = torch.tensor(local)[sim[:, local].argmax(dim=1)]
            sizes = [float((nearest == j).sum()) for j in local]
            scale = 90 / N  # cluster sizes sum to N; normalised to mean 1 over the kept set
            assert [weights[i] for i in picks] == pytest.approx([v * scale for v in sizes], rel=1e-5)


class _FakeProxy:
    """Hand-made proxy records with a tiny linear head per proxy seed; remembers the requests."""

    def __init__(self, n=24, d=3, c=3, seeds=2, ls=0.1, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % c
        self.emb = torch.randn(seeds, n, d, generator=g, dtype=torch.float64)
        self.heads = []
        for _ in range(seeds):
            head = torch.nn.Linear(d, c).double()
            with torch.no_grad():
                head.weight.copy_(torch.randn(c, d, generator=g, dtype=torch.float64))
                head.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64))
            self.heads.append(head)
        self.ls, self.requests = ls, []
        self.correct = torch.zeros(seeds, 4, n, dtype=torch.bool)

    def __call__(self, req):
        self.requests.append(req)
        with torch.no_grad():
            probs = torch.stack([torch.softmax(h(e), dim=1) for h, e in zip(self.heads, self.emb)])
        k = len(req.seeds)
        return {
            "probs": probs[:k].float(),
            "embeddings": self.emb[:k].float(),
            "correct": self.correct[:k],
            "label_smoothing": self.ls,
            "head_bias": True,
        }

    def grads(self, s):
        """Per-sample last-layer gradients by autograd (weight and bias of head ``s``)."""
        out = []
        for i in range(self.labels.numel()):
            h = self.heads[s]
            h.zero_grad()
            F.cross_entropy(h(self.emb[s, i : i + 1]), self.labels[i : i + 1], label_smoothing=self.ls).backward()
            out.append(torch.cat([h.weight.grad.flatten(), h.bias.grad]))
        return torch.stack(out)

    def context(self):
        from prunebench.pruners import PruneContext

        return PruneContext(labels=self.labels, num_classes=int(self.labels.max()) + 1, proxy=self)


def test_grand_averages_the_proxy_runs():
    fake = _FakeProxy(seeds=3)
    p = create_pruner("grand", num_samples=24, num_epochs=2, prune_ratio=0.5, seed=0, proxy_seeds=3)
    p.prepare(fake.context())
    assert fake.requests[-1].seeds == (0, 1, 2)
    expected = torch.stack([fake.grads(s).norm(dim=1) for s in range(3)]).mean(dim=0)
    assert p.scores.tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    one = create_pruner("grand", num_samples=24, num_epochs=2, prune_ratio=0.5, seed=0)  # default: 1 run
    one.prepare(fake.context())
    assert fake.requests[-1].seeds == (0,)
    assert one.scores.tolist() == pytest.approx(fake.grads(0).norm(dim=1).tolist(), rel=1e-5)


def test_every_proxy_run_is_counted_in_the_scoring_cost(synthetic, tmp_path):
    cfg = fast_config(
        pruner="grand",
        prune_ratio=0.5,
        epochs=1,
        score_cache=str(tmp_path),
        pruner_options={"proxy_epochs": 2, "proxy_seeds": 2},
    )
    row = train(cfg, data=synthetic).row
    assert row["scoring_proxy_runs"] == 2 and row["scoring_samples_backprop"] == 2 * 2 * 512
    assert row["scoring_samples_forward"] == 2 * 512  # one no-grad pass per proxy run
    cached = train(cfg, data=synthetic).row  # from the cache: the same cost
    assert cached["scoring_cache_hit"] is True and cached["scoring_proxy_runs"] == 0
    assert cached["scoring_samples_backprop"] == 2 * 2 * 512 and cached["scoring_samples_forward"] == 2 * 512


def _toneva(history):
    """Toneva et al.'s count (order_examples_by_forgetting.py): 1 -> 0 transitions, or the number of
    presentations when never learned, summed over runs."""
    total = 0
    for acc in history:
        acc = [int(a) for a in acc]
        if not any(acc):
            total += len(acc)
        else:
            total += sum(1 for a, b in zip(acc, acc[1:]) if a == 1 and b == 0)
    return total


def test_forgetting_counts_never_learned_as_toneva():
    fake = _FakeProxy(n=6, seeds=1)
    run = [[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    fake.correct = torch.tensor([run], dtype=torch.bool).transpose(1, 2)  # [S, E, N]
    p = create_pruner("forgetting", num_samples=6, num_epochs=2, prune_ratio=0.5, seed=0)
    p.prepare(fake.context())
    expected = [_toneva([run[i]]) for i in range(6)]
    assert expected == [2, 4, 0, 1, 4, 1]  # samples 1 and 4: never learned, 4 presentations (DeepCore, CCS: 0)
    assert p.scores.tolist() == expected
    assert sorted(p.subset.tolist()) == [0, 1, 4]  # the never learned are the most forgotten, not the least


def test_facility_location_on_gradients_matches_brute_force():
    """features="gradients": CRAIG/DeepCore's last-layer gradients (autograd here), greedy per class."""
    fake = _FakeProxy(n=30, seeds=1)
    p = create_pruner("facility-location", num_samples=30, num_epochs=2, prune_ratio=0.6, seed=0, features="gradients")
    p.prepare(fake.context())
    grads = fake.grads(0)
    start, budgets = 0, class_budgets(fake.labels, 12, 3).tolist()
    for c in range(3):
        members = torch.nonzero(fake.labels == c).flatten()
        picks = p.subset[start : start + budgets[c]]
        start += budgets[c]
        sel, w = _brute_facility(grads[members], budgets[c])
        assert picks.tolist() == members[sel].tolist()
        assert p.subset_weights[start - budgets[c] : start].tolist() == pytest.approx(
            [v * 12 / 30 for v in w], rel=1e-5
        )
    emb = create_pruner("facility-location", num_samples=30, num_epochs=2, prune_ratio=0.6, seed=0)
    emb.prepare(fake.context())
    assert emb.subset.tolist() != p.subset.tolist()  # gradients are another space than embeddings


def test_facility_location_global_greedy_over_class_blocks_matches_brute_force():
    """class_balanced=false: one greedy over all samples, similarity max(D_c) - D within a class and 0
    across (DeepCore's Craig with balance=False). Brute force over the block matrix: at every step some
    kept sample has the best gain (exact ties occur), and taking it leaves the rest of the kept set."""
    from prunebench.pruners.coverage import facility_location_by_class

    g = torch.Generator().manual_seed(4)
    labels = torch.tensor([0] * 12 + [1] * 8 + [2] * 10)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0, 0.5])[labels, None]
    sim = torch.zeros(30, 30, dtype=torch.float64)
    for c in range(3):
        m = torch.nonzero(labels == c).flatten()
        d = torch.cdist(x[m], x[m])
        sim[m[:, None], m[None, :]] = d.max() - d
    for seed in range(3):
        kept, w = facility_location_by_class(x.float(), labels, 11, torch.Generator().manual_seed(seed))
        assert kept.numel() == 11 and torch.unique(kept).numel() == 11
        left, cur, taken = set(kept.tolist()), torch.zeros(30, dtype=torch.float64), []
        for _ in range(11):
            gains = torch.clamp(sim - cur[:, None], min=0).sum(dim=0)
            gains[taken] = -1.0
            best = [j for j in left if gains[j] >= gains.max() * (1 - 1e-6)]
            assert best, "no kept sample has the greedy's best gain"
            taken.append(best[0])
            left.discard(best[0])
            cur = torch.maximum(cur, sim[:, best[0]])
        # the budget follows the gains, not the class sizes
        assert torch.bincount(labels[kept], minlength=3).tolist() == [8, 2, 1] != class_budgets(labels, 11, 3).tolist()
        # weights: sizes of the within-class clusters (each sample to its most similar kept one of its class)
        owner = torch.tensor(kept.tolist())[
            torch.where(labels[kept][None, :] == labels[:, None], sim[:, kept], -1.0).argmax(dim=1)
        ]
        assert w.tolist() == [float((owner == j).sum()) for j in kept.tolist()]


@pytest.mark.parametrize("features", ["embeddings", "gradients"])
def test_facility_location_across_classes_keeps_the_budget_and_mean_weight(features, proxy_context):
    p = _prepared("facility-location", proxy_context, 0.55, class_balanced=False, features=features)
    assert p.subset.numel() == 90 and torch.unique(p.subset).numel() == 90
    assert float(p.subset_weights.mean()) == pytest.approx(1.0, rel=1e-5)


def test_facility_location_never_picks_a_point_twice_on_duplicates():
    for x in (torch.zeros(10, 2), torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).repeat(3, 1)):
        idx, w = facility_location(x, x.shape[0], torch.Generator().manual_seed(0))
        assert sorted(idx.tolist()) == list(range(x.shape[0])) and float(w.sum()) == x.shape[0]
