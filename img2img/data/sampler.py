"""The seeded sampler that makes a dataset's order and augmentation reproducible: an epoch's order
and per-item seeds depend only on (seed, epoch), so a resumed run sees exactly the samples an
uninterrupted one would, and class-balanced epochs for labelled data."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["SeededSampler", "child_seeds"]


def child_seeds(seed: int, n: int, *more: int) -> list[int]:
    """`n` well-mixed 32-bit seeds derived from `seed` (and `more` integers, e.g. the epoch)."""
    entropy = [int(v) % 2**64 for v in (seed, *more)]
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(n)]


class SeededSampler(Sampler):
    """Yields `(index, sample_seed)` for one epoch; order and seeds depend only on (seed, epoch).

    `set_epoch(epoch, skip)` picks the epoch and drops its first `skip` items without touching
    them, so a run resumed mid-epoch sees exactly the samples it would have seen.

    With `labels` (one class index per item) an epoch is class-balanced: its `length` draws are
    split evenly between the classes (counts differ by at most one), small classes repeat their
    items and large ones contribute a fresh random subset each epoch.

    Sharded (`world` > 1 processes, `batch_size` each): the epoch's one seeded order is cut into
    global steps of `world * batch_size` items and process `rank` takes its `batch_size` slice of
    each, so shares are disjoint, every process runs the same number of steps, and an item is
    augmented with the same seed whatever the process count. Only the items of a last, uneven
    global step are left out. `skip` counts items of the whole epoch (all processes).
    """

    def __init__(self, length: int, seed: int, shuffle: bool = True,
                 labels: Sequence[int] | None = None, *, rank: int = 0, world: int = 1,
                 batch_size: int = 1) -> None:
        if length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not one of {world} processes")
        self.rank, self.world, self.batch_size = rank, world, batch_size
        self.length, self.seed, self.shuffle = length, int(seed), shuffle
        self.epoch, self.skip = 0, 0
        self.classes: list[torch.Tensor] | None = None
        if labels is not None:
            if len(labels) != length:
                raise ValueError(f"got {len(labels)} labels for {length} items")
            by_class: dict[int, list[int]] = {}
            for index, label in enumerate(labels):
                by_class.setdefault(int(label), []).append(index)
            self.classes = [torch.tensor(by_class[c]) for c in sorted(by_class)]

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if not 0 <= skip <= self.length:
            raise ValueError(f"skip must be between 0 and {self.length}, got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    @property
    def used(self) -> int:
        """Items of an epoch that some process reads: all alone, whole global steps sharded."""
        if self.world == 1:
            return self.length
        step = self.world * self.batch_size
        return self.length // step * step

    def _mine(self, position: int) -> bool:
        return self.world == 1 or position % (self.world * self.batch_size) // self.batch_size \
            == self.rank

    def __len__(self) -> int:
        if self.world == 1:
            return self.used - self.skip
        # Whole global steps only, and `skip` is always a multiple of one: b items per step.
        return (self.used - self.skip) // self.world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator()
        high, low = child_seeds(self.seed, 2, self.epoch)
        generator.manual_seed(high << 32 | low)
        if self.classes is not None:
            order = self._balanced_order(generator)
        elif self.shuffle:
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        # Seeds follow the position in the epoch, drawn after the permutation from the same stream.
        seeds = torch.randint(0, 2**62, (self.length,), generator=generator).tolist()
        for position in range(self.skip, self.used):
            if self._mine(position):
                yield order[position], seeds[position]

    def _balanced_order(self, generator: torch.Generator) -> list[int]:
        assert self.classes is not None
        count = len(self.classes)
        quota = torch.full((count,), self.length // count)
        quota[torch.randperm(count, generator=generator)[: self.length % count]] += 1
        picks = []
        for members, wanted in zip(self.classes, quota.tolist()):
            rounds = -(-wanted // len(members))
            shuffled = [members[torch.randperm(len(members), generator=generator)]
                        for _ in range(rounds)]
            picks.append(torch.cat(shuffled)[:wanted])
        order = torch.cat(picks)
        if self.shuffle:
            order = order[torch.randperm(len(order), generator=generator)]
        return order.tolist()
