"""Experience making: from a rollout and its scores to the tensors the PPO update trains on.

Everything here runs without gradients and apart from the update (OpenRLHF's split): old log-probs
and reference log-probs recomputed with the training forward (same positions, masks and
temperature as the rollout), values from the critic, per-token KL, token rewards, then advantages
and returns (GAE with a critic; GRPO or RLOO group baselines without one). With a shared critic
(:class:`~align.rl.value_model.PolicyWithValueHead`) old log-probs and values come from one forward,
so experience costs two forwards (policy+values, reference) instead of three.

Dropout should be off in the policy (``hidden_dropout = attention_dropout = 0``, as in OpenRLHF and
veRL), or old and new log-probs differ by noise before any update.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields, replace
from typing import Callable, ContextManager

import torch

from .advantages import broadcast_to_tokens, gae_advantages, grpo_advantages, masked_whiten, rloo_advantages
from .kl import kl_per_token
from .logprobs import logprobs_from_logits, response_logprobs
from .losses import explained_variance
from .rewards import token_rewards
from .rollout import Rollout
from .value_model import response_values

ADVANTAGE_ESTIMATORS = ("gae", "grpo", "rloo")


@dataclass
class Experience:
    """What one PPO update trains on; per-token tensors are ``(B, R)`` over response tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    old_values: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None  # the rollout's (None: from the attention mask)
    part_a_length: torch.Tensor | None = None  # GLM's prefix layout only

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def response_length(self) -> int:
        return self.response_mask.shape[1]

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, -self.response_length:]

    def select(self, index: torch.Tensor) -> "Experience":
        """The rows at ``index`` (a minibatch)."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if getattr(self, f.name) is not None})

    def to(self, device) -> "Experience":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if getattr(self, f.name) is not None})


@torch.no_grad()
def make_experience(rollout: Rollout, scores: torch.Tensor, policy, ref_policy, critic=None, *, kl_coef: float,
                    shared_critic: bool = False,
                    kl_estimator: str = "k1", temperature: float = 1.0, gamma: float = 1.0, lam: float = 0.95,
                    advantage_estimator: str = "gae", group_size: int | None = None,
                    whiten_advantages: bool = True, truncation_penalty: float = 0.0,
                    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    autocast: Callable[[], ContextManager] | None = None) -> tuple[Experience, dict]:
    """Turn a rollout and its sequence ``scores`` ``(B,)`` into an :class:`Experience` and metrics.

    ``advantage_estimator``: ``"gae"`` (needs ``critic``; GAE over token rewards, returns for the
    critic), ``"grpo"`` or ``"rloo"`` (need ``group_size``: each prompt's responses consecutive; the
    sequence return is the sum of its token rewards, i.e. score minus the KL penalty, and the group
    baseline gives one advantage per response, copied onto its tokens). ``whiten_advantages``
    whitens over all valid tokens (of all processes with ``all_reduce``).

    ``shared_critic``: ``policy`` is a :class:`~align.rl.value_model.PolicyWithValueHead` (or
    accelerate's wrapper of one) and ``critic`` is None: old log-probs and values come from its one
    forward. ``ref_policy`` must then be a plain causal LM (e.g. a copy of ``policy.policy``).

    ``autocast``: pass ``accelerator.autocast`` so the forwards run in the precision the update's
    forward will (``train_step`` runs it under autocast); otherwise bf16 training starts from a ratio
    that is not 1.

    Metrics (floats): ``score``, ``kl`` (per-sequence sum of the per-token KL, mean over sequences:
    what :class:`~align.rl.kl.AdaptiveKLController` tracks), ``reward`` (per-sequence sum of token
    rewards), ``response_length``, ``truncated``, and with a critic ``value_explained_variance``.
    """
    if advantage_estimator not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage_estimator {advantage_estimator!r}; choose one of {ADVANTAGE_ESTIMATORS}")
    if shared_critic and critic is not None:
        raise ValueError("shared_critic=True reads the values from the policy's own head: pass critic=None")
    if shared_critic and advantage_estimator != "gae":
        raise ValueError(f"shared_critic=True gives values for GAE; advantage_estimator={advantage_estimator!r} "
                         f"uses none (pass a plain policy)")
    if advantage_estimator == "gae" and critic is None and not shared_critic:
        raise ValueError("advantage_estimator='gae' needs a critic (or shared_critic=True); use 'grpo' or 'rloo' "
                         "without one")
    input_ids, attention_mask, mask = rollout.input_ids, rollout.attention_mask, rollout.response_mask
    length = rollout.response_length
    layout = {"position_ids": rollout.position_ids, "part_a_length": rollout.part_a_length}
    with (autocast or contextlib.nullcontext)():
        values = None
        if shared_critic:
            logits, values = policy(input_ids, attention_mask, length, **layout)
            old_logprobs = logprobs_from_logits(logits, input_ids[:, -length:], temperature, mask=mask)
            values = values.float() * mask
            del logits
        else:
            old_logprobs = response_logprobs(policy, input_ids, attention_mask, length, temperature, mask, **layout)
        ref_logprobs = response_logprobs(ref_policy, input_ids, attention_mask, length, temperature, mask, **layout)
        if advantage_estimator == "gae" and not shared_critic:
            values = response_values(critic, input_ids, attention_mask, length, **layout).float() * mask
    kl = kl_per_token(old_logprobs, ref_logprobs, kl_estimator, mask)
    scores = scores.to(kl.device).float()
    rewards = token_rewards(scores, kl, mask, kl_coef, rollout.truncated, truncation_penalty)
    returns = None
    if advantage_estimator == "gae":
        advantages, returns = gae_advantages(rewards, values, mask, gamma, lam)
    else:
        if group_size is None:
            raise ValueError(f"advantage_estimator={advantage_estimator!r} needs group_size")
        sequence_returns = rewards.sum(dim=1)
        baseline = grpo_advantages if advantage_estimator == "grpo" else rloo_advantages
        advantages = broadcast_to_tokens(baseline(sequence_returns, group_size), mask)
    if whiten_advantages:
        advantages = masked_whiten(advantages, mask, all_reduce=all_reduce)
    experience = Experience(input_ids, attention_mask, mask, old_logprobs, advantages, returns, values, **layout)
    metrics = {
        "score": scores.mean().item(),
        "kl": kl.sum(dim=1).mean().item(),
        "reward": rewards.sum(dim=1).mean().item(),
        "response_length": mask.sum(dim=1).float().mean().item(),
        "truncated": rollout.truncated.float().mean().item(),
    }
    if values is not None:
        metrics["value_explained_variance"] = explained_variance(values, returns, mask).item()
    return experience, metrics
