"""Sorted batching (LongAlign) as a sampler of the training kit's global batch stream.

Rows (examples, or packed rows from :func:`align.packing.make_rows`) of similar length share a
batch, and the batches are shuffled. The unit that is sorted and cut is one optimizer step's
*global* batch (``batch_size x grad_accum`` rows, all processes): for epoch ``e``,
:func:`sorted_step_batches` leaves out ``n mod step_rows`` rows drawn with ``(seed, e)`` (so no row
is left out every epoch), sorts the rest by length (ties by index), cuts them into step batches and
shuffles their order with ``(seed, e)``. Micro-batch ``k`` of a step is the ``k``-th contiguous slice
of its step batch, so the rows of each micro-batch are close in length too.

:class:`SortedBatchSampler` has the kit's sampler method ``batch(position)`` -- the row indices of
global micro-batch ``position`` -- so :class:`glm_base.trainkit.batches.GlobalBatchStream` collates
it and :func:`glm_base.trainkit.batches.shard_rows` gives each process its rows. The batches depend
only on the lengths, ``batch_size``, ``grad_accum`` and ``seed``, never on the number of processes;
the data position (global micro-batches consumed) is the whole resume state. Because a step's rows
are fixed whatever the split, batch 8 x accumulation 1 and batch 1 x accumulation 8 train on the same
rows. Random batching (the baseline) is the kit's ``PermutationSampler``.

Fails with ``ValueError`` when there are fewer rows than one step needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def sorted_step_batches(lengths: Sequence[int], step_rows: int, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """The step batches of ``epoch`` (lists of row indices, each sorted by length) in training order."""
    n = len(lengths)
    if step_rows < 1 or n < step_rows:
        raise ValueError(f"sorted batching needs at least one step of {step_rows} rows, got {n} rows")
    rng = np.random.default_rng([int(seed), int(epoch)])
    left_out = set(rng.choice(n, size=n % step_rows, replace=False).tolist())
    order = sorted((i for i in range(n) if i not in left_out), key=lambda i: (lengths[i], i))
    batches = [order[i: i + step_rows] for i in range(0, len(order), step_rows)]
    return [batches[j] for j in rng.permutation(len(batches)).tolist()]


class SortedBatchSampler:
    """``batch(position)``: rows of global micro-batch ``position`` under sorted batching."""

    def __init__(self, lengths: Sequence[int], batch_size: int, grad_accum: int = 1, seed: int = 0):
        if batch_size < 1 or grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be >= 1")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.grad_accum, self.seed = int(batch_size), int(grad_accum), int(seed)
        self.step_rows = self.batch_size * self.grad_accum
        self.steps_per_epoch = len(self.lengths) // self.step_rows
        if self.steps_per_epoch == 0:
            raise ValueError(f"sorted batching needs at least batch_size x grad_accum = {self.step_rows} rows, "
                             f"got {len(self.lengths)}")
        self._epoch, self._batches = -1, []

    def step_batches(self, epoch: int) -> list[list[int]]:
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, sorted_step_batches(self.lengths, self.step_rows, self.seed, epoch)
        return self._batches

    def batch(self, position: int) -> list[int]:
        step, micro = divmod(int(position), self.grad_accum)
        epoch, index = divmod(step, self.steps_per_epoch)
        rows = self.step_batches(epoch)[index]
        return rows[micro * self.batch_size: (micro + 1) * self.batch_size]
