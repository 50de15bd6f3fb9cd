"""A deterministic, resumable stream of *global* micro-batches, for any rows and any collator.

Every process builds the same global micro-batch and trains on its own rows of it
(:func:`shard_rows`). So one process and N processes see exactly the same data, a collator's
randomness never depends on the number of processes, and the data position is one counter: the
number of global micro-batches consumed. Resume sets it and the stream continues exactly there.

Which examples form micro-batch ``p`` is a sampler's job (``sampler.batch(p) -> indices``):
:class:`PermutationSampler` (a fresh permutation per epoch) here; sorted batching (LongAlign) is
another sampler with the same method. The collator is any function
``collate(examples, position) -> dict of tensors``; ``position`` lets it draw randomness from
(seed, position) only, as blank infilling does.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

Collate = Callable[[list[Any], int], dict[str, Any]]


class BatchSampler(Protocol):
    def batch(self, position: int) -> list[int]:
        """Indices of the examples of global micro-batch ``position``."""


class PermutationSampler:
    """Micro-batch ``p`` holds elements ``p*B .. (p+1)*B - 1`` of an endless sequence that visits
    every example once per epoch, in a permutation drawn from ``(seed, epoch)``."""

    def __init__(self, num_examples: int, batch_size: int, seed: int):
        if num_examples < 1:
            raise ValueError("PermutationSampler needs at least one example")
        self.n, self.batch_size, self.seed = num_examples, batch_size, seed
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perm

    def batch(self, position: int) -> list[int]:
        out = []
        for element in range(position * self.batch_size, (position + 1) * self.batch_size):
            epoch, offset = divmod(element, self.n)
            out.append(int(self._permutation(epoch)[offset]))
        return out


class PhasedSampler:
    """Micro-batches ``0 .. first_batches - 1`` drawn from the examples ``subset`` only (a curriculum's
    first phase), the later ones from ``rest``; a pure function of the position, like every sampler
    here, so a resumed run draws the same batches."""

    def __init__(self, subset: Sequence[int], first_batches: int, batch_size: int, seed: int, rest: "PermutationSampler"):
        self.subset, self.first_batches, self.rest = list(subset), first_batches, rest
        self.first = PermutationSampler(len(self.subset), batch_size, seed)

    def batch(self, position: int) -> list[int]:
        if position < self.first_batches:
            return [self.subset[i] for i in self.first.batch(position)]
        return self.rest.batch(position - self.first_batches)


class GlobalBatchStream(IterableDataset):
    """Endless collated global micro-batches from ``start``: ``collate([examples[i] for i in
    sampler.batch(p)], p)`` for p = start, start + 1, ... Use with ``DataLoader(stream,
    batch_size=None, num_workers=0 or 1)``; a worker collates ahead without changing the order."""

    def __init__(self, examples: Sequence[Any], sampler: BatchSampler, collate: Collate, start: int = 0):
        self.examples, self.sampler, self.collate, self.start = examples, sampler, collate, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        position = self.start
        while True:
            yield self.collate([self.examples[i] for i in self.sampler.batch(position)], position)
            position += 1


def shard_rows(batch: Mapping[str, Any], rank: int, world_size: int,
               ignore: Mapping[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """This process's rows of a global batch (rows ``rank::world_size``), tensors only.

    A process left without a row (fewer rows than processes) gets row 0 with every key of ``ignore``
    filled with its value (``{"shift_labels": -100}``), so it still joins the collective backward
    and adds nothing to the loss.
    """
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    rows = next(iter(tensors.values())).shape[0]
    if world_size == 1:
        return tensors
    if rank < rows:
        return {k: v[rank::world_size] for k, v in tensors.items()}
    local = {k: v[:1].clone() for k, v in tensors.items()}
    for key, value in (ignore or {}).items():
        if key in local:
            local[key].fill_(value)
    return local
