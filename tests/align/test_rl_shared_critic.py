"""The shared critic (a value head on the policy's own trunk): its one forward against the separate
pieces, one update step against gradients computed by hand, accumulation invariance, saving."""

import copy

import pytest
import torch
from accelerate import Accelerator

from align.rl.experience import make_experience
from align.rl.logprobs import logprobs_from_logits, response_logits, response_logprobs
from align.rl.losses import policy_loss, value_loss
from align.rl.rollout import HFRollout
from align.rl.update import PPOUpdateArgs, ppo_update
from align.rl.value_model import PolicyWithValueHead
from tests.align.rl_helpers import tiny_model

EOS, PAD = [1], 0
PROMPTS = [[5, 6], [7], [8, 9, 10], [11], [12, 13], [14], [15, 16, 17], [18]]


def _rollout(policy, prompts, layout="causal", seed=0, temperature=1.0):
    torch.manual_seed(seed)
    return HFRollout(policy, EOS, PAD, max_new_tokens=5, temperature=temperature, layout=layout).generate(prompts)


def _random_head(model: PolicyWithValueHead, seed: int = 7) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.value_head.weight.copy_(torch.randn(model.value_head.weight.shape, generator=generator) * 0.3)
        model.value_head.bias.fill_(0.1)


@pytest.mark.parametrize("layout", ["causal", "prefix"])
def test_one_forward_gives_the_policy_logits_and_the_head_on_the_final_hidden_state(architecture, layout):
    policy = tiny_model(architecture, seed=2)
    model = PolicyWithValueHead(policy)
    prompts = [p + [4, 5] for p in PROMPTS[:4]] if layout == "prefix" else PROMPTS[:4]  # Part A, [gMASK], <sop>
    rollout = _rollout(policy, prompts, layout)
    ids, mask, r = rollout.input_ids, rollout.attention_mask, rollout.response_length
    layout_args = {"position_ids": rollout.position_ids, "part_a_length": rollout.part_a_length}
    with torch.no_grad():
        logits, values = model(ids, mask, r, **layout_args)
        assert torch.equal(values, torch.zeros_like(values))  # the head starts at zero
        _random_head(model)
        logits, values = model(ids, mask, r, **layout_args)
        expected_logits = response_logits(policy, ids, mask, r, **layout_args)
        hidden = policy.model(input_ids=ids, attention_mask=mask, use_cache=False,
                              position_ids=layout_args["position_ids"],
                              **({"part_a_length": rollout.part_a_length} if layout == "prefix" else {})
                              ).last_hidden_state
        by_hand = hidden[:, -r - 1:-1] @ model.value_head.weight[0] + model.value_head.bias[0]
    assert logits.shape == (4, r, policy.config.vocab_size) and values.shape == (4, r)
    assert values.dtype == torch.float32
    torch.testing.assert_close(logits, expected_logits, rtol=0, atol=0)
    torch.testing.assert_close(values, by_hand, rtol=1e-5, atol=1e-6)
    assert values.std() > 0
    # without response_length the wrapper is the policy's own forward (PPO-ptx batches)
    labels = ids.masked_fill(mask == 0, -100)
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, labels=labels).loss,
                               policy(input_ids=ids, attention_mask=mask, labels=labels).loss)
    with pytest.raises(ValueError, match="response_length"):
        model(ids, mask, ids.shape[1])


def test_lora_policy_inside_the_wrapper():
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(tiny_model("glm4", seed=2), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                   lora_dropout=0.0, task_type="CAUSAL_LM"))
    model = PolicyWithValueHead(policy)
    _random_head(model)
    rollout = _rollout(policy, PROMPTS[:4])
    ids, mask, r = rollout.input_ids, rollout.attention_mask, rollout.response_length
    with torch.no_grad():
        logits, values = model(ids, mask, r)
        hidden = policy.base_model.model.model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    torch.testing.assert_close(logits, response_logits(policy, ids, mask, r), rtol=0, atol=0)
    torch.testing.assert_close(values, model.value_head(hidden[:, -r - 1:-1]).squeeze(-1), rtol=1e-5, atol=1e-6)


