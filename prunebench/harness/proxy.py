"""The shared proxy-scoring phase of static (coreset) methods.

A static pruner asks for a :class:`~prunebench.pruners.ProxyRequest` (epochs, proxy seeds, model); the
:class:`ProxyRunner` trains that proxy on the full training set with the *same* :class:`Trainer` and
recipe as the run (pruner ``full``, tracking off), while a step observer records, for every sample at
every presentation, whether the training forward pass classified it correctly, its softmax margin
``p_y - max_{c != y} p_c`` and (on request) its softmax output. After the last epoch one no-grad pass in
eval mode over the un-augmented training set records the softmax outputs and the penultimate
embeddings (the input of :func:`~prunebench.harness.models.classifier_head`).

Two requests go further (in the cache key only when used: plain requests keep their keys): ``train_on``
trains the proxy on those indices only, through the ``from-indices`` pruner (RHO-LOSS's holdout; the final
pass still covers every sample); the ``deepfool_norm`` record runs DeepFool against the trained proxy
(:mod:`prunebench.harness.deepfool`), its passes counted in ``samples_forward`` as forward equivalents.

Records of one proxy seed are cached on disk, keyed by the dataset, the proxy model, the recipe, the run
seed, the proxy seed and the code version; every static method with the same proxy recipe reuses them.
The runner totals the proxy's cost (wall-clock, sample-visits) so the run row reports it beside the
training cost, including on a cache hit (the cost of the run that produced the records), and the wall
time the run itself spent in the runner (``proxy_wall_s``: training, or reading the cache), which the
cost model replaces by the original time (see :mod:`prunebench.reports.stats`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prunebench.errors import ConfigError
from prunebench.harness.checkpoint import atomic_write
from prunebench.harness.code_digest import code_version
from prunebench.harness.config import TrainConfig
from prunebench.harness.cost import sync
from prunebench.harness.deepfool import deepfool_norms
from prunebench.harness.evaluate import final_pass
from prunebench.harness.models import classifier_head
from prunebench.pruners.base import ProxyRequest, PruneContext
from prunebench.pruners.scores import prob_margin
from prunebench.safety import npy_bytes
from prunebench.seeding import derive_seed

log = logging.getLogger("prunebench.proxy")
#: ``f(config, data) -> trainer``: builds the single-process trainer of a proxy run (handed in by the loop)
TrainerFactory = Callable[[TrainConfig, Any], Any]

#: what a proxy run can record; all but ``train_probs`` ([E, N, C], large) are always recorded
RECORDS = ("correct", "margin", "probs", "embeddings", "train_probs", "deepfool_norm")
_ALWAYS = ("correct", "margin", "probs", "embeddings")
#: config fields that change what the proxy computes (part of the cache key)
_RECIPE_FIELDS = (
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "warmup",
    "label_smoothing",
    "augment",
    "precision",
    "channels_last",
    "compile",
    "image_size",
)


def default_cache_dir() -> Path:
    return Path("~/.cache/prunebench/scores").expanduser()


class ProxyRunner:
    """Callable ``ProxyRequest -> records`` handed to static pruners through :class:`PruneContext`.

    Records (torch tensors, one leading axis over the requested proxy seeds): ``correct`` bool [S, E, N],
    ``margin`` [S, E, N], ``probs`` [S, N, C] and ``embeddings`` [S, N, d] after the last epoch,
    ``train_probs`` [S, E, N, C] when requested; plus ``label_smoothing`` and ``head_bias`` (scalars).
    """

    def __init__(
        self, config: TrainConfig, data, device: torch.device, cache_dir: Path | None, trainer: TrainerFactory
    ) -> None:
        self.config = config
        self.trainer = trainer
        self.data = data
        self.device = device
        self.cache_dir = cache_dir
        self.samples_backprop = 0
        self.samples_forward = 0
        self.proxy_time_s = 0.0  # the proxy runs' own training time (a cache hit: the time of the run that made it)
        self.wall_s = 0.0  # wall time this run spent here (training proxies, or reading their records)
        self.proxy_acc: list[float] = []
        self.hits = 0
        self.misses = 0
        self.base_key = json.dumps(
            {
                "dataset": getattr(data, "key", "") or config.dataset,
                "run_seed": config.seed,
                "recipe": {k: getattr(config, k) for k in _RECIPE_FIELDS},
                "device": device.type,
                "code": code_version(),
            },
            sort_keys=True,
        )

    # -- the request ------------------------------------------------------------------------------------
    def __call__(self, request: ProxyRequest) -> dict[str, Any]:
        if isinstance(request.epochs, bool) or not isinstance(request.epochs, int) or request.epochs < 1:
            raise ConfigError(f"proxy: epochs must be a positive integer, got {request.epochs!r}")
        if not request.seeds or any(not isinstance(s, int) or s < 0 for s in request.seeds):
            raise ConfigError(f"proxy: seeds must be non-negative integers, got {request.seeds!r}")
        bad = [r for r in request.record if r not in RECORDS]
        if bad:
            raise ConfigError(f"proxy: cannot record {bad[0]!r}; valid: {', '.join(RECORDS)}")
        it = request.deepfool_max_iter
        if isinstance(it, bool) or not isinstance(it, int) or it < 1:
            raise ConfigError(f"proxy: deepfool_max_iter must be a positive integer, got {it!r}")
        train_on = self._check_train_on(request.train_on)
        model = request.model or self.config.model
        with_tp = "train_probs" in request.record
        extra: dict[str, Any] = {}
        if train_on is not None:
            extra["train_on"] = request.train_on_digest()
        if "deepfool_norm" in request.record:
            extra["deepfool_max_iter"] = it
        t0 = time.perf_counter()
        per_seed = [self._one(model, request.epochs, s, with_tp, extra, train_on) for s in request.seeds]
        self.wall_s += time.perf_counter() - t0
        out: dict[str, Any] = {
            k: torch.stack([torch.from_numpy(r[k]) for r in per_seed])
            for k in per_seed[0]
            if k not in ("label_smoothing", "head_bias")
        }
        out["label_smoothing"] = float(self.config.label_smoothing)
        out["head_bias"] = bool(per_seed[0]["head_bias"])
        return out

    def _check_train_on(self, train_on: torch.Tensor | None) -> np.ndarray | None:
        if train_on is None:
            return None
        n, idx = int(self.data.num_train), train_on.detach().cpu()
        if (
            idx.dim() != 1
            or idx.numel() == 0
            or idx.dtype not in (torch.int64, torch.int32)
            or int(idx.min()) < 0
            or int(idx.max()) >= n
            or torch.unique(idx).numel() != idx.numel()
        ):
            raise ConfigError(f"proxy: train_on must be a non-empty 1-D tensor of unique indices in [0, {n})")
        return np.sort(idx.numpy().astype(np.int64))

    def report(self) -> dict[str, Any]:
        """Cost of the proxy runs the scores came from (``cache_hit`` only once a request was made)."""
        out: dict[str, Any] = {
            "samples_backprop": self.samples_backprop,
            "samples_forward": self.samples_forward,
            "proxy_time_s": self.proxy_time_s,
            "proxy_wall_s": self.wall_s,
        }
        if self.hits or self.misses:
            out["cache_hit"] = self.misses == 0
            out["proxy_runs"] = self.misses
            out["proxy_acc"] = float(np.mean(self.proxy_acc)) if self.proxy_acc else float("nan")
        return out

    # -- one proxy seed, cached ---------------------------------------------------------------------------
    def _key(
        self, model: str, epochs: int, seed: int, with_tp: bool, extra: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        """The cache key; ``extra`` (``train_on``'s digest, ``deepfool_max_iter``) joins it only when not empty,
        so the keys of plain requests never change."""
        key = {
            "base": json.loads(self.base_key),
            "model": model,
            "epochs": epochs,
            "proxy_seed": seed,
            "train_probs": with_tp,
            **(extra or {}),
        }
        full = json.dumps(key, sort_keys=True)
        return hashlib.sha256(full.encode()).hexdigest()[:24], full

    def _one(
        self,
        model: str,
        epochs: int,
        seed: int,
        with_tp: bool,
        extra: dict[str, Any] | None = None,
        train_on: np.ndarray | None = None,
    ) -> dict[str, Any]:
        extra = extra or {}
        digest, full_key = self._key(model, epochs, seed, with_tp, extra)
        path = self.cache_dir / f"proxy-{digest}.npz" if self.cache_dir is not None else None
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    rec = {k: z[k] for k in z.files}
                meta = json.loads(str(rec.pop("meta")))
            except Exception as e:  # a truncated or foreign file: recompute and overwrite
                log.warning("proxy cache %s unreadable (%s); recomputing", path, type(e).__name__)
            else:
                self.hits += 1
                self._add_cost(meta)
                log.info("proxy records reused from cache %s (%s, %d epochs, proxy seed %d)", path, model, epochs, seed)
                rec["head_bias"] = meta["head_bias"]
                return rec
        rec, meta = self._train(model, epochs, seed, with_tp, train_on, extra.get("deepfool_max_iter"))
        self.misses += 1
        self._add_cost(meta)
        if path is not None:
            self._save(path, rec, {**meta, "key": json.loads(full_key)})
        rec["head_bias"] = meta["head_bias"]
        return rec

    def _add_cost(self, meta: dict[str, Any]) -> None:
        self.samples_backprop += int(meta["samples_backprop"])
        self.samples_forward += int(meta["samples_forward"])
        self.proxy_time_s += float(meta["time_s"])
        self.proxy_acc.append(float(meta.get("proxy_acc", float("nan"))))

    def _save(self, path: Path, rec: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(meta)), **rec)

        atomic_write(path, write)  # parallel runs never read a half-written file

    # -- the proxy run itself -----------------------------------------------------------------------------
    def _proxy_config(self, model: str, epochs: int, seed: int) -> TrainConfig:
        """The run's recipe for proxy seed ``seed``: full data, ``epochs`` epochs of ``model``, nothing tracked."""
        return self.config.replace(
            model=model,
            epochs=epochs,
            seed=derive_seed(self.config.seed, f"proxy/{seed}") % (2**31),
            pruner="full",
            prune_ratio=None,
            pruner_options={},
            budget="epochs",
            tracking=False,
            record_kept=False,
            eval_every=epochs,
            run_name=None,
            tags={},
            checkpoint_dir=None,
            resume=False,
            probe_epochs=(),
        )

    def _proxy_trainer(self, cfg: TrainConfig, train_on: np.ndarray | None) -> Any:
        """The proxy's trainer: on every sample, or on ``train_on`` only (through the from-indices pruner)."""
        if train_on is None:
            return self.trainer(cfg, self.data)  # the proxy runs in one process (rank 0 under DDP)
        else:  # train on the subset only: the from-indices pruner reads it (in its constructor) from a private file
            with tempfile.TemporaryDirectory(prefix="prunebench-proxy-") as d:
                path = Path(d) / "train_on.npy"
                path.write_bytes(npy_bytes(train_on))
                n_all = int(self.data.num_train)
                return self.trainer(
                    cfg.replace(
                        pruner="from-indices",
                        prune_ratio=1.0 - train_on.size / n_all,
                        pruner_options={"indices_file": str(path)},
                    ),
                    self.data,
                )

    def _train(
        self,
        model: str,
        epochs: int,
        seed: int,
        with_tp: bool,
        train_on: np.ndarray | None = None,
        deepfool_max_iter: int | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        cfg = self._proxy_config(model, epochs, seed)
        t0 = time.perf_counter()
        tr = self._proxy_trainer(cfg, train_on)
        n, c = tr.n, self.data.num_classes
        correct = torch.zeros(epochs, n, dtype=torch.bool)
        margin = torch.zeros(epochs, n)
        train_probs = torch.zeros(epochs, n, c) if with_tp else None

        def observe(idx: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, losses: torch.Tensor) -> None:
            p = torch.softmax(logits.float(), dim=1)
            i, e = idx.cpu(), tr.epoch
            correct[e, i] = (p.argmax(dim=1) == y).cpu()
            margin[e, i] = prob_margin(p, y).cpu()
            if train_probs is not None:
                train_probs[e, i] = p.cpu()

        tr.step_observers.append(observe)
        result = tr.run()
        probs, emb = final_pass(tr)
        df_forward = 0
        if deepfool_max_iter is not None:
            norms, df_forward = deepfool_norms(tr, deepfool_max_iter)
        sync(tr.device)
        dt = time.perf_counter() - t0
        rec = {"correct": correct.numpy(), "margin": margin.numpy(), "probs": probs.numpy(), "embeddings": emb.numpy()}
        if train_probs is not None:
            rec["train_probs"] = train_probs.numpy()
        if deepfool_max_iter is not None:
            rec["deepfool_norm"] = norms.numpy()
        head = classifier_head(tr.model)
        meta = {
            "samples_backprop": result.row["samples_backprop"],
            "samples_forward": result.row["samples_forward"] + n + df_forward,
            "time_s": dt,
            "proxy_acc": result.row["final_acc"],
            "head_bias": head.bias is not None,
        }
        log.info("proxy run: %s, %d epochs, proxy seed %d: %.1fs", model, epochs, seed, dt)
        return rec, meta


def resolve_cache_dir(config: TrainConfig) -> Path | None:
    if config.score_cache is None or config.score_cache.strip().lower() in ("", "off", "none"):
        return None
    return Path(config.score_cache).expanduser()


def proxy_context(
    config: TrainConfig, data, device: torch.device, trainer: TrainerFactory
) -> tuple[PruneContext, ProxyRunner]:
    """The :class:`PruneContext` of a run (labels, classes, the proxy runner, its cache) and the runner."""
    runner = ProxyRunner(config, data, device, resolve_cache_dir(config), trainer)
    ctx = PruneContext(
        labels=data.labels.cpu(),
        num_classes=data.num_classes,
        proxy=runner,
        cache_dir=runner.cache_dir,
    )
    return ctx, runner
