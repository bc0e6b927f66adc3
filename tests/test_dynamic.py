"""UCB, epsilon-greedy, selective backprop and importance sampling against independent computations;
the gradient-direction probe; exporting a coreset from a dynamic run and training on it (from-indices)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import fast_config
from scipy import stats

from prunebench.errors import ConfigError
from prunebench.harness import train
from prunebench.harness.export import export_coreset, most_used
from prunebench.harness.probe import compare_gradients, flat_gradient
from prunebench.pruners import CandidateBatch, create_pruner
from prunebench.pruners.importance import gradient_norm_bound, variance_reduction
from prunebench.pruners.selective_backprop import beta_for_keep_fraction, percentile_rank


def _ewm(seq: list[float], ema: float) -> tuple[float, float]:
    """Exponentially weighted mean and variance by their definition: weights ema^(t-1) on the first
    observation and (1-ema) ema^(t-j) on observation j >= 2 (they sum to one)."""
    t = len(seq)
    w = np.array([ema ** (t - 1)] + [(1 - ema) * ema ** (t - j) for j in range(2, t + 1)])
    x = np.array(seq)
    m = float((w * x).sum())
    return m, float((w * (x - m) ** 2).sum())


def _observe_rounds(p, n: int, rounds: int, rng: np.random.Generator) -> dict[int, list[float]]:
    """Observe random losses for random subsets over several rounds; return each sample's sequence."""
    seqs: dict[int, list[float]] = {i: [] for i in range(n)}
    for _ in range(rounds):
        idx = rng.choice(n, size=n // 2, replace=False)
        losses = rng.gamma(2.0, 1.0, size=idx.size)
        p.observe(torch.from_numpy(idx), torch.from_numpy(losses).float())
        for i, l in zip(idx, losses):
            seqs[int(i)].append(float(np.float32(l)))
    return seqs


# --------------------------------------------------------------------------------------------------
# UCB and epsilon-greedy
# --------------------------------------------------------------------------------------------------


def test_ucb_keeps_top_by_mean_plus_c_sigma():
    n, c, ema = 60, 1.5, 0.7
    p = create_pruner("ucb", num_samples=n, num_epochs=5, prune_ratio=0.5, seed=0, c=c, ema=ema)
    seqs = _observe_rounds(p, n, 8, np.random.default_rng(1))
    score = np.full(n, np.inf)
    for i, s in seqs.items():
        if s:
            m, v = _ewm(s, ema)
            score[i] = m + c * math.sqrt(v)
            assert p.mu[i].item() == pytest.approx(m, rel=1e-5, abs=1e-6)
            assert p.var[i].item() == pytest.approx(v, rel=1e-4, abs=1e-6)
    q = round(0.5 * n)
    expected = set(np.argsort(-score, kind="stable")[:q].tolist())
    assert np.isfinite(score).sum() > q  # the test exercises the UCB ranking, not only unseen samples
    assert set(p.plan_epoch(3).indices.tolist()) == expected


def test_ucb_unseen_samples_first_then_random_ties():
    n = 40
    p = create_pruner("ucb", num_samples=n, num_epochs=5, prune_ratio=0.5, seed=0)
    p.observe(torch.arange(10), torch.full((10,), 100.0))  # huge losses, but unseen samples rank first
    kept = set(p.plan_epoch(0).indices.tolist())
    assert len(kept) == 20 and kept <= set(range(10, 40))
    # epoch 0 with nothing observed: a uniform draw (Monte Carlo over seeds)
    freq = np.zeros(n)
    for s in range(300):
        freq[
            create_pruner("ucb", num_samples=n, num_epochs=5, prune_ratio=0.5, seed=s).plan_epoch(0).indices.numpy()
        ] += 1
    assert np.abs(freq / 300 - 0.5).max() < 0.12


def test_epsilon_greedy_splits_the_budget():
    n, eps, ema = 50, 0.3, 0.5
    p = create_pruner("epsilon-greedy", num_samples=n, num_epochs=5, prune_ratio=0.4, seed=0, eps=eps, ema=ema)
    p.observe(
        torch.arange(n), torch.linspace(0.1, 5.0, n)[torch.randperm(n, generator=torch.Generator().manual_seed(3))]
    )
    scores = p.mu.numpy().copy()
    q = round(0.6 * n)  # 30
    n_explore = round(eps * q)  # 9
    n_top = q - n_explore  # 21
    top = set(np.argsort(-scores)[:n_top].tolist())
    rest = sorted(set(range(n)) - top)
    freq = np.zeros(n)
    trials = 400
    for _ in range(trials):
        kept = p.plan_epoch(1).indices.numpy()
        assert kept.size == q and np.unique(kept).size == q
        assert top <= set(kept.tolist())
        freq[kept] += 1
    # the exploration part is uniform over the rest: each has probability n_explore / (n - n_top)
    np.testing.assert_allclose(freq[rest] / trials, n_explore / (n - n_top), atol=0.12)
    assert p.split() == (n_top, n_explore)


def test_epsilon_greedy_ema_matches_definition():
    n, ema = 30, 0.6
    p = create_pruner("epsilon-greedy", num_samples=n, num_epochs=5, prune_ratio=0.4, seed=0, ema=ema)
    seqs = _observe_rounds(p, n, 6, np.random.default_rng(5))
    for i, s in seqs.items():
        if s:
            assert p.mu[i].item() == pytest.approx(_ewm(s, ema)[0], rel=1e-5)
        else:
            assert p.scores()[i].item() == math.inf


@pytest.mark.parametrize(
    "name,opts",
    [
        ("ucb", {"c": -1.0}),
        ("ucb", {"ema": 1.0}),
        ("epsilon-greedy", {"eps": 1.5}),
        ("selective-backprop", {"beta": 0.0}),
        ("selective-backprop", {"history": 0}),
        ("importance-sampling", {"presample": 0}),
        ("importance-sampling", {"tau_th": 0.5}),
    ],
)
def test_invalid_options_rejected(name, opts):
    with pytest.raises(ConfigError, match="must be"):
        create_pruner(name, num_samples=100, num_epochs=2, prune_ratio=0.4, seed=0, **opts)


# --------------------------------------------------------------------------------------------------
# Selective backprop
# --------------------------------------------------------------------------------------------------


def test_percentile_rank_is_fraction_strictly_below():
    """The release's UnboundedHistogram.percentile_of_score / 100: count(h < l) / len(h), ties not counted."""
    rng = np.random.default_rng(0)
    hist = np.round(rng.random(200) * 20) / 4  # many ties
    losses = np.concatenate([hist[:30], [-1.0, 100.0, 2.6]])
    got = percentile_rank(torch.from_numpy(losses), torch.from_numpy(hist)).numpy()
    want = np.array([sum(1 for h in hist if h < x) / len(hist) for x in losses])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got, [stats.percentileofscore(hist, x, kind="strict") / 100 for x in losses], rtol=1e-6)
    assert got[-3] == 0.0 and got[-2] == 1.0  # below and above every history value
    h4 = torch.tensor([1.0, 2.0, 3.0, 4.0])  # the release's own example: 3 among 1..4 is at 50%
    assert percentile_rank(torch.tensor([3.0]), h4).item() == 0.5