def _shared_setup(seed=3, rows=8):
    """A shared model with a random head, its experience (old values/log-probs moved so both clips act)."""
    torch.manual_seed(0)
    policy = tiny_model("glm4", seed=seed).train()
    model = PolicyWithValueHead(policy)
    _random_head(model)
    rollout = _rollout(policy, PROMPTS[:rows], seed=5)
    scores = torch.linspace(-1.0, 2.0, rows)
    exp, metrics = make_experience(rollout, scores, model, copy.deepcopy(policy), kl_coef=0.05, shared_critic=True)
    with torch.no_grad():
        exp.old_values += 0.3 * exp.response_mask
        exp.old_logprobs -= torch.linspace(0.0, 0.4, rows)[:, None] * exp.response_mask  # some ratios beyond 1.2
    return model, exp, metrics, rollout


def test_experience_from_one_forward_equals_the_separate_forwards():
    policy = tiny_model("glm4", seed=3)
    model = PolicyWithValueHead(policy)
    _random_head(model)
    rollout = _rollout(policy, PROMPTS[:4], seed=5)
    exp, metrics = make_experience(rollout, torch.tensor([1.0, 0.0, -1.0, 2.0]), model, copy.deepcopy(policy),
                                   kl_coef=0.05, shared_critic=True)
    mask = rollout.response_mask
    ids, attn, r = rollout.input_ids, rollout.attention_mask, rollout.response_length
    with torch.no_grad():
        expected_lp = response_logprobs(policy, ids, attn, r, 1.0, mask)
        _, values = model(ids, attn, r)
    torch.testing.assert_close(exp.old_logprobs, expected_lp, rtol=0, atol=0)
    torch.testing.assert_close(exp.old_values, values * mask, rtol=0, atol=0)
    assert metrics["kl"] == 0.0 and "value_explained_variance" in metrics
    with pytest.raises(ValueError, match="critic=None"):
        make_experience(rollout, torch.zeros(4), model, policy, model, kl_coef=0.0, shared_critic=True)


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_one_shared_step_is_sgd_on_policy_loss_plus_vf_coef_value_loss(reduction):
    model, exp, _, _ = _shared_setup()
    start = copy.deepcopy(model)
    vf_coef = 0.25
    # by hand, from one forward of the starting weights: the loss over the whole minibatch of 8
    logits, values = start(exp.input_ids, exp.attention_mask, exp.response_length)
    logprobs = logprobs_from_logits(logits, exp.response_ids, 1.0, mask=exp.response_mask)
    p_loss, p_metrics = policy_loss(logprobs, exp.old_logprobs, exp.advantages, exp.response_mask, reduction=reduction)
    v_loss, v_metrics = value_loss(values, exp.old_values, exp.returns, exp.response_mask, 0.2, reduction)
    (p_loss + vf_coef * v_loss).backward()
    assert p_metrics["clip_fraction"] > 0 and v_metrics["value_clip_fraction"] > 0  # both clips act

    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    model, optimizer = accelerator.prepare(model, optimizer)
    args = PPOUpdateArgs(ppo_epochs=1, minibatch_size=8, grad_clip=0.0, vf_coef=vf_coef, loss_reduction=reduction)
    metrics = ppo_update(accelerator, model, optimizer, exp, args, shared_critic=True,
                         generator=torch.Generator().manual_seed(0))
    assert metrics["steps"] == 1
    assert metrics["policy/policy_loss"] == pytest.approx(p_loss.item(), rel=1e-5)
    assert metrics["policy/loss"] == pytest.approx(p_loss.item(), rel=1e-5)
    assert metrics["value/value_loss"] == pytest.approx(v_loss.item(), rel=1e-5)
    assert metrics["value/loss"] == pytest.approx(v_loss.item(), rel=1e-5)
    assert metrics["value/value_clip_fraction"] == pytest.approx(v_metrics["value_clip_fraction"].item(), rel=1e-6)
    assert metrics["shared/loss"] == pytest.approx(p_loss.item() + vf_coef * v_loss.item(), rel=1e-5)
    updated = dict(accelerator.unwrap_model(model).named_parameters())
    for name, param in start.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(updated[name].detach(), param.detach() - param.grad, rtol=1e-5, atol=1e-6,
                                   msg=name)
    # the value loss reaches the trunk: its gradient alone moves the policy's weights
    trunk = start.policy.model.layers[0].mlp.down_proj.weight
    trunk_grad = trunk.grad.clone()
    trunk.grad = None
    p_only = policy_loss(logprobs_from_logits(start(exp.input_ids, exp.attention_mask, exp.response_length).logits,
                                              exp.response_ids, 1.0, mask=exp.response_mask),
                         exp.old_logprobs, exp.advantages, exp.response_mask, reduction=reduction)[0]
    p_only.backward()
    assert (trunk_grad - trunk.grad).abs().max() > 1e-8


