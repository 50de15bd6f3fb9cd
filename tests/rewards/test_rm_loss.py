"""The Bradley–Terry loss against hand computations, with and without margins and weights."""
from __future__ import annotations

import math

import pytest
import torch

from rewards.loss import bradley_terry, pair_outcome, rm_loss


class FixedScores(torch.nn.Module):
    """A stand-in reward model whose reward for row i is ``scores[i]`` (times a trainable 1)."""

    def __init__(self, scores):
        super().__init__()
        self.scores = torch.tensor(scores)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        return SimpleNamespace(logits=(self.scale * self.scores)[: input_ids.shape[0], None])


def nll(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def test_bradley_terry_is_minus_log_sigmoid_of_the_gap_minus_margin():
    c, r = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 0.5, 3.0])
    assert bradley_terry(c, r).tolist() == pytest.approx([nll(1.0), nll(0.0), nll(-4.0)])
    assert bradley_terry(c, r, torch.tensor([1.0, 2.0, 0.5])).tolist() == pytest.approx([nll(0.0), nll(-2.0), nll(-4.5)])
    assert bradley_terry(torch.tensor([100.0]), torch.tensor([-100.0])).item() == pytest.approx(0.0, abs=1e-30)
    assert bradley_terry(torch.tensor([-100.0]), torch.tensor([100.0])).item() == pytest.approx(200.0)  # no overflow


def test_rm_loss_sums_weighted_pairs_over_num_items_with_accuracy_and_margin():
    # rows: rewards 1.0, 3.0, 0.0, 3.0 ; pairs (1>0), (1>2), (0>2), (3>1: a tie)
    model = FixedScores([1.0, 3.0, 0.0, 3.0])
    batch = {"input_ids": torch.zeros(4, 2, dtype=torch.long), "attention_mask": torch.ones(4, 2, dtype=torch.long),
             "chosen": torch.tensor([1, 1, 0, 3]), "rejected": torch.tensor([0, 2, 2, 1]),
             "margin": torch.tensor([0.0, 1.0, 0.0, 0.0]), "weight": torch.tensor([1.0, 1.0, 2.0, 1.0])}
    num_items = torch.tensor(2.5)
    loss, metrics = rm_loss(model, batch, num_items)
    hand = (nll(2.0) + nll(3.0 - 1.0) + 2 * nll(1.0) + nll(0.0)) / 2.5
    assert loss.item() == pytest.approx(hand)
    assert metrics["accuracy"].item() == pytest.approx((1 + 1 + 2 + 0.5) / 2.5)
    assert metrics["margin"].item() == pytest.approx((2 + 3 + 2 * 1 + 0) / 2.5)
    loss.backward()
    # d/dscale of sum w * -log σ(s (c - r) - m) = sum w * -(c - r) σ(-(s(c - r) - m))
    sig = lambda x: 1 / (1 + math.exp(-x))
    grad = -(2 * sig(-2.0) + 3 * sig(-2.0) + 2 * 1 * sig(-1.0) + 0) / 2.5
    assert model.scale.grad.item() == pytest.approx(grad)


def test_pair_outcome_counts_a_tie_as_half():
    assert pair_outcome(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])).tolist() == [1.0, 0.5, 0.0]
