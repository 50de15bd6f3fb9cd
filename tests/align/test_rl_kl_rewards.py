"""KL estimators and controllers, token rewards, running reward statistics: hand computations."""

import math

import pytest
import torch

from align.rl.kl import AdaptiveKLController, FixedKLController, kl_per_token
from align.rl.rewards import RunningMeanStd, last_valid_index, token_rewards


def test_kl_estimators_by_hand():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.5, 0.0]])  # d = [.5, -.5, -3]
    assert kl_per_token(logp, ref, "k1").tolist()[0] == pytest.approx([0.5, -0.5, -3.0])
    assert kl_per_token(logp, ref, "k2").tolist()[0] == pytest.approx([0.125, 0.125, 4.5])
    k3 = [math.exp(-0.5) - 0.5, math.exp(0.5) - 1.5, math.exp(3.0) - 4.0]
    assert kl_per_token(logp, ref, "k3").tolist()[0] == pytest.approx(k3)
    assert kl_per_token(logp, ref, "k3", mask=torch.tensor([[1, 1, 0]])).tolist()[0] == pytest.approx(k3[:2] + [0.0])
    # clamped: d = -100 would be exp(100); with clamp 10 it is exp(10) - 11
    assert kl_per_token(torch.tensor([[-100.0]]), torch.tensor([[0.0]]), "k3", clamp=10).item() == pytest.approx(
        math.exp(10) - 11, rel=1e-6)
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_per_token(logp, ref, "k4")


def test_adaptive_kl_controller_by_hand_and_resume():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))  # err 0.5 clipped to 0.2
    assert ctl.update(3.0, 100) == pytest.approx(0.1 * 1.00512 * (1 - 0.2 * 100 / 10000))  # clipped to -0.2
    before = ctl.value
    assert ctl.update(6.6, 1000) == pytest.approx(before * (1 + 0.1 * 0.1))  # err 0.1 unclipped
    resumed = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    resumed.load_state_dict(ctl.state_dict())
    assert resumed.value == ctl.value
    assert resumed.update(7.0, 10) == ctl.update(7.0, 10)
    with pytest.raises(ValueError, match="fixed"):
        resumed.load_state_dict(FixedKLController(0.05).state_dict())


def test_fixed_kl_controller():
    ctl = FixedKLController(0.05)
    assert ctl.update(100.0, 1000) == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05


def test_token_rewards_by_hand():
    scores = torch.tensor([2.0, -1.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards = token_rewards(scores, kl, mask, kl_coef=0.1, truncated=torch.tensor([True, False]),
                            truncation_penalty=-0.5)
    torch.testing.assert_close(rewards, torch.tensor([[-0.01, -0.02, -0.03 + 2.0 - 0.5], [-0.05, 0.05 - 1.0, 0.0]]))
    assert token_rewards(scores, kl, mask, kl_coef=0.0).tolist() == [[0, 0, 2.0], [0, -1.0, 0]]


def test_token_rewards_errors():
    with pytest.raises(ValueError, match="response 1 has no valid token"):
        last_valid_index(torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match="one score each"):
        token_rewards(torch.zeros(3), torch.zeros(2, 2), torch.ones(2, 2), 0.1)


def test_running_mean_std_by_hand():
    stats = RunningMeanStd()
    stats.update(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    stats.update(torch.tensor([10.0]))
    # 1, 2, 3, 4, 10: mean 4, deviations -3 -2 -1 0 6, population variance 50 / 5 = 10
    assert (stats.count, stats.mean, stats.var) == (5.0, pytest.approx(4.0), pytest.approx(10.0))
    assert stats.normalize(torch.tensor([14.0])).item() == pytest.approx(10 / math.sqrt(10))
    assert stats.normalize(torch.tensor([14.0]), shift_mean=False).item() == pytest.approx(14 / math.sqrt(10))
    assert stats.normalize(torch.tensor([100.0]), clip=5.0).item() == 5.0


def test_running_mean_std_two_processes_equal_one():
    torch.manual_seed(0)
    a, b = torch.randn(7) * 3 + 1, torch.randn(5) - 2
    one = RunningMeanStd()
    one.update(torch.cat([a, b]))
    # a stand-in for accelerator.gather: each process contributes its [count, mean, M2]
    gather = lambda _: torch.cat([RunningMeanStd.moments(a), RunningMeanStd.moments(b)])
    rank0, rank1 = RunningMeanStd(), RunningMeanStd()
    rank0.update(a, all_gather=gather)
    rank1.update(b, all_gather=gather)
    for s in (rank0, rank1):
        assert s.count == 12 and s.mean == pytest.approx(one.mean) and s.var == pytest.approx(one.var)
    assert one.var == pytest.approx(torch.cat([a, b]).double().var(unbiased=False).item())
    resumed = RunningMeanStd()
    resumed.load_state_dict(rank0.state_dict())
    assert resumed.state_dict() == rank0.state_dict()
    with pytest.raises(RuntimeError, match="before any update"):
        RunningMeanStd().normalize(a)
