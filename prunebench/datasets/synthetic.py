"""``synthetic``: small generated image data (class prototypes plus noise) for tests and smoke runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prunebench.datasets.base import TensorData, register_dataset, tensor_data_from_arrays
from prunebench.errors import ConfigError

DEFAULTS = {"n": 512, "test": 256, "classes": 4, "size": 8, "channels": 1, "noise": 60.0, "seed": 0}


def parse_args(arg: str | None) -> dict[str, float]:
    out = dict(DEFAULTS)
    if not arg:
        return out
    for part in arg.split(","):
        k, sep, v = part.partition("=")
        k = k.strip()
        if not sep or k not in DEFAULTS:
            raise ConfigError(
                f"synthetic: bad argument {part!r}; valid: synthetic:k=v,... with keys {', '.join(DEFAULTS)}"
            )
        try:
            out[k] = type(DEFAULTS[k])(float(v)) if isinstance(DEFAULTS[k], int) else float(v)
        except ValueError:
            raise ConfigError(f"synthetic: {k} must be a number, got {v!r}") from None
    if out["n"] < out["classes"] or out["classes"] < 2 or out["size"] < 4 or out["channels"] not in (1, 3):
        raise ConfigError("synthetic: need n >= classes >= 2, size >= 4, channels 1 or 3")
    return out


@register_dataset(
    "synthetic",
    "generated class prototypes + Gaussian noise (default 512 train / 256 test, 1x8x8, 4 classes); "
    "synthetic:n=..,test=..,classes=..,size=..,channels=..,noise=..,seed=..",
    arg="k=v,...",
)
def load_synthetic(root: Path, *, download: bool, arg: str | None, image_size: int | None) -> TensorData:
    a = parse_args(arg)
    rng = np.random.default_rng(int(a["seed"]))
    k, c, s = int(a["classes"]), int(a["channels"]), int(a["size"])
    protos = rng.uniform(40, 215, size=(k, c, s, s))

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % k
        rng.shuffle(y)
        x = protos[y] + rng.normal(0, a["noise"], size=(n, c, s, s))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    xtr, ytr = make(int(a["n"]))
    xte, yte = make(int(a["test"]))
    key = "synthetic-" + "-".join(f"{kk}{a[kk]:g}" for kk in DEFAULTS)
    return tensor_data_from_arrays(
        "synthetic",
        xtr,
        ytr,
        xte,
        yte,
        num_classes=k,
        where="synthetic",
        channels_last_input=False,
        augment="none",
        key=key,
        default_epochs=8,
        source="generated",
    )
