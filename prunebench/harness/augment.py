"""Batched, on-device augmentation of uint8 NCHW image batches (no per-sample Python loop)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTS = ("crop+flip", "crop", "flip", "none")


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-padded random crop back to the input size (torchvision's ``RandomCrop(size, padding)``),
    one independent offset per image, done as a single gather."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontal flip of each image with probability 1/2."""
    mask = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def augment_batch(x: torch.Tensor, mode: str, padding: int, generator: torch.Generator) -> torch.Tensor:
    if mode in ("crop+flip", "crop"):
        x = random_crop(x, padding, generator)
    if mode in ("crop+flip", "flip"):
        x = random_flip(x, generator)
    return x
