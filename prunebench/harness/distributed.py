"""PyTorch DDP under ``torchrun``: one global plan, equal-length shards, global pruner state.

Launch: ``torchrun --nproc_per_node=K -m prunebench run ...`` (NCCL on GPUs, gloo on CPU).

* Every rank holds the same pruner (same seeded generator, same observed losses), so every rank computes
  the same global plan; nothing is broadcast per epoch.
* Each global batch of ``batch_size`` samples is split into ``K`` contiguous, equal-length shards. A
  last global batch whose size is not a multiple of ``K`` is padded with copies of its first sample
  carrying loss weight 0: padding costs a few forward-backward passes but changes neither the gradient,
  nor the scores, nor the counted cost. So each rank takes the same number of steps and the plan is
  never truncated.
* Per-rank losses are ``sum(w_i l_i) / m * K`` (``m`` real samples in the global batch); DDP averages
  gradients over ``K``, so the update equals the single-process one on the whole global batch.
* After each step, ``(index, loss)`` of all ranks are all-gathered and every rank's pruner observes the
  whole global batch, in global order. Batch-granularity pruners see the all-gathered candidate batch.
* Cost counters, usage counts and Jaccard are computed from the gathered global batches (identical on
  every rank); evaluation is sharded and the counts are all-reduced; only rank 0 logs to MLflow and
  writes checkpoints. Static methods score on rank 0 and the pruner's state is broadcast.
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from prunebench.errors import ConfigError
from prunebench.harness.augment import AugParams


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run, and the few operations where DDP and one process differ: the
    rest of the loop calls these and does not branch on DDP (in one process each is the identity)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The module the step calls: DDP around ``model`` (which keeps its own parameters) under torchrun."""
        if not self.enabled:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def batch_loss(self, losses: torch.Tensor, w: torch.Tensor | None, m: int) -> torch.Tensor:
        """The loss to backpropagate: the (weighted) mean; under DDP this rank's share of the global
        weighted mean over the ``m`` real samples (DDP averages gradients over the ranks)."""
        if self.enabled:
            return (losses * w).sum() * (self.world / m)
        return (losses * w).mean() if w is not None else losses.mean()

    def gather_observed(
        self, idx: torch.Tensor, losses: torch.Tensor, real: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole global batch's real ``(indices, losses)``, in global order, on every rank."""
        if not self.enabled:
            return idx, losses
        keep = all_gather_cat(real)
        return all_gather_cat(idx)[keep], all_gather_cat(losses)[keep]

    def gather_candidates(
        self, y: torch.Tensor, logits: torch.Tensor, losses: torch.Tensor, real: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The global candidate batch's ``(targets, logits, losses)`` on every rank."""
        if not self.enabled:
            return y, logits, losses
        keep = all_gather_cat(real)
        return all_gather_cat(y)[keep], all_gather_cat(logits.float())[keep], all_gather_cat(losses)[keep]

    def pad_shard(self, idx: torch.Tensor, w: torch.Tensor, params: AugParams | None):
        """Pad a global batch to a multiple of the world size (copies of its first sample, weight 0) and
        return this rank's shard: ``(idx, w, real, params)``."""
        m = idx.numel()
        pad = pad_to_multiple(m, self.world) - m
        real = torch.ones(m, dtype=torch.bool, device=idx.device)
        if pad:
            fill = torch.zeros(pad, dtype=torch.long, device=idx.device)
            idx = torch.cat([idx, idx[fill]])
            w = torch.cat([w, torch.zeros(pad, dtype=w.dtype, device=w.device)])
            real = torch.cat([real, torch.zeros(pad, dtype=torch.bool, device=idx.device)])
            params = AugParams.cat([params, params[fill]]) if params is not None else None
        size = idx.numel() // self.world
        local = params[self.rank * size : (self.rank + 1) * size] if params is not None else None
        return shard(idx, self), shard(w, self), shard(real, self), local

    def steps_equal(self, local_steps: int, device: torch.device) -> bool:
        """Whether every rank took the same number of backward passes."""
        if not self.enabled:
            return True
        steps = all_gather_cat(torch.tensor([local_steps], device=device))
        return bool((steps == steps[0]).all())

    def share(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        return broadcast_object(obj) if self.enabled else obj


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (idempotent)."""
    world = env_world_size()
    if world <= 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local)
        # static scoring runs on rank 0 while the others wait: allow long waits
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(hours=4))
        # torn down before the interpreter exits: a process group left to the C++ destructors could abort
        # a rank at exit ("terminate called without an active exception", SIGABRT) after a finished run
        atexit.register(_destroy_process_group)
    return DistInfo(rank=rank, world=world, local_rank=local)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shaped tensors of every rank, in rank order."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def check_batch_size(batch_size: int, info: DistInfo) -> None:
    if info.enabled and batch_size % info.world:
        raise ConfigError(
            f"batch_size={batch_size} is the global batch and must be divisible by the {info.world} processes; "
            f"valid: a multiple of {info.world}"
        )


def pad_to_multiple(n: int, k: int) -> int:
    return -(-n // k) * k


def shard(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This rank's contiguous, equal-length slice of a tensor whose length is a multiple of ``world``."""
    size = t.shape[0] // info.world
    return t[info.rank * size : (info.rank + 1) * size]


def resolve_device(device: str) -> torch.device:
    """The device named by a config (``auto``: CUDA when available, else CPU)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; valid here: auto, cpu")
    return torch.device(device)
