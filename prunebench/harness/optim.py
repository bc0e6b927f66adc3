"""Optimizers (SGD, AdamW, LARS, LAMB) and learning-rate schedules as functions of progress.

A schedule maps training progress ``t`` in [0, 1] (the fraction of the *planned* optimizer steps or
epochs done) to a multiplier of the peak learning rate. Because the loop evaluates it from progress,
shorter pruned epochs (or InfoBatch's varying epoch lengths) never break it, and nothing is rebuilt
per epoch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from prunebench.errors import ConfigError

OPTIMIZERS = ("sgd", "adamw", "lars", "lamb")
SCHEDULES = ("onecycle", "cosine", "step", "constant")

#: default peak learning rate per optimizer at batch size 128 (scaled linearly with the batch size
#: for SGD and LARS, as in Goyal et al. 2017 and You et al. 2017)
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3, "lars": 0.8, "lamb": 2e-3}


def default_lr(optimizer: str, batch_size: int) -> float:
    base = DEFAULT_LR[optimizer]
    return base * batch_size / 128 if optimizer in ("sgd", "lars") else base


def _split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights of conv/linear layers vs biases and normalisation parameters (1-D tensors)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


class LARS(torch.optim.Optimizer):
    """LARS (You, Gitman, Ginsburg 2017): SGD with momentum and a layer-wise trust ratio.

    ``update = g + wd * w``, scaled by ``eta * ||w|| / ||g + wd * w||`` for parameters in groups with
    ``adapt=True`` (weights); biases and norm parameters (``adapt=False``) take plain momentum SGD
    without weight decay, as in the common ImageNet implementations.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, adapt=True, nesterov=nesterov)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["adapt"]:
                    if group["weight_decay"]:
                        g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    g = g * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.clone()
                else:
                    buf.mul_(group["momentum"]).add_(g)
                d = g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                p.add_(d, alpha=-group["lr"])
        return loss


class LAMB(torch.optim.Optimizer):
    """LAMB (You et al., ICLR 2020): Adam moments with a layer-wise trust ratio ``||w|| / ||update||``.

    Bias-corrected moments; decoupled weight decay inside the update; trust ratio on ``adapt=True``
    groups (weights), plain AdamW step on biases and norm parameters.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, adapt=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t = state["m"], state["v"], state["step"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                update = (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt().add_(group["eps"]))
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                if group["adapt"]:
                    w_norm, u_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(update)
                    trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                    update.mul_(trust)
                p.add_(update, alpha=-group["lr"])
        return loss


def create_optimizer(
    name: str, model: nn.Module, lr: float, momentum: float, nesterov: bool, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD and AdamW decay every parameter (as the CIFAR reference recipes); LARS and LAMB exclude
    biases and normalisation parameters from weight decay and trust-ratio adaptation."""
    if name == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0, weight_decay=weight_decay
        )
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    decay, no_decay = _split_decay(model)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0, "adapt": False}]
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "lamb":
        return LAMB(groups, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def _cos(a: float, b: float, t: float) -> float:
    """Cosine interpolation from ``a`` (t=0) to ``b`` (t=1)."""
    return b + (a - b) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2


def lr_multiplier(
    schedule: str,
    t: float,
    *,
    warmup: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    milestones: tuple[float, ...] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """Multiplier of the peak LR at progress ``t`` in [0, 1].

    onecycle  PyTorch's OneCycleLR (cosine both phases): from 1/div_factor up to 1 over the first
              ``warmup`` fraction, then down to 1/(div_factor * final_div_factor).
    cosine    linear warm-up over ``warmup`` (use 0 for none), then cosine to 0.
    step      ``gamma`` ** (number of ``milestones`` passed).
    constant  1.
    """
    if schedule == "onecycle":
        lo = 1.0 / div_factor
        if t < warmup:
            return _cos(lo, 1.0, t / warmup)
        return _cos(1.0, lo / final_div_factor, (t - warmup) / max(1e-12, 1.0 - warmup))
    if schedule == "cosine":
        if warmup > 0 and t < warmup:
            return t / warmup
        return _cos(1.0, 0.0, (t - warmup) / max(1e-12, 1.0 - warmup))
    if schedule == "step":
        return gamma ** sum(t >= m for m in milestones)
    if schedule == "constant":
        return 1.0
    raise ConfigError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