@pytest.mark.parametrize("floor", [0.0, 0.05, 0.2])
@pytest.mark.parametrize("keep", [0.25, 0.6, 0.9])
def test_beta_solves_expected_keep_fraction(keep, floor):
    beta = beta_for_keep_fraction(keep, floor)
    u = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule for E[max(floor, U^beta)]
    assert np.maximum(floor, u**beta).mean() == pytest.approx(keep, abs=1e-4)
    if floor == 0.0:
        assert beta == pytest.approx(1 / keep - 1, rel=1e-9)


def test_selective_backprop_default_is_paper_beta_3():
    p = create_pruner("selective-backprop", num_samples=100, num_epochs=2, seed=0)
    assert p.prune_ratio == 0.75 and p.beta == pytest.approx(3.0)
    q = create_pruner("selective-backprop", num_samples=100, num_epochs=2, prune_ratio=0.4, seed=0, beta=2.0)
    assert q.beta == 2.0 and q.expected_keep_fraction() == pytest.approx(1 / 3)
    with pytest.raises(ConfigError, match="must exceed beta_min"):
        create_pruner("selective-backprop", num_samples=100, num_epochs=2, prune_ratio=0.9, seed=0, beta_min=0.2)


def test_selective_backprop_selection_probability():
    beta, floor, r = 2.0, 0.1, 64
    p = create_pruner(
        "selective-backprop",
        num_samples=1000,
        num_epochs=2,
        prune_ratio=0.4,
        seed=0,
        beta=beta,
        beta_min=floor,
        history=r,
    )
    p.plan_epoch(1)  # past the priming epoch
    rng = np.random.default_rng(0)
    prefill = rng.random(100).astype(np.float32)
    p.probabilities(torch.from_numpy(prefill))  # fill the circular history (its last 64 remain)
    batch = rng.random(16).astype(np.float32)
    hist_after = np.concatenate([prefill, batch])[-r:]  # the batch joins the history first
    want = np.maximum(floor, np.array([(hist_after < x).mean() for x in batch]) ** beta)
    state = {k: v.clone() for k, v in (("hist", p.hist), ("hist_count", p.hist_count))}
    freq = np.zeros(16)
    trials = 3000
    for _ in range(trials):
        p.hist, p.hist_count = state["hist"].clone(), state["hist_count"].clone()
        idx = torch.arange(16)
        sel = p.select_batch(CandidateBatch(idx, torch.from_numpy(batch), torch.zeros(16, 3), idx % 3, 8))
        freq[sel.keep.numpy()] += 1
        assert sel.weights is None
    p.hist, p.hist_count = state["hist"].clone(), state["hist_count"].clone()
    np.testing.assert_allclose(p.probabilities(torch.from_numpy(batch)).numpy(), want, rtol=1e-5)
    se = np.sqrt(want * (1 - want) / trials)
    assert np.all(np.abs(freq / trials - want) < 5 * se + 1e-3)


