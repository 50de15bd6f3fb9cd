"""Sorted batching (LongAlign): items of similar length share a batch, the batches are shuffled.

An *item* is what one batch slot holds: an example, or a packed row (:func:`align.packing.pack_examples`).
For an epoch, :func:`sorted_batches` sorts the items by length (ties by index), cuts the sorted list
into global batches of ``batch_size`` items (the last one shorter unless ``drop_last``) and shuffles
the order of the batches with a generator seeded by ``(seed, epoch)``. The global batch list depends
only on the lengths, ``batch_size``, ``seed``, ``epoch`` and ``drop_last`` -- never on the number of
processes: each process takes its share of every global batch (items ``rank::num_processes``), so one
process and several see the same global batches, and each process can compute the global loss
normaliser (:func:`align.packing.count_loss_items`) without communicating.

:class:`SortedBatchSampler` iterates over one process's shares, epoch after epoch, and resumes from a
position: ``state_dict()`` is ``{"epoch", "batch_index"}`` (global batches already consumed this epoch);
after ``load_state_dict`` the stream continues exactly where it stopped. It is a valid
``batch_sampler`` for a ``torch.utils.data.DataLoader`` (one epoch per ``iter``); a DataLoader with
workers reads the sampler ahead of training, so a trainer should save the number of global batches it
has *trained on* this epoch as ``batch_index`` rather than the sampler's own counter.

Failure modes: ``batch_size`` must be positive and at least ``num_processes`` (else some process would
get nothing); ``process_index`` must be in ``[0, num_processes)``; with ``drop_last=False`` the last
global batch of an epoch may hold fewer items than there are processes, and then some shares are
empty -- use ``drop_last=True`` for multi-process training if that matters to the trainer.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

import numpy as np


def sorted_batches(lengths: Sequence[int], batch_size: int, seed: int = 0, epoch: int = 0,
                   drop_last: bool = False, by_length: bool = True) -> list[list[int]]:
    """The global batches of one epoch (lists of item indices) in training order.

    ``by_length=False`` is plain random batching (the baseline sorted batching is compared with):
    the items are shuffled with ``(seed, epoch)`` before they are cut into batches."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if by_length:
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    else:
        order = np.random.default_rng([int(seed), int(epoch), 1]).permutation(len(lengths)).tolist()
    batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(len(batches))
    return [batches[j] for j in perm.tolist()]


def shard(batch: Sequence[int], num_processes: int, process_index: int) -> list[int]:
    """This process's items of a global batch (strided, so shares differ in size by at most one)."""
    return list(batch[process_index::num_processes])


class SortedBatchSampler:
    """One process's shares of the sorted, shuffled global batches; resumable (see module docstring).

    Iterating yields the remaining shares of the current epoch, starting at ``batch_index``, then
    moves to the next epoch (``epoch + 1``, ``batch_index = 0``). ``len()`` is the number of global
    batches per epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, num_processes: int = 1,
                 process_index: int = 0, drop_last: bool = False, by_length: bool = True):
        if num_processes < 1 or not 0 <= process_index < num_processes:
            raise ValueError(f"process_index={process_index} is not in [0, num_processes={num_processes})")
        if batch_size < num_processes:
            raise ValueError(f"batch_size={batch_size} (global) is smaller than num_processes={num_processes}")
        if not len(lengths):
            raise ValueError("no items to batch")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.num_processes = int(num_processes)
        self.process_index = int(process_index)
        self.drop_last = bool(drop_last)
        self.by_length = bool(by_length)
        self.epoch = 0
        self.batch_index = 0

    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """Every global batch of ``epoch`` (default: the current one), in order."""
        return sorted_batches(self.lengths, self.batch_size, self.seed, self.epoch if epoch is None else epoch,
                              self.drop_last, self.by_length)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for _, share in self.iter_global():
            yield share

    def iter_global(self) -> Iterator[tuple[list[int], list[int]]]:
        """Like iterating, but yields ``(global batch, this process's share)``: the trainer takes the
        loss normaliser of the step from the global batch."""
        batches = self.global_batches()
        while self.batch_index < len(batches):
            batch = batches[self.batch_index]
            self.batch_index += 1
            yield batch, shard(batch, self.num_processes, self.process_index)
        self.epoch += 1
        self.batch_index = 0

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch, self.batch_index = int(epoch), 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_index": self.batch_index, "seed": self.seed,
                "batch_size": self.batch_size, "items": len(self.lengths)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved position. Raises ``ValueError`` if the saved sampler had another seed,
        batch size or number of items (the batches would not be the same)."""
        for key, mine in (("seed", self.seed), ("batch_size", self.batch_size), ("items", len(self.lengths))):
            if key in state and int(state[key]) != mine:
                raise ValueError(f"sampler state has {key}={state[key]} but this sampler has {mine}: "
                                 f"resuming would give different batches")
        self.epoch = int(state["epoch"])
        self.batch_index = int(state["batch_index"])
