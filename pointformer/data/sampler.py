"""Resumable, rank-sharded batch order: a pure function of (seed, epoch), skippable to any step.

``torch.utils.data.DistributedSampler`` shuffles per (seed, epoch) too but cannot start in the middle
of an epoch; this sampler can, which is what makes ``trainer.resume`` exact after a kill mid-epoch.
Each epoch: a permutation of all scenes from ``torch.Generator`` seeded with seed + epoch, padded by
wrapping around so every rank gets the same number of scenes (as DistributedSampler does), rank r takes
positions r, r + W, r + 2W, ...; consecutive groups of ``batch_size`` form its batches (an incomplete
last batch is dropped when ``drop_last``). Every yielded batch is a list of ``(epoch, index)`` keys.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler


def epoch_permutation(num_items: int, *, seed: int, epoch: int, shuffle: bool = True) -> list[int]:
    """The scene order of ``epoch`` (identical on every rank)."""
    if not shuffle:
        return list(range(num_items))
    generator = torch.Generator()
    generator.manual_seed(int(seed) + int(epoch))
    return torch.randperm(num_items, generator=generator).tolist()


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yield this rank's batches from global step ``start_step`` onwards, epoch after epoch.

    Runs for ``num_epochs`` epochs in total (None: forever; the trainer stops at its last step).
    ``steps_per_epoch`` is the same on every rank, so ranks stay in lock step under DDP.
    """

    def __init__(self, num_items: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True, start_step: int = 0,
                 num_epochs: int | None = None) -> None:
        if num_items <= 0:
            raise ValueError("ResumableBatchSampler: the dataset is empty")
        if batch_size <= 0:
            raise ValueError(f"ResumableBatchSampler: batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"ResumableBatchSampler: rank {rank} outside world size {world_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self.start_step, self.num_epochs = start_step, num_epochs
        self.per_rank = math.ceil(num_items / world_size)
        self.steps_per_epoch = self.per_rank // batch_size if drop_last else math.ceil(self.per_rank / batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"batch size {batch_size} x {world_size} process(es) is larger than the {num_items} training "
                f"scene(s): every batch would be dropped; lower trainer.batch_size")

    def batches_of_epoch(self, epoch: int) -> list[list[tuple[int, int]]]:
        order = epoch_permutation(self.num_items, seed=self.seed, epoch=epoch, shuffle=self.shuffle)
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / self.num_items))[:total]  # wrap-around padding
        mine = order[self.rank::self.world_size]
        batches = [mine[i:i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        return [[(epoch, i) for i in b] for b in batches[: self.steps_per_epoch]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, offset = divmod(self.start_step, self.steps_per_epoch)
        while self.num_epochs is None or epoch < self.num_epochs:
            yield from self.batches_of_epoch(epoch)[offset:]
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        if self.num_epochs is None:
            raise TypeError("ResumableBatchSampler without num_epochs has no length")
        return max(0, self.num_epochs * self.steps_per_epoch - self.start_step)


class ShardedEvalSampler(Sampler[list[int]]):
    """Evaluation order: rank r takes scenes r, r + W, ... (no padding: every scene exactly once)."""

    def __init__(self, num_items: int, *, batch_size: int = 1, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_items, world_size))
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i:i + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)