@pytest.mark.parametrize("prime", [0, 1, 2])
def test_selective_backprop_in_loop_priming_epochs(synthetic, prime):
    # the first `prime` epochs backprop all N (the release primes with N images), then selection starts.
    # A negligible learning rate keeps the loss distribution stationary, so percentiles are uniform and the
    # backprop fraction is E[F^beta] = 1 - p (with learning, falling losses rank low: fewer backprops)
    r = train(
        fast_config(
            pruner="selective-backprop", prune_ratio=0.4, epochs=3, lr=1e-9, pruner_options={"prime_epochs": prime}
        ),
        data=synthetic,
    )
    row, n = r.row, 512
    kept = [h["kept"] for h in r.history]
    assert kept[:prime] == [n] * prime
    assert all(abs(k / n - 0.6) < 0.08 for k in kept[prime:])
    assert row["samples_forward"] == 3 * n  # every sample forwarded once per epoch, no grad
    assert row["samples_backprop"] == sum(kept)
    assert row["relative_compute"] == pytest.approx((3 * n + 3 * row["samples_backprop"]) / (3 * 3 * n))
    assert r.usage.sum() == row["samples_backprop"]


def test_selective_backprop_priming_keeps_all_and_leaves_history_empty():
    p = create_pruner("selective-backprop", num_samples=64, num_epochs=3, prune_ratio=0.75, seed=0, history=8)
    losses = torch.arange(16, dtype=torch.float32)
    batch = CandidateBatch(torch.arange(16), losses, torch.zeros(16, 3), torch.arange(16) % 3, 16)
    p.plan_epoch(0)
    for _ in range(3):
        assert torch.equal(p.select_batch(batch).keep, torch.arange(16))
    assert p.hist_count.item() == 0  # the release's priming selector never calls the probability calculator
    p.plan_epoch(1)
    p.select_batch(batch)
    assert p.hist_count.item() == 16
    # the history held the batch's last 8 losses (8..15); [8, 15] join it first: 10..15, 8, 15, so 8 is
    # above none of it and 15 above 6 of 8
    np.testing.assert_allclose(
        p.probabilities(torch.tensor([8.0, 15.0])).numpy() ** (1 / p.beta), [0.0, 6 / 8], atol=1e-6
    )


