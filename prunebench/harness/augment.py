"""Batched, on-device augmentation of uint8 NCHW image batches (no per-sample Python loop).

Augmentation is split into drawing per-sample parameters (crop offsets, flips) and applying them, so a
sample's augmentation can be recomputed exactly from its parameters (distributed batch-level pruners
re-gather kept candidates on another rank).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

AUGMENTS = ("crop+flip", "crop", "flip", "none")


@dataclass(frozen=True)
class AugParams:
    """Per-sample parameters: crop offsets in ``[0, 2*padding]`` and flip flags (``None`` when unused)."""

    dy: torch.Tensor | None
    dx: torch.Tensor | None
    flip: torch.Tensor | None

    def __getitem__(self, sel) -> AugParams:
        return AugParams(*(None if t is None else t[sel] for t in (self.dy, self.dx, self.flip)))

    @staticmethod
    def cat(parts: list[AugParams]) -> AugParams:
        return AugParams(
            *(
                None if getattr(parts[0], k) is None else torch.cat([getattr(p, k) for p in parts])
                for k in ("dy", "dx", "flip")
            )
        )


def draw_params(b: int, mode: str, padding: int, generator: torch.Generator, device: torch.device) -> AugParams:
    dy = dx = flip = None
    if mode in ("crop+flip", "crop") and padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=device, generator=generator)
    if mode in ("crop+flip", "flip"):
        flip = torch.rand(b, device=device, generator=generator) < 0.5
    return AugParams(dy, dx, flip)


def apply_params(x: torch.Tensor, p: AugParams, padding: int) -> torch.Tensor:
    """Zero-padded crop back to the input size (torchvision's ``RandomCrop(size, padding)``), then
    horizontal flips, as two ``gather`` calls (rows, then columns with the flip folded into the column
    index): no per-sample loop, and 2.5x faster on the CPU than one 4-D advanced index."""
    b, c, h, w = x.shape
    if p.dy is not None and p.dx is not None:  # drawn together (draw_params)
        x = F.pad(x, (padding, padding, padding, padding))
        rows = p.dy[:, None] + torch.arange(h, device=x.device)
        x = torch.gather(x, 2, rows[:, None, :, None].expand(b, c, h, x.shape[3]))
        cols = p.dx[:, None] + torch.arange(w, device=x.device)
    elif p.flip is not None:
        cols = torch.arange(w, device=x.device).expand(b, w)
    else:
        return x
    if p.flip is not None:
        cols = torch.where(p.flip[:, None], cols.flip(-1), cols)
    return torch.gather(x, 3, cols[:, None, None, :].expand(b, c, h, w))


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-padded random crop, one independent offset per image."""
    return apply_params(x, draw_params(x.shape[0], "crop", padding, generator, x.device), padding)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Horizontal flip of each image with probability 1/2."""
    return apply_params(x, draw_params(x.shape[0], "flip", 0, generator, x.device), 0)


def augment_batch(x: torch.Tensor, mode: str, padding: int, generator: torch.Generator) -> torch.Tensor:
    return apply_params(x, draw_params(x.shape[0], mode, padding, generator, x.device), padding)
