"""Sorted batching as a sampler of the kit's global batch stream: deterministic, every kept row once
per epoch, similar lengths together, shuffled steps, the same rows per step whatever the split into
micro-batches, and a stream that resumes from its position."""

from __future__ import annotations

import pytest

from align.batching import SortedBatchSampler, sorted_step_batches
from glm_base.trainkit.batches import GlobalBatchStream

LENGTHS = [37, 5, 12, 5, 80, 23, 64, 9, 41, 15, 3, 50, 28, 70, 18, 33, 7, 60, 11, 45, 26, 90, 2]


def test_sorted_step_batches_exact_small():
    lengths = [30, 10, 20, 10]
    # 4 rows, 2 per step, none left out: sorted by (length, index) 1, 3, 2, 0 -> [1, 3], [2, 0], shuffled
    assert sorted(sorted_step_batches(lengths, 2, seed=0, epoch=0)) == [[1, 3], [2, 0]]
    # 5 rows, 2 per step: one row is left out (by seed and epoch), the rest sorted and cut
    lengths = [30, 10, 20, 10, 40]
    for epoch in range(6):
        batches = sorted_step_batches(lengths, 2, seed=0, epoch=epoch)
        kept = sorted(i for b in batches for i in b)
        assert len(kept) == 4
        order = sorted(kept, key=lambda i: (lengths[i], i))
        assert sorted(batches) == sorted([order[:2], order[2:]])
    left_out = {tuple(sorted(set(range(5)) - {i for b in sorted_step_batches(lengths, 2, 0, e) for i in b}))
                for e in range(12)}
    assert len(left_out) > 1  # not always the same row
    with pytest.raises(ValueError, match="at least one step of 8 rows"):
        sorted_step_batches(lengths, 8)


def test_each_epoch_similar_lengths_together_and_shuffled():
    orders = set()
    for epoch in range(4):
        batches = sorted_step_batches(LENGTHS, 4, seed=7, epoch=epoch)
        flat = [i for b in batches for i in b]
        assert len(flat) == len(set(flat)) == len(LENGTHS) - len(LENGTHS) % 4
        for b in batches:  # each step batch is a contiguous run of the kept rows sorted by length
            kept_sorted = sorted(flat, key=lambda i: (LENGTHS[i], i))
            start = kept_sorted.index(b[0])
            assert b == kept_sorted[start:start + 4]
        assert batches == sorted_step_batches(LENGTHS, 4, seed=7, epoch=epoch)  # deterministic
        orders.add(tuple(map(tuple, batches)))
    assert len(orders) > 1
    assert sorted_step_batches(LENGTHS, 4, seed=8) != sorted_step_batches(LENGTHS, 4, seed=7)


def test_a_step_holds_the_same_rows_however_it_is_split():
    """batch 4 x accumulation 1 and batch 1 x accumulation 4 (and 2 x 2) train on the same rows per step."""
    whole = SortedBatchSampler(LENGTHS, batch_size=4, grad_accum=1, seed=3)
    for batch_size, accum in ((1, 4), (2, 2)):
        split = SortedBatchSampler(LENGTHS, batch_size=batch_size, grad_accum=accum, seed=3)
        for step in range(12):  # more than two epochs (5 steps per epoch)
            rows = [i for k in range(accum) for i in split.batch(step * accum + k)]
            assert rows == whole.batch(step)
    assert whole.steps_per_epoch == 5
    with pytest.raises(ValueError, match="at least batch_size x grad_accum = 24 rows"):
        SortedBatchSampler(LENGTHS, batch_size=8, grad_accum=3)


def test_stream_resumes_at_its_position():
    sampler = SortedBatchSampler(LENGTHS, batch_size=3, grad_accum=2, seed=1)
    collate = lambda rows, position: (position, rows)  # noqa: E731
    full = GlobalBatchStream(LENGTHS, sampler, collate)
    first = [b for _, b in zip(range(20), full)]
    resumed = GlobalBatchStream(LENGTHS, SortedBatchSampler(LENGTHS, 3, 2, seed=1), collate, start=7)
    assert [b for _, b in zip(range(13), resumed)] == first[7:]
    assert [p for p, _ in first] == list(range(20))