# --------------------------------------------------------------------------------------------------
# Importance sampling
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ls", [0.0, 0.1])
def test_gradient_norm_bound_is_logit_gradient_norm(ls):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (7,), generator=g)
    # sum of per-sample losses: row i of the gradient is d l_i / d z_i
    (grad,) = torch.autograd.grad(F.cross_entropy(z, y, reduction="sum", label_smoothing=ls), z)
    np.testing.assert_allclose(gradient_norm_bound(z.detach(), y, ls).numpy(), grad.norm(dim=1).numpy(), rtol=1e-5)


def _release_tau(scores: np.ndarray) -> float:
    """The release's VarianceReductionCondition.update, one batch: 1 / sqrt(1 - |g - u|^2 / |g|^2)."""
    u = 1.0 / len(scores)
    g = scores / scores.sum()
    return 1.0 / np.sqrt(1 - ((g - u) ** 2).sum() / (g**2).sum())


def test_variance_reduction_tau():
    n = 8
    assert variance_reduction(torch.full((n,), 1 / n)).item() == pytest.approx(1.0)
    assert variance_reduction(torch.eye(n)[0]).item() == pytest.approx(math.sqrt(n), rel=1e-5)
    g = torch.rand(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    g /= g.sum()
    assert variance_reduction(g).item() == pytest.approx(_release_tau(g.numpy()), rel=1e-9)
    # second moments of one-sample estimators of the mean of vectors with norms proportional to g:
    # uniform (1/n) sum |G_i|^2 versus importance sampling (1/n^2) (sum |G_i|)^2; tau^2 is their ratio
    uni, imp = (g**2).sum() / n, (g.sum()) ** 2 / n**2
    assert variance_reduction(g).item() ** 2 == pytest.approx((uni / imp).item(), rel=1e-9)


def _active_is(b_cand: int, **opts):
    p = create_pruner(
        "importance-sampling", num_samples=1000, num_epochs=3, prune_ratio=0.4, seed=0, tau_th=1.0, tau_ema=0.0, **opts
    )
    z = torch.randn(b_cand, 3, generator=torch.Generator().manual_seed(9)) * 3
    idx = torch.arange(b_cand)
    p.select_batch(CandidateBatch(idx, torch.zeros(b_cand), z, idx % 3, b_cand // 3))  # tau > 1 now
    p.plan_epoch(1)
    assert p.active and p.candidate_batch_size(4) == 12
    return p


def test_importance_weights_make_gradient_unbiased():
    """Monte Carlo on a tiny linear softmax model: E[(1/b) sum_j w_j grad l_{i_j}] = (1/B) sum_i grad l_i."""
    B, d, C = 12, 4, 3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (B,), generator=g)
    W = torch.randn(C, d, generator=g, dtype=torch.float64, requires_grad=True)
    logits = x @ W.T
    per_sample = torch.stack(
        [
            torch.autograd.grad(F.cross_entropy(logits[i : i + 1], y[i : i + 1]), W, retain_graph=True)[0].flatten()
            for i in range(B)
        ]
    )
    target = per_sample.mean(0)
    p = _active_is(B)
    batch = CandidateBatch(torch.arange(B), torch.zeros(B), logits.detach().float(), y, 4)
    trials, est, est_unweighted = 1500, torch.zeros_like(target), torch.zeros_like(target)
    sq = torch.zeros_like(target)
    for _ in range(trials):
        sel = p.select_batch(batch)
        assert sel.keep.numel() == 4 and sel.weights is not None
        e = (sel.weights.double()[:, None] * per_sample[sel.keep]).mean(0)
        est += e
        sq += e * e
        est_unweighted += per_sample[sel.keep].mean(0)
    mean = est / trials
    se = ((sq / trials - mean * mean).clamp_min(0) / trials).sqrt()
    assert torch.all((mean - target).abs() < 5 * se + 1e-4)
    # the weights matter: without them the estimate is biased towards high-gradient samples
    assert ((est_unweighted / trials - target).abs() > 5 * se + 1e-4).any()


def test_importance_probabilities_and_weights_follow_the_bound():
    B = 9
    p = _active_is(B)
    z = torch.randn(B, 3, generator=torch.Generator().manual_seed(2)) * 2
    y = torch.arange(B) % 3
    bound = gradient_norm_bound(z, y).numpy()
    probs = bound / bound.sum()
    freq = np.zeros(B)
    for _ in range(1500):
        sel = p.select_batch(CandidateBatch(torch.arange(B), torch.zeros(B), z, y, 3))
        np.testing.assert_allclose(sel.weights.numpy(), 1 / (B * probs[sel.keep.numpy()]), rtol=1e-5)
        np.add.at(freq, sel.keep.numpy(), 1)  # with replacement: repeats count
    np.testing.assert_allclose(freq / freq.sum(), probs, atol=0.02)


def test_importance_switch_on_rule():
    p = create_pruner("importance-sampling", num_samples=300, num_epochs=3, prune_ratio=0.4, seed=0)
    assert p.tau_th == pytest.approx((3 * 4 + 3 * 4) / (3 * 4))  # (B + 3b) / 3b with B = 3b
    sel0 = p.plan_epoch(0)
    assert not p.active and p.candidate_batch_size(4) == 4 and sel0.indices.numel() == p.keep_count
    tau = 0.0
    gen = torch.Generator().manual_seed(4)
    for step in range(40):
        y = torch.randint(0, 3, (8,), generator=gen)
        if step < 10:  # near-uniform scores: tau close to 1
            z = torch.randn(8, 3, generator=gen) * 0.1
        else:  # one confidently wrong sample among confidently right ones: tau close to sqrt(8)
            z = 8.0 * F.one_hot(y, 3).float()
            z[0] = 8.0 * F.one_hot((y[0] + 1) % 3, 3).float()
        sel = p.select_batch(CandidateBatch(torch.arange(8), torch.zeros(8), z, y, 8))
        assert torch.equal(sel.keep, torch.arange(8)) and sel.weights is None  # uniform phase keeps all b
        tau = 0.9 * tau + 0.1 * _release_tau(gradient_norm_bound(z, y).double().numpy())
        assert p.tau.item() == pytest.approx(tau, rel=1e-5)
        sel_e = p.plan_epoch(1)
        assert p.active == (tau > p.tau_th)
        p.active = False  # only plan_epoch decides; restore the uniform phase for the next step
    assert tau > p.tau_th  # the sequence does switch it on
    p.plan_epoch(1)
    assert sel_e.indices.numel() == 3 * p.keep_count and p.candidate_batch_size(4) == 12


def test_importance_switch_epoch_on_a_fixed_loss_sequence():
    """Epoch e feeds 15 batches of 8: one sample with logit margin -4 (hard) and 7 with margin e (easier
    every epoch), so the scores' spread grows; the switch epoch follows the release's tau (the square
    root of n sum g^2) against tau_th = 2, computed here with numpy."""

    def batch(e: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(8, 3)
        z[0, 0], z[1:, 0] = -4.0, float(e)
        return z, torch.zeros(8, dtype=torch.long)

    def scores(e: int) -> np.ndarray:  # ||softmax(z) - onehot(0)||, by hand
        z = batch(e)[0].double().numpy()
        pr = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        return np.sqrt((1 - pr[:, 0]) ** 2 + (pr[:, 1:] ** 2).sum(1))

    def switch_epoch(tau_of) -> int:
        tau = 0.0
        for e in range(40):
            if tau > 2.0:
                return e
            for _ in range(15):
                tau = 0.9 * tau + 0.1 * tau_of(scores(e))
        raise AssertionError("never switched on")

    want = switch_epoch(_release_tau)
    assert want != switch_epoch(lambda s: _release_tau(s) ** 2)  # the squared estimate switches earlier
    p = create_pruner("importance-sampling", num_samples=240, num_epochs=40, prune_ratio=0.5, seed=0)
    got = None
    for e in range(40):
        p.plan_epoch(e)
        if p.active:
            got = e
            break
        assert p.candidate_batch_size(8) == 8
        for _ in range(15):
            z, y = batch(e)
            p.select_batch(CandidateBatch(torch.arange(8), torch.zeros(8), z, y, 8))
    assert got == want


def test_importance_sampling_in_loop_counts_forward_passes(synthetic):
    r = train(
        fast_config(
            pruner="importance-sampling", prune_ratio=0.5, epochs=3, pruner_options={"tau_th": 1.0, "tau_ema": 0.0}
        ),
        data=synthetic,
    )
    q, h = 256, r.history
    fwd = np.diff([0] + [e["samples_forward"] for e in h])
    bwd = np.diff([0] + [e["samples_backprop"] for e in h])
    assert fwd[0] == q and list(fwd[1:]) == [3 * q, 3 * q]  # uniform epoch 0, importance sampling after
    assert list(bwd) == [q, q, q]
    assert r.row["realized_prune_ratio"] == pytest.approx(0.5)
    assert r.row["relative_compute"] == pytest.approx((7 * q + 3 * 3 * q) / (3 * 3 * 512))


# --------------------------------------------------------------------------------------------------
# Gradient-direction probe
# --------------------------------------------------------------------------------------------------


def test_flat_gradient_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    n, d, C = 10, 3, 4
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=torch.float64)
    model = torch.nn.Linear(d, C).double()
    loss_fn = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    got = flat_gradient(model, loss_fn, [(x[:6], y[:6], w[:6]), (x[6:], y[6:], w[6:])], 7.0)
    with torch.no_grad():
        r = (F.softmax(model(x), 1) - F.one_hot(y, C)) * w[:, None] / 7.0  # d loss / d logits
        want = torch.cat([(r.T @ x).flatten(), r.sum(0)])
    torch.testing.assert_close(got, want)  # float64 model: float64 gradient
    assert model.weight.grad is None
    out = compare_gradients(got, -2 * got)
    assert out["grad_cosine"] == pytest.approx(-1.0) and out["grad_norm_full"] == pytest.approx(
        2 * out["grad_norm_kept"]
    )


def test_probe_has_no_side_effect_and_full_data_cosine_is_one(synthetic):
    base = fast_config(model="cnn-small", pruner="full", epochs=2)
    plain = train(base, data=synthetic)
    probed = train({**base, "probe_epochs": (0,), "probe_samples": 512}, data=synthetic)
    # epoch 1 trains after the probe: same losses and accuracy means no parameter, BN or RNG side effect
    assert [h["train_loss"] for h in plain.history] == [h["train_loss"] for h in probed.history]
    assert plain.row["final_acc"] == probed.row["final_acc"]
    h = probed.history[0]  # kept set = all data = the full sample: identical gradients
    assert h["grad_cosine"] == pytest.approx(1.0, abs=1e-9)
    assert h["grad_norm_kept"] == pytest.approx(h["grad_norm_full"], rel=1e-6)
    assert probed.row["probe_time_s"] > 0 and plain.row["probe_time_s"] == 0


def test_probe_on_chosen_epochs_only_and_validated(synthetic):
    r = train(
        fast_config(pruner="importance-sampling", prune_ratio=0.4, epochs=3, probe_epochs=(1,), probe_samples=128),
        data=synthetic,
    )
    assert ["grad_cosine" in h for h in r.history] == [False, True, False]
    h = r.history[1]
    assert -1.0 <= h["grad_cosine"] <= 1.0 and h["grad_norm_kept"] > 0 and h["probe_kept"] == 128
    with pytest.raises(ConfigError, match="probe_epochs"):
        train(fast_config(epochs=2, probe_epochs=(2,)), data=synthetic)


# --------------------------------------------------------------------------------------------------
# Exporting a coreset and training on it
# --------------------------------------------------------------------------------------------------


def test_most_used_keeps_the_largest_counts_ties_at_random():
    usage = np.array([5, 1, 3, 3, 0, 3, 7, 2])
    assert most_used(usage, 2).tolist() == [0, 6]
    picks = {tuple(most_used(usage, 4, seed=s).tolist()) for s in range(30)}
    assert all(set(p) >= {0, 6} and len(set(p) & {2, 3, 5}) == 2 for p in picks)
    assert len(picks) == 3  # every pair of the tied samples occurs
    assert most_used(usage, 4, seed=7).tolist() == most_used(usage, 4, seed=7).tolist()


def test_export_then_train_on_exactly_those_indices(tmp_path, synthetic):
    dyn = train(fast_config(pruner="ucb", prune_ratio=0.5, epochs=3), data=synthetic)
    out = tmp_path / "core.csv"
    summary = export_coreset(dyn.usage, 0.5, out, usage_out=tmp_path / "usage.npy")
    idx = np.array([int(v) for v in out.read_text().split()[1:]])
    assert idx.size == summary["kept"] == 256
    assert dyn.usage[idx].min() >= np.delete(dyn.usage, idx).max()
    np.testing.assert_array_equal(np.load(tmp_path / "usage.npy"), dyn.usage)
    st = train(
        fast_config(pruner="from-indices", prune_ratio=0.5, epochs=2, pruner_options={"indices_file": str(out)}),
        data=synthetic,
    )
    want = np.zeros(512, dtype=np.int64)
    want[idx] = 2
    np.testing.assert_array_equal(st.usage, want)
    assert st.row["realized_prune_ratio"] == 0.5


def test_export_coreset_cli_from_mlflow(tmp_path, synthetic, tracking_uri, capsys):
    from prunebench.cli import main

    r = train(
        fast_config(pruner="epsilon-greedy", prune_ratio=0.4, epochs=2, tracking=True, tracking_uri=tracking_uri),
        data=synthetic,
    )
    out = tmp_path / "c.npy"
    assert main(["export-coreset", r.row["run_id"], "--out", str(out), "--tracking-uri", tracking_uri]) == 0
    assert "from-indices --prune-ratio 0.4" in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(out), most_used(r.usage, round(0.6 * 512)))
    assert main(["export-coreset", "no-such-run", "--out", str(out), "--tracking-uri", tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "no-such-run" in err and err.count("\n") == 1


def _write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        np.save(path, content)
    return str(path)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.npy", None, "does not exist"),
        ("bad.npy", b"not a numpy file", "not a readable index file"),
        ("bad.csv", "index\n1\nx\n", "not a readable index file"),
        ("floats.npy", np.linspace(0, 1, 6), "1-D array of integers"),
        ("range.npy", np.array([0, 1, 2, 3, 4, 10]), "index 10 is out of range; valid: 0 <= index < 10"),
        ("dup.npy", np.array([0, 1, 2, 3, 4, 4]), "repeats indices"),
        ("count.npy", np.array([0, 1, 2, 3, 4]), "valid: prune_ratio=0.5 for this file"),
        ("x.json", "[1]", "unknown extension"),
    ],
)
def test_from_indices_validation(tmp_path, name, content, message):
    path = str(tmp_path / name) if content is None else _write(tmp_path / name, content)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as ei:
        create_pruner("from-indices", num_samples=10, num_epochs=2, prune_ratio=0.4, seed=0, indices_file=path)
    assert "\n" not in str(ei.value)
    with pytest.raises(ConfigError, match="needs indices_file"):
        create_pruner("from-indices", num_samples=10, num_epochs=2, prune_ratio=0.4, seed=0)