def _shared_update(accumulation, ptx=None, ptx_coef=0.0):
    model, exp, _, _ = _shared_setup()
    accelerator = Accelerator(gradient_accumulation_steps=accumulation, cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model, optimizer = accelerator.prepare(model, optimizer)
    args = PPOUpdateArgs(ppo_epochs=2, minibatch_size=8, grad_clip=1.0, vf_coef=0.1, entropy_coef=0.01,
                         ptx_coef=ptx_coef)
    metrics = ppo_update(accelerator, model, optimizer, exp, args, shared_critic=True,
                         generator=torch.Generator().manual_seed(0), ptx_batches=iter(ptx) if ptx else None)
    return metrics, {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).named_parameters()}


def test_shared_step_accumulation_2x4_equals_1x8():
    ids = torch.tensor([[12, 13, 14, 15], [16, 17, 18, 0], [19, 20, 21, 22], [23, 24, 0, 0]])
    labels = ids.masked_fill(ids == 0, -100)
    whole = [{"input_ids": ids, "labels": labels}] * 2  # one micro-batch per step, two steps
    halves = [{"input_ids": ids[:2], "labels": labels[:2]}, {"input_ids": ids[2:], "labels": labels[2:]}] * 2
    m1, params1 = _shared_update(1, whole, ptx_coef=0.2)
    m2, params2 = _shared_update(2, halves, ptx_coef=0.2)
    assert m1["steps"] == m2["steps"] == 2
    for name in ("shared/loss", "policy/loss", "policy/clip_fraction", "policy/approx_kl", "policy/entropy",
                 "policy/ptx_loss", "policy/grad_norm", "value/loss", "value/value_clip_fraction", "value/value_mean"):
        assert m1[name] == pytest.approx(m2[name], rel=1e-5, abs=1e-7), name
    assert m1["value/value_clip_fraction"] > 0 and m1["policy/ptx_loss"] > 0
    assert "value/grad_norm" not in m1
    for name, value in params1.items():
        torch.testing.assert_close(params2[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert (params1["value_head.weight"] != _shared_setup()[0].value_head.weight).any()


def test_shared_update_argument_errors():
    model, exp, _, _ = _shared_setup(rows=4)
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="critic=None"):
        ppo_update(accelerator, model, optimizer, exp, PPOUpdateArgs(minibatch_size=4), shared_critic=True,
                   critic=model, critic_optimizer=optimizer)
    exp.returns = None
    with pytest.raises(ValueError, match="returns"):
        ppo_update(accelerator, model, optimizer, exp, PPOUpdateArgs(minibatch_size=4), shared_critic=True)
    with pytest.raises(ValueError, match="vf_coef"):
        PPOUpdateArgs(vf_coef=-1.0)


def test_save_writes_the_plain_policy_and_only_the_head(tmp_path):
    from safetensors.torch import load_file

    from glm_base import GLMForCausalLM
    from glm_base.trainkit.checkpoint import save_models

    policy = tiny_model("glm1", seed=4)
    model = PolicyWithValueHead(policy)
    _random_head(model)
    save_models(Accelerator(cpu=True), model, None, tmp_path / "ckpt")
    head = load_file(str(tmp_path / "ckpt" / "value" / "model.safetensors"))
    assert sorted(head) == ["value_head.bias", "value_head.weight"]
    loaded = GLMForCausalLM.from_pretrained(tmp_path / "ckpt")
    for name, value in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    fresh = PolicyWithValueHead(loaded)
    fresh.load_value_head(tmp_path / "ckpt")
    assert torch.equal(fresh.value_head.weight, model.value_head.weight)
    with pytest.raises(FileNotFoundError, match="no value head"):
        fresh.load_value_head(tmp_path)
