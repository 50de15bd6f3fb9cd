"""GAE, whitening and group baselines against hand computations."""

import math

import pytest
import torch

from align.rl.advantages import broadcast_to_tokens, gae_advantages, grpo_advantages, masked_whiten, rloo_advantages
from align.rl.masked import check_prefix_mask, masked_mean, masked_sum, masked_var

NAN = float("nan")


def test_masked_reductions_ignore_padding_even_nan():
    x = torch.tensor([[1.0, 2.0, NAN], [3.0, math.inf, 5.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_sum(x, m).item() == 6.0
    assert masked_mean(x, m).item() == 2.0
    assert masked_var(x, m).item() == pytest.approx(2 / 3)
    assert masked_var(x, m, unbiased=True).item() == pytest.approx(1.0)
    assert masked_mean(x, m, dim=1).tolist() == [1.5, 3.0]
    # all_reduce: a second "process" holding the same batch doubles sums and counts, same mean
    assert masked_mean(x, m, all_reduce=lambda t: 2 * t).item() == 2.0
    with pytest.raises(ValueError, match="empty mask"):
        masked_mean(x, torch.zeros_like(m))


def test_prefix_mask_check_names_the_row():
    check_prefix_mask(torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ValueError, match="row 1"):
        check_prefix_mask(torch.tensor([[1, 1, 0], [1, 0, 1]]))


def test_gae_gamma_lambda_one_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.2, 0.4]])
    adv, ret = gae_advantages(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    # delta = [0 + .2 - .5, 0 + .4 - .2, 1 + 0 - .4] = [-.3, .2, .6]; A = reverse cumulative sums
    assert adv.tolist()[0] == pytest.approx([0.5, 0.8, 0.6])
    assert ret.tolist()[0] == pytest.approx([1.0, 1.0, 1.0])


def test_gae_discounted_with_padding_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.1, 1.0, 100.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.5, 0.2, NAN]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: delta2 = .6; delta1 = .9*.4 - .2 = .16, A1 = .16 + .45*.6 = .43; delta0 = .9*.2 - .5 = -.32,
    #        A0 = -.32 + .45*.43 = -.1265
    assert adv[0].tolist() == pytest.approx([-0.1265, 0.43, 0.6])
    assert ret[0].tolist() == pytest.approx([0.3735, 0.63, 1.0])
    # row 1: bootstrap 0 after the last valid token; the padding's reward 100 and value NaN are unseen
    # delta1 = 1 - .2 = .8; delta0 = .1 + .9*.2 - .5 = -.22, A0 = -.22 + .45*.8 = .14
    assert adv[1].tolist() == pytest.approx([0.14, 0.8, 0.0])
    assert ret[1].tolist() == pytest.approx([0.64, 1.0, 0.0])


def test_gae_padding_changes_nothing():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 5), torch.randn(3, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.95, lam=0.9)
    for row, n in enumerate([5, 3, 1]):
        alone, alone_ret = gae_advantages(rewards[row:row + 1, :n], values[row:row + 1, :n], torch.ones(1, n), 0.95, 0.9)
        assert torch.equal(adv[row, :n], alone[0]) and torch.equal(ret[row, :n], alone_ret[0])
        assert adv[row, n:].abs().sum() == 0 and ret[row, n:].abs().sum() == 0


def test_gae_refuses_holes():
    with pytest.raises(ValueError, match="row 0"):
        gae_advantages(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[1, 0, 1]]))


def test_masked_whiten_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    m = torch.tensor([[1, 1], [1, 0]])
    s = math.sqrt(2 / 3)  # population std of 1, 2, 3
    w = masked_whiten(x, m, eps=0.0)
    torch.testing.assert_close(w, torch.tensor([[-1 / s, 0.0], [1 / s, 0.0]]))
    w = masked_whiten(x, m, shift_mean=False, eps=0.0)
    torch.testing.assert_close(w, torch.tensor([[2 - 1 / s, 2.0], [2 + 1 / s, 0.0]]))
    torch.testing.assert_close(masked_whiten(x, m, unbiased=True, eps=0.0), torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))


def test_grpo_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    # group 1: mean 2, unbiased std 1; group 2: no spread, all 0
    assert grpo_advantages(scores, 3, eps=0.0)[:3].tolist() == [-1.0, 0.0, 1.0]
    assert grpo_advantages(scores, 3)[3:].tolist() == [0.0, 0.0, 0.0]
    assert grpo_advantages(scores, 3, scale_by_std=False).tolist() == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    assert grpo_advantages(scores, 3, eps=1e-4)[2].item() == pytest.approx(1 / 1.0001)


def test_rloo_by_hand():
    scores = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 4.0])
    # 1 - (2+3)/2, 2 - (1+3)/2, 3 - (1+2)/2 ; 0 - 2, 0 - 2, 4 - 0
    assert rloo_advantages(scores, 3).tolist() == [-1.5, 0.0, 1.5, -2.0, -2.0, 4.0]


def test_group_layout_errors():
    with pytest.raises(ValueError, match="groups of 4"):
        rloo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(torch.zeros(6), 1)


def test_broadcast_to_tokens():
    out = broadcast_to_tokens(torch.tensor([2.0, -1.0]), torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert out.tolist() == [[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]
