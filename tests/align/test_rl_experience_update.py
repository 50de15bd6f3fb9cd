"""Experience making and the PPO update: hand-checkable cases, accumulation invariance, PPO-ptx."""

import copy

import pytest
import torch
from accelerate import Accelerator

from align.rl.experience import make_experience
from align.rl.logprobs import response_logprobs
from align.rl.rollout import HFRollout
from align.rl.update import PPOUpdateArgs, ppo_update
from align.rl.value_model import ValueModel, response_values
from tests.align.rl_helpers import tiny_model

EOS, PAD = [1], 0
PROMPTS = [[5, 6], [7], [8, 9, 10], [11]]


def _rollout(policy, seed=0, prompts=PROMPTS, max_new_tokens=5):
    torch.manual_seed(seed)
    return HFRollout(policy, EOS, PAD, max_new_tokens=max_new_tokens, temperature=1.0).generate(prompts)


def test_value_model_starts_at_zero_and_reads_the_predicting_positions():
    policy = tiny_model("glm4")
    critic = ValueModel.from_causal_lm(policy)
    ids, mask = torch.tensor([[0, 5, 6, 7, 8]]), torch.tensor([[0, 1, 1, 1, 1]])
    assert response_values(critic, ids, mask, 2).tolist() == [[0.0, 0.0]]
    with torch.no_grad():
        critic.value_head.bias.fill_(0.5)
    full = critic(ids, mask)
    assert torch.equal(response_values(critic, ids, mask, 2), full[:, 2:4])
    assert critic.backbone is not policy.model  # a copy: training the critic leaves the policy alone


def test_experience_same_policy_and_reference_by_hand():
    policy = tiny_model("glm4")
    critic = ValueModel.from_causal_lm(policy)  # values 0
    rollout = _rollout(policy)
    scores = torch.tensor([1.0, -2.0, 0.5, 3.0])
    exp, metrics = make_experience(rollout, scores, policy, copy.deepcopy(policy), critic, kl_coef=0.1, gamma=1.0,
                                   lam=1.0, whiten_advantages=False)
    mask = rollout.response_mask.float()
    # KL 0, reward only at the end, V = 0, gamma = lambda = 1: every valid token's advantage and return is the score
    torch.testing.assert_close(exp.advantages, scores[:, None] * mask)
    torch.testing.assert_close(exp.returns, scores[:, None] * mask)
    assert metrics["kl"] == 0.0 and metrics["score"] == pytest.approx(0.625)
    assert metrics["reward"] == pytest.approx(0.625)
    torch.testing.assert_close(exp.old_logprobs, rollout.logprobs, atol=1e-4, rtol=0)


def test_experience_kl_and_group_baselines():
    policy, ref = tiny_model("glm4", seed=0), tiny_model("glm4", seed=1)
    rollout = _rollout(policy, prompts=[[5], [5], [7], [7]])
    scores = torch.tensor([1.0, 0.0, 2.0, 2.0])
    exp, metrics = make_experience(rollout, scores, policy, ref, kl_coef=0.0, advantage_estimator="rloo",
                                   group_size=2, whiten_advantages=False)
    mask = rollout.response_mask.float()
    torch.testing.assert_close(exp.advantages, torch.tensor([1.0, -1.0, 0.0, 0.0])[:, None] * mask)
    lp = response_logprobs(policy, rollout.input_ids, rollout.attention_mask, rollout.response_length, 1.0, mask)
    ref_lp = response_logprobs(ref, rollout.input_ids, rollout.attention_mask, rollout.response_length, 1.0, mask)
    assert metrics["kl"] == pytest.approx(((lp - ref_lp) * mask).sum(1).mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="needs a critic"):
        make_experience(rollout, scores, policy, ref, kl_coef=0.0)


