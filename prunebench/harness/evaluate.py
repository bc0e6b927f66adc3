"""Evaluation: top-1 (and, with 10 classes or more, top-5) accuracy on the test split, outside the
training clock; under DDP each rank evaluates a shard and the counts are all-reduced. :func:`final_pass`: the
softmax outputs and penultimate embeddings of every training sample (the proxy's last records)."""

from __future__ import annotations

import torch
from torch import nn

from prunebench.harness import distributed as ddp
from prunebench.harness.batches import FolderBatches, TensorBatches
from prunebench.harness.models import classifier_head
from prunebench.harness.step import Precision


@torch.no_grad()
def evaluate(
    model: nn.Module, batches: TensorBatches | FolderBatches, precision: Precision, num_classes: int, batch_size: int
) -> dict[str, float]:
    """``{"test_acc": ..., "test_top5": ...}``; ``model`` is the plain module (no DDP collectives)."""
    model.eval()
    device, dist = batches.device, batches.dist
    k5 = num_classes >= 10
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correct5 = torch.zeros((), dtype=torch.int64, device=device)
    total = 0
    for x, y in batches.test(batch_size):
        with precision.autocast():
            logits = model(x)
        top = logits.float().topk(5 if k5 else 1, dim=1).indices
        correct1 += (top[:, 0] == y).sum()
        if k5:
            correct5 += (top == y[:, None]).any(dim=1).sum()
        total += y.numel()
    if dist.enabled:
        sums = ddp.all_reduce_sum(torch.stack([correct1, correct5, torch.tensor(total, device=device)]))
        correct1, correct5, total = sums[0], sums[1], int(sums[2].item())
    out = {"test_acc": correct1.item() / total}
    if k5:
        out["test_top5"] = correct5.item() / total
    return out


@torch.no_grad()
def final_pass(trainer) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax outputs [N, C] and penultimate embeddings [N, d] of every training sample, in eval mode,
    without augmentation (folder datasets pass through their training transform)."""
    model = trainer.model
    model.eval()
    head = classifier_head(model)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().float().cpu()))
    probs: list[torch.Tensor] = []
    bs = trainer.config.eval_batch_size
    try:
        for x in trainer.batches.in_order(bs):
            with trainer.precision.autocast():
                logits = model(x)
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
    finally:
        hook.remove()
    return torch.cat(probs), torch.cat(feats).flatten(1)
