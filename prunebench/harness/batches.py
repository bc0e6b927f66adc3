"""Batches: where a run's inputs come from, decided once per run by :func:`make_batches`.

* :class:`TensorBatches` (digits, CIFAR, synthetic): the whole dataset lives on the device as one uint8
  tensor; a batch is an index gather plus batched on-device augmentation from the run's generator.
* :class:`FolderBatches` (image folders): a DataLoader whose sampler yields the epoch's plan; the
  dataset's transform augments.

Both offer the same interface; every batch they yield is on the device and normalised. Under DDP
(:mod:`prunebench.harness.distributed`) they yield this rank's shard of each global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

from prunebench.datasets import FolderData, TensorData
from prunebench.harness.augment import apply_params, augment_batch, draw_params
from prunebench.harness.distributed import DistInfo


class Batch(NamedTuple):
    """One backprop batch: this rank's ``idx``, inputs ``x``, targets ``y``, loss weights ``w`` (None:
    unweighted); under DDP ``real`` marks the samples that are not padding and ``m`` counts the global
    batch's real samples; ``w_seen`` are the weights of the samples the pruner observes (the global batch)."""

    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor | None
    real: torch.Tensor | None
    m: int
    w_seen: torch.Tensor | None


class Normalize:
    """``(x / 255 - mean) / std`` as one fused multiply-add; the layout change happens on the 1-byte input."""

    def __init__(self, mean, std, device: torch.device, channels_last: bool) -> None:
        mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / std, -mean / std
        self.scale_u8 = self.scale / 255.0
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        scale = self.scale_u8 if x.dtype == torch.uint8 else self.scale
        return torch.addcmul(self.shift, x.float(), scale)


@dataclass
class _Source:
    data: TensorData | FolderData
    device: torch.device
    normalize: Normalize
    dist: DistInfo
    num_workers: int

    def batches(self, indices: torch.Tensor, weights: torch.Tensor | None, chunk: int) -> Iterator[Batch]:
        """The epoch's backprop batches of ``chunk`` samples (under DDP: global batches, sharded)."""
        if self.dist.enabled:
            yield from self._sharded(indices, weights, chunk)
            return
        w_dev = weights.to(self.device, non_blocking=True) if weights is not None else None
        for i, (idx, x, y) in enumerate(self.train(indices, chunk)):
            w = w_dev[i * chunk : i * chunk + idx.numel()] if w_dev is not None else None
            yield Batch(idx, x, y, w, None, 0, w)

    def _loader(self, dataset, chunk: int, **kw) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset, batch_size=chunk, num_workers=self.num_workers, pin_memory=self.device.type == "cuda", **kw
        )


