"""The PPO update: several epochs over shuffled minibatches of one :class:`~align.rl.experience.Experience`.

Each minibatch is one optimizer step of ``glm_base.trainkit.steps.train_step``: it is cut into
``accelerator.gradient_accumulation_steps`` micro-batches, and every micro-batch's loss is divided
by the step's *global* normaliser (valid response tokens of the minibatch on all processes, or its
sequences for the ``"sequence"`` reduction), so accumulation and data parallelism leave the update
unchanged. With a separate critic, the policy step and the critic step use the same micro-batches
and normaliser, each with its own model and optimizer. With a shared critic
(:class:`~align.rl.value_model.PolicyWithValueHead`, ``shared_critic=True``) one forward gives the
logits and the values and one optimizer step trains on ``policy loss (+ entropy, + ptx) + vf_coef x
value loss`` (TRL's classic PPOTrainer); metrics keep their ``policy/...`` and ``value/...`` names.

PPO-ptx (InstructGPT): with ``ptx_coef > 0`` and a ``ptx_batches`` iterator, each policy
micro-batch is paired with one language-modelling micro-batch (``input_ids``, ``attention_mask``,
``labels`` or ``shift_labels``); its loss (mean over the step's LM targets on all processes) times
``ptx_coef`` is added to the policy loss of the same optimizer step.

After the update, a vLLM rollout must receive the new weights (``VLLMRollout.push_weights``); the
caller does it, since it also knows about gathering sharded weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Iterator

import torch

from glm_base.trainkit.steps import global_count, train_step

from .experience import Experience
from .logprobs import logprobs_from_logits, response_logits
from .losses import REDUCTIONS, entropy_bonus, policy_loss, value_loss
from .value_model import response_values


@dataclass
class PPOUpdateArgs:
    ppo_epochs: int = field(default=4, metadata={"help": "passes over each batch of experience"})
    minibatch_size: int = field(default=8, metadata={"help": "sequences per optimizer step, per process"})
    clip_eps: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    clip_eps_high: float | None = field(default=None, metadata={"help": "upper ratio clip (None = clip_eps)"})
    value_clip_eps: float | None = field(default=0.2, metadata={"help": "value clip around old values (None = off)"})
    vf_coef: float = field(default=0.1, metadata={"help": "shared critic only: weight of the value loss in the loss"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight (0 = off)"})
    ptx_coef: float = field(default=0.0, metadata={"help": "weight of the pretraining/SFT LM loss (0 = off)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (log-probs use the same)"})
    loss_reduction: str = field(default="token", metadata={"help": "token | sequence (see align.rl.losses)"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0 = off)"})

    def __post_init__(self):
        if self.ppo_epochs < 1 or self.minibatch_size < 1:
            raise ValueError("ppo_epochs and minibatch_size must be >= 1")
        if self.loss_reduction not in REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {REDUCTIONS}, got {self.loss_reduction!r}")
        if self.vf_coef < 0:
            raise ValueError(f"vf_coef must be >= 0, got {self.vf_coef}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for PPO (log-probs of a greedy policy are undefined), "
                             f"got {self.temperature}")


def policy_step_loss(model, batch: dict, num_items: torch.Tensor, *, args: PPOUpdateArgs):
    """trainkit loss function for the policy: clipped surrogate (+ entropy bonus, + ptx LM loss).
    The entropy bonus needs the full softmax of every response position in fp32 (``B x R x V``):
    with a large vocabulary keep micro-batches small when ``entropy_coef > 0``."""
    exp: Experience = batch["experience"]
    logits = response_logits(model, exp.input_ids, exp.attention_mask, exp.response_length, exp.position_ids,
                             exp.part_a_length)
    return _policy_objective(model, logits, batch, num_items, args)


def _policy_objective(model, logits: torch.Tensor, batch: dict, num_items: torch.Tensor, args: PPOUpdateArgs):
    """The policy's loss and metrics from its response ``logits``; ``model`` runs the ptx batch."""
    exp: Experience = batch["experience"]
    logprobs = logprobs_from_logits(logits, exp.response_ids, args.temperature, mask=exp.response_mask)
    loss, metrics = policy_loss(logprobs, exp.old_logprobs, exp.advantages, exp.response_mask, args.clip_eps,
                                args.clip_eps_high, args.loss_reduction, num_items)
    if args.entropy_coef:
        entropy, entropy_metrics = entropy_bonus(logits.float() / args.temperature, exp.response_mask,
                                                 args.loss_reduction, num_items)
        loss = loss - args.entropy_coef * entropy
        metrics.update(entropy_metrics)
    if "ptx" in batch:
        ptx_loss = model(**batch["ptx"], num_items_in_batch=batch["ptx_num_items"], use_cache=False).loss
        loss = loss + args.ptx_coef * ptx_loss
        metrics["ptx_loss"] = ptx_loss.detach()
    return loss, metrics


