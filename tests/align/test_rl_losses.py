"""PPO losses: values, gradients and metrics against hand computations."""

import math

import pytest
import torch

from align.rl.losses import entropy_bonus, entropy_from_logits, explained_variance, policy_loss, value_loss

# ratio r and advantage A per token: t0 clipped above (A > 0), t1 clipped below (A < 0),
# t2 r > 1+eps with A < 0 (unclipped term is smaller), t3 r < 1-eps with A > 0 (unclipped smaller)
RATIOS = [[1.5, 0.5, 1.1], [0.7, 1.0, 1.0]]
ADV = [[1.0, -1.0, -2.0], [2.0, 9.0, 9.0]]
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


def _inputs():
    logp = torch.log(torch.tensor(RATIOS)).requires_grad_()
    return logp, torch.zeros(2, 3), torch.tensor(ADV)


def test_policy_loss_token_mean_and_gradient_by_hand():
    logp, old, adv = _inputs()
    loss, metrics = policy_loss(logp, old, adv, MASK, clip_eps=0.2)
    # per token: -min(1.5, 1.2) = -1.2 ; -min(-.5, -.8) = .8 ; -min(-2.2, -2.2) = 2.2 ; -min(1.4, 1.6) = -1.4
    assert loss.item() == pytest.approx((-1.2 + 0.8 + 2.2 - 1.4) / 4)
    assert metrics["clip_fraction"].item() == 0.5
    assert metrics["approx_kl"].item() == pytest.approx(sum(0.5 * math.log(r) ** 2 for r in (1.5, 0.5, 1.1, 0.7)) / 4)
    loss.backward()
    # d/dlogp of -r*A is -r*A for unclipped tokens, 0 where the clip cuts the gradient; / 4 tokens
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0, 2.2 / 4], [-1.4 / 4, 0.0, 0.0]]))


def test_policy_loss_sequence_mean_and_normaliser():
    logp, old, adv = _inputs()
    loss, _ = policy_loss(logp, old, adv, MASK, reduction="sequence")
    assert loss.item() == pytest.approx(((-1.2 + 0.8 + 2.2) / 3 + -1.4) / 2)
    loss, metrics = policy_loss(logp, old, adv, MASK, normaliser=8)  # e.g. the whole step holds 8 tokens
    assert loss.item() == pytest.approx(0.4 / 8)
    assert metrics["clip_fraction"].item() == pytest.approx(2 / 8)  # this batch's share of the step's mean
    loss, _ = policy_loss(logp, old, adv, MASK, normaliser=torch.tensor(8.0))
    assert loss.item() == pytest.approx(0.4 / 8)


def test_policy_loss_accumulation_equals_one_batch():
    torch.manual_seed(0)
    logp, old, adv = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    whole, _ = policy_loss(logp, old, adv, mask)
    total = mask.sum()
    parts = sum(policy_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], normaliser=total)[0]
                for i in (0, 2))
    assert parts.item() == pytest.approx(whole.item())


def test_policy_loss_clip_higher():
    loss, metrics = policy_loss(torch.log(torch.tensor([[1.25]])), torch.zeros(1, 1), torch.ones(1, 1),
                                torch.ones(1, 1), clip_eps=0.2, clip_eps_high=0.28)
    assert loss.item() == pytest.approx(-1.25) and metrics["clip_fraction"].item() == 0.0


def test_value_loss_by_hand():
    values = torch.tensor([[1.0, 0.0, 2.0, 7.0]], requires_grad=True)
    old = torch.tensor([[0.5, 0.5, 2.0, 7.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, metrics = value_loss(values, old, returns, mask, clip_eps=0.2)
    # t0: max(0, (0.7 - 1)^2 = .09) ; t1: max(1, (0.3 - 1)^2 = .49) ; t2: max(4, 4)
    assert loss.item() == pytest.approx(0.5 * (0.09 + 1.0 + 4.0) / 3)
    assert metrics["value_clip_fraction"].item() == pytest.approx(1 / 3)
    loss.backward()
    # t0's larger error is the clipped one, whose V_clip does not move with V: no gradient
    assert values.grad.tolist()[0] == pytest.approx([0.0, (0.0 - 1.0) / 3, 2.0 / 3, 0.0])
    unclipped, _ = value_loss(values, old, returns, mask, clip_eps=None)
    assert unclipped.item() == pytest.approx(0.5 * (0.0 + 1.0 + 4.0) / 3)


def test_entropy_by_hand():
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3.0)], [5.0, -5.0]]])
    h = entropy_from_logits(logits)
    assert h[0, :2].tolist() == pytest.approx([math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])
    entropy, metrics = entropy_bonus(logits, torch.tensor([[1, 1, 0]]))
    assert entropy.item() == pytest.approx((h[0, 0] + h[0, 1]).item() / 2)
    assert metrics["entropy"].item() == pytest.approx(entropy.item())


def test_explained_variance_by_hand():
    returns = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 4), 2.0), returns, mask).item() == pytest.approx(0.0)
    assert explained_variance(returns + 5, returns, mask).item() == pytest.approx(1.0)  # constant offset
    assert explained_variance(torch.tensor([[3.0, 2.0, 1.0, 0.0]]), returns, mask).item() == pytest.approx(-3.0)
    assert math.isnan(explained_variance(returns, torch.ones(1, 4), mask).item())
