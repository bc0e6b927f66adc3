"""Per-component seeds derived from one run seed (benchopt/airbench style).

Every random component (model init, data order, augmentation, pruning) gets its own generator seeded
from ``derive_seed(run_seed, component)``; nothing reseeds or reads the global RNG.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch


def derive_seed(seed: int, component: str) -> int:
    """A 63-bit seed for ``component`` that is a pure function of ``(seed, component)``."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32, zlib.crc32(component.encode())])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array([1, 1 << 32], dtype=np.uint64)) & (
        (1 << 63) - 1
    )


def make_generator(seed: int, component: str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded for ``component``."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, component))
    return g