def value_step_loss(critic, batch: dict, num_items: torch.Tensor, *, args: PPOUpdateArgs):
    """trainkit loss function for the critic: clipped value loss against the GAE returns."""
    exp: Experience = batch["experience"]
    values = response_values(critic, exp.input_ids, exp.attention_mask, exp.response_length, exp.position_ids,
                             exp.part_a_length)
    return value_loss(values, exp.old_values, exp.returns, exp.response_mask, args.value_clip_eps,
                      args.loss_reduction, num_items)


def shared_step_loss(model, batch: dict, num_items: torch.Tensor, *, args: PPOUpdateArgs):
    """trainkit loss function for a :class:`~align.rl.value_model.PolicyWithValueHead`: from one
    forward, the policy's loss (as :func:`policy_step_loss`) ``+ args.vf_coef x`` the clipped value
    loss (as :func:`value_step_loss`), both over the step's normaliser. Metrics are prefixed:
    ``policy/loss`` and ``value/loss`` (the two parts, the value loss without ``vf_coef``) and every
    metric of each part under ``policy/`` or ``value/``."""
    exp: Experience = batch["experience"]
    logits, values = model(exp.input_ids, exp.attention_mask, exp.response_length, exp.position_ids,
                           exp.part_a_length)
    policy_part, policy_metrics = _policy_objective(model, logits, batch, num_items, args)
    value_part, value_metrics = value_loss(values, exp.old_values, exp.returns, exp.response_mask,
                                           args.value_clip_eps, args.loss_reduction, num_items)
    metrics = {"policy/loss": policy_part.detach(), "value/loss": value_part.detach(),
               **{f"policy/{k}": v for k, v in policy_metrics.items()},
               **{f"value/{k}": v for k, v in value_metrics.items()}}
    return policy_part + args.vf_coef * value_part, metrics


def _lm_targets(batch: dict) -> int:
    if "shift_labels" in batch:
        return int((batch["shift_labels"] != -100).sum())
    if "labels" in batch:
        return int((batch["labels"][:, 1:] != -100).sum())
    raise ValueError(f"a ptx batch needs labels or shift_labels; it has {sorted(batch)}")


