"""DeepFool against a trained proxy: the ``deepfool_norm`` record of the proxy run (DeepCore's ``DeepFool``)."""

from __future__ import annotations

import torch


def deepfool(model: torch.nn.Module, x: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, int]:
    """DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016, Algorithm 2) against ``model`` on the batch
    ``x``: for each sample, the L2 norm of the accumulated perturbation ``r_tot`` that moves it off its
    predicted class ``k0``, and the cost spent in forward-pass equivalents.

    Each iteration linearises the classifier at the current point: with ``f'_k = f_k - f_k0`` and
    ``w'_k = grad f_k - grad f_k0``, the nearest linearised boundary is ``l = argmin_{k != k0} |f'_k| / ||w'_k||``
    and the step ``r = |f'_l| / ||w'_l||^2 w'_l``. A sample stops as soon as its prediction differs from
    ``k0``, or after ``max_iter`` steps. As DeepCore's ``DeepFool.deep_fool`` (checked at 74ec709): no
    overshoot and no ``1e-4`` added to the step (the paper's code has both), the prediction ``k0`` is the
    model's, not the label. Runs in float32 without autocast (the step divides by gradient norms) and with
    the parameters' ``requires_grad`` switched off meanwhile (restored after).

    Cost: every forward of a sample counts 1, every backward pass through it 2 (one per class logit and
    iteration: ``C`` of them), the cost model's ratio.
    """
    n = x.shape[0]
    x0 = x.detach().float()
    r_tot = torch.zeros_like(x0)
    active = torch.arange(n, device=x0.device)
    k0: torch.Tensor | None = None
    cost = 0
    for _ in range(max_iter):
        xa = (x0[active] + r_tot[active]).requires_grad_(True)
        f = model(xa).float()
        c = f.shape[1]
        cost += active.numel()
        pred = f.argmax(dim=1)
        if k0 is None:
            k0 = pred
        going = pred == k0[active]  # the forward at the new point also tests whether the last step flipped it
        if not bool(going.any()):
            break
        # gradients of every class logit w.r.t. the input, one backward pass per class (the rows are independent)
        grads = torch.stack(
            [torch.autograd.grad(f[:, k].sum(), xa, retain_graph=k + 1 < c)[0].flatten(1) for k in range(c)], dim=1
        )  # [a, C, D]
        cost += 2 * c * active.numel()
        grads, f, xa_idx = grads[going], f.detach()[going], active[going]
        k_a = k0[xa_idx]
        rows = torch.arange(xa_idx.numel(), device=x0.device)
        w = grads - grads[rows, k_a][:, None, :]  # w'_k [a, C, D]
        df = (f - f[rows, k_a][:, None]).abs()  # |f'_k| [a, C]
        wn = w.norm(dim=2)
        dist = torch.where(wn > 0, df / wn, torch.full_like(df, float("inf")))
        dist[rows, k_a] = float("inf")
        l_hat = dist.argmin(dim=1)
        wl, nl = w[rows, l_hat], wn[rows, l_hat]
        scale = torch.where(nl > 0, df[rows, l_hat] / nl.clamp_min(1e-30).pow(2), torch.zeros_like(nl))
        r_tot[xa_idx] += (scale[:, None] * wl).reshape(x0[xa_idx].shape)
        active = xa_idx
    return r_tot.flatten(1).norm(dim=1), cost


def deepfool_norms(trainer, max_iter: int) -> tuple[torch.Tensor, int]:
    """:func:`deepfool` over every training sample of ``trainer`` (un-augmented, eval mode), in batches of
    the eval batch size: the perturbation norms [N] (CPU) and the cost in forward-pass equivalents."""
    model = trainer.model
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    norms, cost = [], 0
    try:
        with torch.enable_grad():
            for x in trainer.batches.in_order(trainer.config.eval_batch_size):
                r, c = deepfool(model, x, max_iter)
                norms.append(r.cpu())
                cost += c
    finally:
        for p in params:
            p.requires_grad_(True)
    return torch.cat(norms), cost
