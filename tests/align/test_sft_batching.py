"""Sorted batching: deterministic, every item once per epoch, similar lengths together, shuffled
batches, the same global batches whatever the process count, and an exact mid-epoch resume."""

from __future__ import annotations

import pytest
import torch

from align.batching import SortedBatchSampler, shard, sorted_batches

LENGTHS = [37, 5, 12, 5, 80, 23, 64, 9, 41, 15, 3, 50, 28, 70, 18, 33, 7, 60, 11, 45, 26, 90, 2]


def test_sorted_batches_exact_small():
    lengths = [30, 10, 20, 10, 40]
    # sorted by (length, index): 1, 3, 2, 0, 4 -> batches [1, 3], [2, 0], [4]; then shuffled by the seed
    batches = sorted_batches(lengths, 2, seed=0, epoch=0)
    assert sorted(batches) == [[1, 3], [2, 0], [4]]
    assert sorted_batches(lengths, 2, seed=0, epoch=0, drop_last=True) in ([[1, 3], [2, 0]], [[2, 0], [1, 3]])


def test_every_item_once_per_epoch_similar_lengths_together():
    order = sorted(range(len(LENGTHS)), key=lambda i: (LENGTHS[i], i))
    runs = [order[i:i + 4] for i in range(0, len(order), 4)]
    seen_orders = set()
    for epoch in range(4):
        batches = sorted_batches(LENGTHS, 4, seed=7, epoch=epoch)
        assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
        assert sorted(batches) == sorted(runs)  # each batch is a run of the length-sorted order
        assert batches == sorted_batches(LENGTHS, 4, seed=7, epoch=epoch)  # deterministic
        seen_orders.add(tuple(map(tuple, batches)))
    assert len(seen_orders) > 1  # batches are shuffled differently per epoch
    assert sorted_batches(LENGTHS, 4, seed=8) != sorted_batches(LENGTHS, 4, seed=7)
    # padding is small: within a batch the longest is close to the shortest
    spread = max(max(LENGTHS[i] for i in b) - min(LENGTHS[i] for i in b) for b in runs)
    assert spread <= 20


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_process_shares_make_the_global_batches(processes):
    samplers = [SortedBatchSampler(LENGTHS, 6, seed=3, num_processes=processes, process_index=r)
                for r in range(processes)]
    shares = [list(s) for s in samplers]
    global_batches = sorted_batches(LENGTHS, 6, seed=3)
    assert len(samplers[0]) == len(global_batches) == 4
    for step, batch in enumerate(global_batches):
        parts = [shares[r][step] for r in range(processes)]
        assert sorted(i for p in parts for i in p) == sorted(batch)
        assert parts == [shard(batch, processes, r) for r in range(processes)]
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    again = SortedBatchSampler(LENGTHS, 6, seed=3, num_processes=processes, process_index=processes - 1)
    assert list(again.iter_global()) == [(b, shard(b, processes, processes - 1)) for b in global_batches]


def test_resume_mid_epoch_is_identical():
    straight = SortedBatchSampler(LENGTHS, 4, seed=1, num_processes=2, process_index=1)
    stream = list(straight) + list(straight)  # two epochs
    first = SortedBatchSampler(LENGTHS, 4, seed=1, num_processes=2, process_index=1)
    it = iter(first)
    taken = [next(it) for _ in range(3)]
    state = first.state_dict()
    assert (state["epoch"], state["batch_index"]) == (0, 3)
    resumed = SortedBatchSampler(LENGTHS, 4, seed=1, num_processes=2, process_index=1)
    resumed.load_state_dict(state)
    assert taken + list(resumed) + list(resumed) == stream
    assert resumed.state_dict()["epoch"] == 2
    other = SortedBatchSampler(LENGTHS, 5, seed=1)
    with pytest.raises(ValueError, match="batch_size=4 but this sampler has 5"):
        other.load_state_dict(state)


def test_sampler_errors_and_dataloader():
    with pytest.raises(ValueError, match="smaller than num_processes"):
        SortedBatchSampler(LENGTHS, 2, num_processes=3)
    with pytest.raises(ValueError, match="process_index=2"):
        SortedBatchSampler(LENGTHS, 4, num_processes=2, process_index=2)
    sampler = SortedBatchSampler(LENGTHS, 5, seed=0, drop_last=True)
    loader = torch.utils.data.DataLoader(LENGTHS, batch_sampler=sampler, collate_fn=list)
    got = [sorted(b) for b in loader]
    assert len(got) == len(sampler) == len(LENGTHS) // 5
    assert all(len(b) == 5 for b in got)


def test_random_batching_baseline():
    batches = sorted_batches(LENGTHS, 4, seed=7, by_length=False)
    assert sorted(i for b in batches for i in b) == list(range(len(LENGTHS)))
    assert batches == sorted_batches(LENGTHS, 4, seed=7, by_length=False)
    assert sorted(batches) != sorted(sorted_batches(LENGTHS, 4, seed=7))  # not the length-sorted runs
    sampler = SortedBatchSampler(LENGTHS, 4, seed=7, by_length=False)
    assert list(sampler) == batches