def ppo_update(accelerator, policy, policy_optimizer, experience: Experience, args: PPOUpdateArgs, *,
               critic=None, critic_optimizer=None, ptx_batches: Iterator[dict] | None = None,
               generator: torch.Generator | None = None, policy_scheduler=None, critic_scheduler=None,
               shared_critic: bool = False) -> dict:
    """Run ``args.ppo_epochs`` epochs over ``experience`` (this process's share; every process must
    hold as many rows). Each epoch reshuffles with ``generator`` and cuts whole minibatches; rows
    beyond the last whole minibatch sit that epoch out (others next epoch). Returns the mean over
    optimizer steps of each metric, named ``policy/...``, ``value/...`` (losses, clip fractions, KL
    to the old policy, gradient norms), and ``steps``.

    ``shared_critic=True``: ``policy`` is a :class:`~align.rl.value_model.PolicyWithValueHead` (or
    accelerate's wrapper of one) trained by ``policy_optimizer`` (its head included) with
    :func:`shared_step_loss`; ``critic`` must be None. Then ``policy/grad_norm`` is the norm of the
    whole model's gradient (there is no ``value/grad_norm``) and ``shared/loss`` the loss stepped on.

    Raises ``ValueError`` when ``minibatch_size`` does not divide into the accumulation steps, when
    the experience has no returns but a critic (separate or shared) is given, or ptx is asked for
    without batches.
    """
    accumulation = accelerator.gradient_accumulation_steps
    if args.minibatch_size % accumulation:
        raise ValueError(f"minibatch_size {args.minibatch_size} must split into {accumulation} micro-batches")
    if shared_critic and critic is not None:
        raise ValueError("shared_critic=True trains the policy's own value head: pass critic=None")
    if critic is not None and (experience.returns is None or critic_optimizer is None):
        raise ValueError("a critic update needs experience with returns/old values (GAE) and critic_optimizer")
    if shared_critic and (experience.returns is None or experience.old_values is None):
        raise ValueError("a shared-critic update needs experience with returns/old values (GAE)")
    if args.ptx_coef > 0 and ptx_batches is None:
        raise ValueError("ptx_coef > 0 needs ptx_batches")
    micro = args.minibatch_size // accumulation
    rows = len(experience)
    policy_fn = partial(shared_step_loss if shared_critic else policy_step_loss, args=args)
    value_fn = partial(value_step_loss, args=args)
    sums: dict[str, float] = {}
    steps = 0

    def add(result, prefix: str | None) -> None:
        """Sum a step's loss, gradient norm and metrics under ``prefix/`` (``None``: the shared
        step, whose metrics carry their own prefixes and whose loss is ``shared/loss``)."""
        named = {f"{prefix}/{k}": v for k, v in result.metrics.items()} if prefix else dict(result.metrics)
        named[f"{prefix}/loss" if prefix else "shared/loss"] = result.loss
        if result.grad_norm is not None:
            named[f"{prefix or 'policy'}/grad_norm"] = result.grad_norm
        for name, value in named.items():
            sums[name] = sums.get(name, 0.0) + float(value)

    for _ in range(args.ppo_epochs):
        order = torch.randperm(rows, generator=generator)
        for start in range(0, rows - args.minibatch_size + 1, args.minibatch_size):
            index = order[start:start + args.minibatch_size].to(experience.input_ids.device)
            parts = [experience.select(index[i:i + micro]) for i in range(0, args.minibatch_size, micro)]
            if args.loss_reduction == "token":
                local = sum(int(p.response_mask.sum()) for p in parts)
            else:
                local = args.minibatch_size
            normaliser = global_count(accelerator, local)
            batches = [{"experience": p} for p in parts]
            if args.ptx_coef > 0:
                lm = [next(ptx_batches, None) for _ in parts]
                if any(b is None for b in lm):
                    raise ValueError("ptx_batches ran out; give an endless iterator (cycle the SFT/pretraining data)")
                share = accelerator.num_processes * accumulation
                lm_items = torch.tensor(max(global_count(accelerator, sum(_lm_targets(b) for b in lm)), 1.0) / share,
                                        device=accelerator.device)
                for b, lm_batch in zip(batches, lm):
                    b["ptx"] = {k: v.to(accelerator.device) for k, v in lm_batch.items()}
                    b["ptx_num_items"] = lm_items
            add(train_step(accelerator, policy, policy_optimizer, batches, normaliser, policy_fn, args.grad_clip),
                None if shared_critic else "policy")
            if policy_scheduler is not None:
                policy_scheduler.step()
            if critic is not None:
                add(train_step(accelerator, critic, critic_optimizer, batches, normaliser, value_fn, args.grad_clip),
                    "value")
                if critic_scheduler is not None:
                    critic_scheduler.step()
            steps += 1
    if steps == 0:
        raise ValueError(f"experience of {rows} rows holds no full minibatch of {args.minibatch_size}")
    return {**{name: total / steps for name, total in sums.items()}, "steps": steps}
