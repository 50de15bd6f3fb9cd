"""PPO learns a toy task end to end: reward 1 when the response starts with a chosen token.

A tiny random policy (glm4 or glm1, vocab 16, so the chosen token starts near 1/16) samples responses with
HFRollout; experience is made with a reference copy and a critic (GAE); ppo_update trains both
through glm_base.trainkit's step. The critic is a separate model, or (``shared``) a value head on the
policy's own trunk trained in the policy's step. Within a bounded number of iterations the probability of the
chosen first token exceeds 0.9, while the KL to the reference stays bounded.
"""

import copy

import pytest
import torch

from align.rl.experience import make_experience
from align.rl.kl import AdaptiveKLController
from align.rl.rollout import HFRollout
from align.rl.update import PPOUpdateArgs, ppo_update
from align.rl.value_model import PolicyWithValueHead, ValueModel
from glm_base import GLMConfig, GLMForCausalLM
from glm_base.trainkit.accel import make_accelerator

VOCAB, TARGET, EOS, PAD = 16, 9, [1], 0
PROMPTS = [[4], [5], [6], [7]] * 4  # 16 responses per iteration


def first_token_probability(policy) -> float:
    """Exact mean over the prompts of P(first response token = TARGET) at temperature 1."""
    with torch.no_grad():
        logits = policy(input_ids=torch.tensor([[4], [5], [6], [7]])).logits[:, -1]
    return torch.softmax(logits.float(), -1)[:, TARGET].mean().item()


# the shared critic at glm4's 3e-3 climbs too, but unevenly (its value loss also moves the trunk): 1e-3
@pytest.mark.parametrize("architecture, lr, shared", [("glm4", 3e-3, False), ("glm1", 1e-3, False),
                                                      ("glm4", 1e-3, True), ("glm1", 1e-3, True)])
def test_ppo_raises_the_rewarded_first_token_above_0_9(architecture, lr, shared):
    torch.manual_seed(0)
    config = GLMConfig(architecture=architecture, vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=64)
    policy = GLMForCausalLM(config)
    reference = copy.deepcopy(policy).eval()
    accelerator = make_accelerator(grad_accum=2, mixed_precision="no")
    if shared:
        critic = critic_opt = None
        model = PolicyWithValueHead(policy)
        policy_opt = torch.optim.AdamW(model.parameters(), lr=lr)
        model, policy_opt = accelerator.prepare(model, policy_opt)
        policy = accelerator.unwrap_model(model).policy
    else:
        critic = ValueModel.from_causal_lm(policy)
        policy_opt = torch.optim.AdamW(policy.parameters(), lr=lr)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=lr)
        policy, policy_opt, critic, critic_opt = accelerator.prepare(policy, policy_opt, critic, critic_opt)
        model = policy
    sampler = HFRollout(accelerator.unwrap_model(policy), EOS, PAD, max_new_tokens=3, temperature=1.0)
    kl_ctl = AdaptiveKLController(0.05, target=3.0, horizon=1000)
    args = PPOUpdateArgs(ppo_epochs=2, minibatch_size=8, grad_clip=1.0, vf_coef=0.1)
    generator = torch.Generator().manual_seed(0)

    start = first_token_probability(policy)
    history = []
    for iteration in range(40):
        rollout = sampler.generate(PROMPTS)
        scores = (rollout.response_ids[:, 0] == TARGET).float()
        experience, metrics = make_experience(rollout, scores, model, reference, critic, kl_coef=kl_ctl.value,
                                              gamma=1.0, lam=0.95, autocast=accelerator.autocast,
                                              shared_critic=shared)
        kl_ctl.update(metrics["kl"], len(PROMPTS))
        update = ppo_update(accelerator, model, policy_opt, experience, args, critic=critic,
                            critic_optimizer=critic_opt, generator=generator, shared_critic=shared)
        history.append((first_token_probability(policy), metrics["kl"], update["policy/clip_fraction"]))
        if history[-1][0] > 0.9:
            break
    probability, kl, _ = history[-1]
    assert start < 0.15
    assert probability > 0.9, f"P(target) reached only {probability:.3f} after {len(history)} iterations: {history}"
    assert max(h[1] for h in history) < 6.0, history  # KL per response (nats) stays bounded
    if shared:
        assert update["value/value_loss"] > 0 and accelerator.unwrap_model(model).value_head.weight.abs().sum() > 0
    print(f"toy task {architecture}{' shared critic' if shared else ''}: P(target) {start:.3f} -> {probability:.3f} in {len(history)} iterations, last KL {kl:.2f}")