def _one_update(accumulation, reduction="token", ptx=None, ptx_coef=0.0, zero_advantages=False):
    torch.manual_seed(0)
    policy = tiny_model("glm4", seed=3).train()
    critic = ValueModel.from_causal_lm(policy)
    rollout = _rollout(policy, seed=5)
    exp, _ = make_experience(rollout, torch.tensor([1.0, 0.0, -1.0, 2.0]), policy, copy.deepcopy(policy), critic,
                             kl_coef=0.05)
    with torch.no_grad():  # move the old values away from the current ones so value clipping is exercised
        exp.old_values += 0.3 * exp.response_mask
        exp.old_logprobs -= 0.1 * exp.response_mask
        if zero_advantages:
            exp.advantages.zero_()
    accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
    popt = torch.optim.SGD(policy.parameters(), lr=0.5)
    copt = torch.optim.SGD(critic.parameters(), lr=0.5)
    policy, popt, critic, copt = accelerator.prepare(policy, popt, critic, copt)
    args = PPOUpdateArgs(ppo_epochs=1, minibatch_size=4, loss_reduction=reduction, grad_clip=0.0, ptx_coef=ptx_coef)
    metrics = ppo_update(accelerator, policy, popt, exp, args, critic=critic, critic_optimizer=copt,
                         generator=torch.Generator().manual_seed(0), ptx_batches=iter(ptx) if ptx else None)
    return metrics, [p.detach().clone() for p in policy.parameters()], [p.detach().clone() for p in critic.parameters()]


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_minibatch_4_accum_1_equals_2_by_accum_2(reduction):
    m1, policy1, critic1 = _one_update(1, reduction)
    m2, policy2, critic2 = _one_update(2, reduction)
    assert m1["steps"] == m2["steps"] == 1
    for name in ("policy/loss", "policy/clip_fraction", "policy/approx_kl", "value/loss", "value/value_clip_fraction"):
        assert m1[name] == pytest.approx(m2[name], rel=1e-5, abs=1e-7), name
    assert m1["value/value_clip_fraction"] > 0
    for a, b in zip(policy1 + critic1, policy2 + critic2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_ptx_loss_is_added_on_its_own_batch():
    ids = torch.tensor([[12, 13, 14, 15], [16, 17, 18, 0]])
    labels = torch.tensor([[12, 13, 14, 15], [16, 17, 18, -100]])
    ptx = [{"input_ids": ids[:1], "labels": labels[:1]}, {"input_ids": ids[1:], "labels": labels[1:]}]
    metrics, with_ptx, _ = _one_update(2, ptx=ptx, ptx_coef=0.5, zero_advantages=True)
    _, without, _ = _one_update(2, zero_advantages=True)
    start = tiny_model("glm4", seed=3)
    lm_loss = start(input_ids=ids, labels=labels).loss  # mean over the 5 targets of both micro-batches
    assert metrics["policy/ptx_loss"] == pytest.approx(lm_loss.item(), rel=1e-5)
    lm_loss.backward()
    # with zero advantages the policy gradient is 0, so the step is SGD on 0.5 * LM loss
    for p0, p1, p in zip(start.parameters(), with_ptx, without):
        torch.testing.assert_close(p, p0.detach(), rtol=0, atol=1e-7)
        torch.testing.assert_close(p1, p0.detach() - 0.5 * 0.5 * p0.grad, rtol=1e-4, atol=1e-6)


def test_update_argument_errors():
    with pytest.raises(ValueError, match="loss_reduction"):
        PPOUpdateArgs(loss_reduction="batch")
    with pytest.raises(ValueError, match="temperature"):
        PPOUpdateArgs(temperature=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("critic", ["separate", "shared"])
def test_one_process_equals_two(tmp_path, critic):
    """The same 8 responses updated by one process, or by two holding 4 each (torchrun, gloo): same
    weights and metrics (the step normaliser is global, gradients are averaged), with a separate
    critic or a value head on the policy."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {1: [sys.executable, "-m", "tests.align.ppo_two_process"],
            2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "tests.align.ppo_two_process"]}
    results = {}
    for world, command in runs.items():
        out = tmp_path / f"world{world}.pt"
        done = subprocess.run([*command, str(out), *(["shared"] if critic == "shared" else [])], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        results[world] = torch.load(out)
    one, two = results[1], results[2]
    assert (one["world"], two["world"]) == (1, 2)
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
    assert one["metrics"]["policy/clip_fraction"] > 0
    assert one["metrics"]["value/value_clip_fraction"] > 0 and ("shared/loss" in one["metrics"]) == (critic == "shared")
    for part in ("policy", "critic"):
        for name, tensor in one[part].items():
            torch.testing.assert_close(two[part][name], tensor, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layout", ["causal", "prefix"])
def test_before_any_update_the_ratio_is_exactly_one(architecture, layout):
    """The update's forward sees what experience making saw (positions, masks, temperature, layout):
    on a left-padded batch, before any step, new log-probs equal old ones and nothing is clipped."""
    from align.rl.update import policy_step_loss, value_step_loss

    policy = tiny_model(architecture, seed=6).train()
    critic = ValueModel.from_causal_lm(policy)
    torch.manual_seed(0)
    prompts = [p + [4, 5] for p in PROMPTS] if layout == "prefix" else PROMPTS  # Part A, [gMASK], <sop>
    rollout = HFRollout(policy, EOS, PAD, max_new_tokens=6, temperature=0.8, layout=layout).generate(prompts)
    exp, _ = make_experience(rollout, torch.ones(4), policy, policy, critic, kl_coef=0.0, temperature=0.8)
    assert (exp.part_a_length is not None) == (layout == "prefix")
    loss, metrics = policy_step_loss(policy, {"experience": exp}, exp.response_mask.sum(),
                                     args=PPOUpdateArgs(temperature=0.8))
    assert metrics["approx_kl"].item() < 1e-10 and metrics["clip_fraction"].item() == 0.0
    assert metrics["ratio_mean"].item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        critic.value_head.bias.fill_(0.3)  # values away from the old ones (0) by more than the clip
    _, value_metrics = value_step_loss(critic, {"experience": exp}, exp.response_mask.sum(),
                                       args=PPOUpdateArgs(value_clip_eps=0.2))
    assert value_metrics["value_mean"].item() == pytest.approx(0.3, abs=1e-6)  # the critic read the same rows


def test_value_model_saves_and_loads_through_trainkit(tmp_path):
    from glm_base.trainkit.checkpoint import save_models

    policy = tiny_model("glm1")
    critic = ValueModel.from_causal_lm(policy)
    with torch.no_grad():
        critic.value_head.weight.normal_()
    accelerator = Accelerator(cpu=True)
    save_models(accelerator, policy, None, tmp_path / "ckpt", extra_models={"value": critic})
    loaded = ValueModel.from_pretrained(tmp_path / "ckpt" / "value")
    ids, mask = torch.tensor([[0, 5, 6, 7]]), torch.tensor([[0, 1, 1, 1]])
    assert torch.equal(loaded(ids, mask), critic(ids, mask))