class TensorBatches(_Source):
    def __init__(
        self,
        data: TensorData,
        device: torch.device,
        normalize: Normalize,
        dist: DistInfo,
        num_workers: int,
        augment: str,
        crop_padding: int,
        aug_gen: torch.Generator,
    ) -> None:
        super().__init__(data, device, normalize, dist, num_workers)
        self.augment, self.crop_padding, self.aug_gen = augment, crop_padding, aug_gen
        self.x_train, self.y_train = data.x_train.to(device), data.y_train.to(device)

    def train(self, indices: torch.Tensor, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(indices, normalised augmented inputs, labels)`` for ``indices`` in chunks."""
        idx_all = indices.to(self.device, non_blocking=True)
        for s in range(0, idx_all.numel(), chunk):
            idx = idx_all[s : s + chunk]
            x = augment_batch(self.x_train[idx], self.augment, self.crop_padding, self.aug_gen)
            yield idx, self.normalize(x), self.y_train[idx]

    def candidates(self, indices: torch.Tensor, chunk: int):
        """Candidate batches ``(global idx, x, y, aug params, real)``; under DDP ``x, y`` are this rank's
        shard and ``params`` let the kept samples be re-gathered with the same augmentation."""
        if not self.dist.enabled:
            for idx, x, y in self.train(indices, chunk):
                yield idx, x, y, None, None
            return
        idx_all = indices.to(self.device)
        for s in range(0, idx_all.numel(), chunk):
            g_idx = idx_all[s : s + chunk]
            params = draw_params(g_idx.numel(), self.augment, self.crop_padding, self.aug_gen, self.device)
            l_idx, _, real, l_p = self.dist.pad_shard(g_idx, torch.ones(g_idx.numel(), device=self.device), params)
            x, y = self._shard_inputs(l_idx, l_p)
            yield g_idx, x, y, params, real

    def kept(self, x, y, idx, w, params, weighted: bool) -> Batch:
        """The backprop batch of kept candidates (under DDP re-gathered from their indices and params)."""
        if not self.dist.enabled:
            return Batch(idx, x, y, w if weighted else None, None, 0, w)
        l_idx, l_w, real, l_p = self.dist.pad_shard(idx, w, params)
        lx, ly = self._shard_inputs(l_idx, l_p)
        return Batch(l_idx, lx, ly, l_w if weighted else (l_w > 0).float(), real, idx.numel(), w)

    def plain(self, indices: torch.Tensor, weights: torch.Tensor, chunk: int):
        """Un-augmented ``(x, y, w)`` in balanced chunks of at most ``chunk``: never a trailing batch of one."""
        parts = max(1, math.ceil(indices.numel() / chunk))
        for ic, wc in zip(torch.tensor_split(indices, parts), torch.tensor_split(weights, parts)):
            idx = ic.to(self.device)
            yield self.normalize(self.x_train[idx]), self.y_train[idx], wc.to(self.device)

    def in_order(self, chunk: int) -> Iterator[torch.Tensor]:
        """Every training input, un-augmented and normalised, in index order."""
        for s in range(0, self.x_train.shape[0], chunk):
            yield self.normalize(self.x_train[s : s + chunk])

    def test(self, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised test batches (under DDP each rank a strided shard)."""
        x_all, y_all = self.data.x_test, self.data.y_test
        if self.dist.enabled:
            x_all, y_all = x_all[self.dist.rank :: self.dist.world], y_all[self.dist.rank :: self.dist.world]
        for s in range(0, y_all.numel(), chunk):
            yield self.normalize(x_all[s : s + chunk].to(self.device)), y_all[s : s + chunk].to(self.device)

    def _shard_inputs(self, idx: torch.Tensor, params) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x_train[idx]
        if params is not None:
            x = apply_params(x, params, self.crop_padding)
        return self.normalize(x), self.y_train[idx]

    def _sharded(self, indices: torch.Tensor, weights: torch.Tensor | None, chunk: int) -> Iterator[Batch]:
        w_all = weights if weights is not None else torch.ones(indices.numel())
        idx_all, w_all = indices.to(self.device), w_all.to(self.device).float()
        w_seen = weights.to(self.device) if weights is not None else None
        for s in range(0, idx_all.numel(), chunk):
            g_idx, g_w = idx_all[s : s + chunk], w_all[s : s + chunk]
            params = draw_params(g_idx.numel(), self.augment, self.crop_padding, self.aug_gen, self.device)
            idx, w, real, p = self.dist.pad_shard(g_idx, g_w, params)
            x, y = self._shard_inputs(idx, p)
            yield Batch(idx, x, y, w, real, g_idx.numel(), w_seen[s : s + chunk] if w_seen is not None else None)


class FolderBatches(_Source):
    augment = "folder"
    crop_padding = 0

    def __init__(
        self, data: FolderData, device: torch.device, normalize: Normalize, dist: DistInfo, num_workers: int
    ) -> None:
        super().__init__(data, device, normalize, dist, num_workers)
        self.sampler = PlannedSampler()

    def train(self, indices: torch.Tensor, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        self.sampler.set_indices(indices)
        for idx, x, y in self._loader(self.data.train, chunk, sampler=self.sampler, drop_last=False):
            yield (
                idx.to(self.device, non_blocking=True),
                self.normalize(x.to(self.device, non_blocking=True)),
                y.to(self.device, non_blocking=True),
            )

    def plain(self, indices: torch.Tensor, weights: torch.Tensor, chunk: int):
        w_of = torch.zeros(self.data.num_train, device=self.device)
        w_of[indices.to(self.device)] = weights.to(self.device)
        for idx, x, y in self.train(indices, chunk):
            yield x, y, w_of[idx]

    def in_order(self, chunk: int) -> Iterator[torch.Tensor]:
        """Every training input through the training transform, in index order."""
        for _, x, _ in torch.utils.data.DataLoader(
            self.data.train, batch_size=chunk, shuffle=False, num_workers=self.num_workers
        ):
            yield self.normalize(x.to(self.device))

    def test(self, chunk: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        test = self.data.test
        if self.dist.enabled:
            test = torch.utils.data.Subset(test, range(self.dist.rank, len(test), self.dist.world))
        for _, x, y in self._loader(test, chunk):
            yield self.normalize(x.to(self.device)), y.to(self.device)

    def _sharded(self, indices: torch.Tensor, weights: torch.Tensor | None, chunk: int) -> Iterator[Batch]:
        # the sampler yields this rank's shards; its batches align with the global batches
        w_all = weights if weights is not None else torch.ones(indices.numel())
        local, lw, lreal, sizes = [], [], [], []
        for s in range(0, indices.numel(), chunk):
            idx, w, real, _ = self.dist.pad_shard(indices[s : s + chunk], w_all[s : s + chunk].float(), None)
            local.append(idx), lw.append(w), lreal.append(real), sizes.append(min(chunk, indices.numel() - s))
        w_seen = weights.to(self.device) if weights is not None else None
        batches = self.train(torch.cat(local), chunk // self.dist.world)
        for i, ((idx, x, y), w, real, m) in enumerate(zip(batches, lw, lreal, sizes)):
            seen = w_seen[i * chunk : i * chunk + m] if w_seen is not None else None
            yield Batch(idx, x, y, w.to(self.device), real.to(self.device), m, seen)


class PlannedSampler(torch.utils.data.Sampler):
    """Yields the current epoch's planned indices (folder datasets)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def set_indices(self, indices: torch.Tensor) -> None:
        self.indices = indices.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_batches(
    data: TensorData | FolderData,
    device: torch.device,
    normalize: Normalize,
    dist: DistInfo,
    num_workers: int,
    augment: str | None,
    aug_gen: torch.Generator,
) -> TensorBatches | FolderBatches:
    """The run's batch source; ``augment`` overrides the dataset's default (tensor data only)."""
    if isinstance(data, TensorData):
        aug = augment or data.augment
        padding = getattr(data, "crop_padding", 0) or (4 if aug in ("crop", "crop+flip") else 0)
        return TensorBatches(data, device, normalize, dist, num_workers, aug, padding, aug_gen)
    return FolderBatches(data, device, normalize, dist, num_workers)
