"""PPO / RLHF of a chat policy (an SFT model directory) against a reward model and rule rewards.

    accelerate launch align/ppo.py --config configs/ppo/tiny.yaml [key=value ...]
    python -m align.ppo --config configs/ppo/tiny.yaml
    torchrun --standalone --nproc_per_node 2 align/ppo.py --config configs/ppo/tiny.yaml     (CPU, 2 processes)

One step: sample ``rollout.samples_per_prompt`` responses to each of ``rollout.prompts_per_step``
prompts (HF ``generate`` or a colocated vLLM engine) -> score them (``reward.rm_weight`` x reward
model + the weighted rule rewards of :mod:`rewards.rules`) -> optionally normalise the scores
(running mean/std over the run) -> :func:`align.rl.experience.make_experience` (old/reference
log-probs, per-token KL penalty, GAE with the critic, or GRPO/RLOO group baselines without one) ->
:func:`align.rl.update.ppo_update` (``ppo.epochs`` passes of ``ppo.minibatch_size``-sequence
optimizer steps, + PPO-ptx on SFT rows) -> adaptive KL update -> weights to vLLM. Prompts are split
between processes (rows ``rank::world`` of the step's prompts), and every normaliser (advantage
whitening, loss token counts, reward statistics, KL) is global, so N processes train as one.

Outputs in ``output_dir``: ``config.yaml``; ``metrics.jsonl`` (+ TensorBoard), one flat object per
logged step (``reward``, ``rules/<name>``, ``rm``, ``kl``, ``kl_coef``, ``entropy``, ``clipfrac``,
``value_loss``, ``explained_variance``, ``response_length``, timings, ``eval/...``); ``samples.jsonl``
(greedy replies to held-out prompts at every evaluation, tagged with the step); ``checkpoints/`` (the
policy, the critic in ``value/``, optimizer/scheduler state, KL controller and reward statistics:
``resume=true`` continues exactly); ``model/`` (final policy, critic in ``model/value/``);
``eval.json`` (held-out judges for the initial and the final policy: :mod:`align.evaluate`);
``reward_curve.png``; ``summary.json``.

With ``critic.shared=true`` the critic is a value head on the policy's own trunk
(:class:`align.rl.value_model.PolicyWithValueHead`, as TRL's classic PPOTrainer): one forward per
experience row and per minibatch gives log-probs and values, one optimizer (the policy's) steps on
``policy loss + critic.vf_coef x value loss``. Checkpoints and ``model/`` then hold the plain policy
with only the head in ``value/model.safetensors``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file (accelerate launch align/ppo.py): make `import align` work
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib
import copy
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from align.evaluate import (EvalArgs, evaluate_policy, fits, heldout_examples, heldout_prompts, judge_counts,
                            metrics_from_counts, summed_counts)
from align.ppo_data import (PromptRow, read_prompts, rule_metadata, rule_passing_rows, world_prompts,
                            world_repeats_problem)
from align.rl.experience import make_experience
from align.rl.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController
from align.rl.rewards import RunningMeanStd
from align.rl.rollout import HFRollout, chat_prompt_ids
from align.rl.scorer import Scorer
from align.rl.update import PPOUpdateArgs, ppo_update
from align.rl.value_model import PolicyWithValueHead, ValueModel
from common.errors import UserError
from glm_base.trainkit.args import TrainArgs
from glm_base.trainkit.batches import PermutationSampler, shard_rows
from glm_base.trainkit.metrics import plot_curves
from glm_base.trainkit.optim import OptimArgs, build_optimizer
from glm_base.trainkit.run import Run, start_run, train_main
from glm_base.trainkit.steps import NonFiniteLoss, at_step

logger = logging.getLogger("align.ppo")

ALGORITHMS = ("ppo", "grpo", "rloo")
ENGINES = ("hf", "vllm")


# --- config --------------------------------------------------------------------------------------

@dataclass
class LoraArgs:
    enabled: bool = field(default=False, metadata={"help": "train a PEFT LoRA adapter on the policy instead of every weight"})
    r: int = field(default=8, metadata={"help": "LoRA rank"})
    alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (scale = alpha / r)"})
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], metadata={
        "help": "module names that get adapters (attention: q/k/v/o_proj; MLP: gate_up_proj, down_proj)"})


@dataclass
class PolicyArgs:
    init_from: str = field(default="runs/sft-tiny/model", metadata={"help": "the SFT model directory the policy starts from"})
    ref: str = field(default="copy", metadata={
        "help": "reference model for the KL penalty: 'copy' (a frozen copy of init_from; with LoRA the policy's own "
                "base weights, adapter disabled: no second model in memory) or a model directory"})
    lora: LoraArgs = field(default_factory=LoraArgs)


@dataclass
class CriticArgs:
    shared: bool = field(default=False, metadata={
        "help": "false: a separate critic (a copy of a backbone + value head, its own optimizer; OpenRLHF, veRL). "
                "true: a value head on the policy's own final hidden state (TRL's classic PPOTrainer): one forward "
                "and one optimizer step per minibatch on policy loss + vf_coef x value loss, trained by the "
                "policy's optimizer at optim.lr (the head included); about half the update's compute, but the "
                "value loss's gradient flows into the policy's trunk. init_from and lr do not apply"})
    vf_coef: float = field(default=0.1, metadata={"help": "shared critic only: weight of the value loss (TRL: 0.1)"})
    init_from: str = field(default="auto", metadata={
        "help": "separate critic only: auto (the reward model when there is one, else the policy) | reward | policy | "
                "a directory (a saved critic, e.g. a checkpoint's value/, or any causal LM / reward model)"})
    lr: float = field(default=1e-5, metadata={
        "help": "separate critic's learning rate (other optimizer fields as optim); ignored when shared"})


@dataclass
class RewardArgs:
    model: str | None = field(default=None, metadata={"help": "reward model directory (GLMForSequenceClassification, num_labels 1) or null"})
    rm_weight: float = field(default=1.0, metadata={"help": "weight of the reward model's score"})
    rules: dict[str, float] = field(default_factory=lambda: {"mixing": 1.0, "refusal": 1.0, "safety": 1.0}, metadata={
        "help": "rule -> weight (rewards.rules: mixing, refusal, safety, consistency, format); {} = none"})
    max_length: int = field(default=1024, metadata={"help": "most tokens the reward model reads (prompt cut from the left)"})
    batch_size: int = field(default=16, metadata={"help": "responses per reward-model forward"})


@dataclass
class RolloutArgs:
    engine: str = field(default="hf", metadata={"help": "hf (model.generate) | vllm (colocated engine; GLM-4 variant only)", "choices": list(ENGINES)})
    max_new_tokens: int = field(default=48, metadata={"help": "most tokens per response"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature (log-probs use the same)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1 = off)"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off)"})
    prompts_per_step: int = field(default=8, metadata={"help": "prompts per step (all processes)"})
    samples_per_prompt: int = field(default=2, metadata={"help": "responses per prompt (consecutive; GRPO/RLOO groups)"})
    max_prompt_length: int = field(default=512, metadata={"help": "prompts longer than this (in tokens) are left out"})
    per_prompt_seed: bool = field(default=False, metadata={
        "help": "hf engine: sample each prompt's group in its own generate call seeded by (seed, step, prompt): "
                "samples then do not depend on the number of processes (slower)"})
    vllm_gpu_memory_utilization: float = field(default=0.3, metadata={"help": "share of GPU memory the vLLM engine takes"})
    vllm_sleep_mode: bool = field(default=False, metadata={"help": "free the engine's weights and KV cache between rollouts"})


@dataclass
class PPOArgs:
    algorithm: str = field(default="ppo", metadata={"help": "ppo (critic + GAE) | grpo | rloo (group baselines, no critic)", "choices": list(ALGORITHMS)})
    kl_estimator: str = field(default="k1", metadata={"help": "per-token KL in the reward: k1 | k2 | k3", "choices": list(KL_ESTIMATORS)})
    kl_coef: float = field(default=0.05, metadata={"help": "KL penalty coefficient (the start value when adaptive)"})
    kl_target: float | None = field(default=None, metadata={"help": "adaptive KL: target KL per response (nats); null = fixed coefficient"})
    kl_horizon: float = field(default=10000, metadata={"help": "adaptive KL horizon (responses)"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    clip_eps: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    clip_eps_high: float | None = field(default=None, metadata={"help": "upper ratio clip (null = clip_eps)"})
    value_clip_eps: float | None = field(default=0.2, metadata={"help": "value clip around the old values (null = off)"})
    epochs: int = field(default=4, metadata={"help": "passes over each step's experience"})
    minibatch_size: int = field(default=8, metadata={"help": "sequences per optimizer step (all processes)"})
    entropy_coef: float = field(default=0.0, metadata={"help": "entropy bonus weight"})
    whiten_advantages: bool = field(default=True, metadata={"help": "whiten advantages over the step's valid tokens"})
    reward_normalization: str = field(default="none", metadata={"help": "none | running (scores standardised by the run's running mean/std)", "choices": ["none", "running"]})
    reward_clip: float | None = field(default=None, metadata={"help": "clip normalised scores to +-this (null = off)"})
    truncation_penalty: float = field(default=0.0, metadata={"help": "added to the score of a response without an end token (e.g. -1)"})
    loss_reduction: str = field(default="token", metadata={"help": "token | sequence", "choices": ["token", "sequence"]})
    ptx_coef: float = field(default=0.0, metadata={"help": "weight of the SFT language-model loss (PPO-ptx; 0 = off)"})
    ptx_batch_size: int = field(default=4, metadata={"help": "SFT rows per ptx micro-batch (all processes)"})
    ptx_rule_filter: bool = field(default=True, metadata={
        "help": "leave out of the ptx data the rows whose reply the configured rules penalise (a wrong-language "
                "reply, a needless refusal): PPO-ptx would teach back the flaws PPO removes"})


@dataclass
class PPODataArgs:
    prompt_files: list[str] = field(default_factory=list, metadata={"help": "JSONL prompts ({prompt|messages, lang, category, label?}); empty = the world's train prompts"})
    eval_prompt_files: list[str] = field(default_factory=list, metadata={"help": "held-out JSONL prompts; empty = the world's eval prompts"})
    world_kinds: list[str] = field(default_factory=lambda: ["sft", "safety"], metadata={"help": "world splits whose prompts are used (sft, safety)"})
    world_repeats: dict[str, int] = field(default_factory=dict, metadata={
        "help": "world split -> times its training prompts are listed per epoch, e.g. {safety: 4}: the harmful vs "
                "benign-but-alarming prompts are otherwise a small share of the rollouts"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the default world", "choices": ["tiny", "small", "medium"]})
    world_seed: int = field(default=0, metadata={"help": "seed of the default world"})
    ptx_files: list[str] = field(default_factory=list, metadata={"help": "SFT chat rows for PPO-ptx; empty = the world's sft train split"})
    max_length: int = field(default=512, metadata={"help": "most tokens of a ptx or held-out SFT example (longer ones are dropped)"})


@dataclass
class PPOOptimArgs(OptimArgs):
    """The shared optimizer fields with RLHF defaults (small constant learning rate)."""

    lr: float = field(default=1e-5, metadata={"help": "policy learning rate"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW decay (not on norms, biases, embeddings)"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warmup (optimizer steps)"})
    min_lr_ratio: float = field(default=1.0, metadata={"help": "cosine floor as a share of the peak (1 = constant)"})


@dataclass
class PPOConfig(TrainArgs):
    """PPO/RLHF of an SFT policy against a reward model and rule rewards (align.ppo)."""

    output_dir: str = field(default="runs/ppo", metadata={"help": "run directory"})
    max_steps: int = field(default=20, metadata={"help": "PPO steps (rollout + update)"})
    batch_size: int = field(default=1, metadata={"help": "unused by PPO: a step is rollout.prompts_per_step x rollout.samples_per_prompt responses"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per PPO minibatch (per process)"})
    eval_every: int = field(default=10, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_every: int = field(default=10, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    log_every: int = field(default=1, metadata={"help": "log metrics every N steps"})
    model: PolicyArgs = field(default_factory=PolicyArgs)
    critic: CriticArgs = field(default_factory=CriticArgs)
    reward: RewardArgs = field(default_factory=RewardArgs)
    rollout: RolloutArgs = field(default_factory=RolloutArgs)
    ppo: PPOArgs = field(default_factory=PPOArgs)
    data: PPODataArgs = field(default_factory=PPODataArgs)
    optim: PPOOptimArgs = field(default_factory=PPOOptimArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)

    def __post_init__(self):
        super().__post_init__()
        r, p = self.rollout, self.ppo
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if r.prompts_per_step < 1 or r.samples_per_prompt < 1 or r.max_new_tokens < 1:
            raise ValueError("rollout.prompts_per_step, samples_per_prompt and max_new_tokens must be >= 1")
        if r.temperature <= 0:
            raise ValueError(f"rollout.temperature must be > 0 for PPO, got {r.temperature}")
        if p.algorithm in ("grpo", "rloo") and r.samples_per_prompt < 2:
            raise ValueError(f"ppo.algorithm={p.algorithm} compares each prompt's responses: rollout.samples_per_prompt must be >= 2")
        responses = r.prompts_per_step * r.samples_per_prompt
        if p.minibatch_size < 1 or responses % p.minibatch_size:
            raise ValueError(f"ppo.minibatch_size={p.minibatch_size} must divide the step's {responses} responses "
                             f"(rollout.prompts_per_step x rollout.samples_per_prompt)")
        if p.kl_target is not None and p.kl_target <= 0:
            raise ValueError("ppo.kl_target must be > 0 (or null for a fixed coefficient)")
        if p.ptx_coef < 0 or p.ptx_batch_size < 1:
            raise ValueError("ppo.ptx_coef must be >= 0 and ppo.ptx_batch_size >= 1")
        if not self.reward.model and not self.reward.rules:
            raise ValueError("nothing to reward: set reward.model, reward.rules, or both")
        problem = world_repeats_problem(self.data.world_repeats, self.data.world_kinds)
        if problem:
            raise ValueError(problem)
        if self.critic.shared and self.critic.init_from != "auto":
            raise ValueError(f"critic.init_from={self.critic.init_from} has no meaning with critic.shared=true: the "
                             f"value head sits on the policy (model.init_from) and starts at zero; remove "
                             f"critic.init_from or set critic.shared=false")
        if self.critic.shared and p.algorithm != "ppo":
            raise ValueError(f"critic.shared=true applies to ppo.algorithm=ppo; {p.algorithm} has no critic")
        if self.critic.vf_coef < 0:
            raise ValueError(f"critic.vf_coef must be >= 0, got {self.critic.vf_coef}")
        if self.critic.init_from == "reward" and not self.reward.model:
            raise ValueError("critic.init_from=reward needs reward.model")
        if self.model.lora.enabled and r.engine == "vllm":
            raise ValueError("model.lora.enabled with rollout.engine=vllm is not supported yet (the adapter would have "
                             "to be merged before every push); use rollout.engine=hf or full fine-tuning")

    @property
    def responses_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.samples_per_prompt


# --- setup pieces --------------------------------------------------------------------------------

def check_inputs(cfg: PPOConfig) -> None:
    """Before the run directory is made: the model directories exist, and a vLLM rollout of a GLM-1
    policy is refused."""
    from glm_base.loading import check_model_dir

    policy_dir = check_model_dir(cfg.model.init_from, "policy (model.init_from)",
                                 hint="train one first: python -m align.sft --config configs/sft/tiny.yaml")
    if cfg.reward.model:
        check_model_dir(cfg.reward.model, "reward model (reward.model)",
                        hint="train one: python -m rewards.train --config configs/rm/tiny.yaml")
    if cfg.model.ref != "copy":
        check_model_dir(cfg.model.ref, "reference model (model.ref)")
    if cfg.rollout.engine != "vllm":
        return
    from align.rl.vllm_engine import GLM1_MESSAGE

    config = json.loads((policy_dir / "config.json").read_text())
    if config.get("architecture") == "glm1":
        raise UserError(f"rollout.engine=vllm cannot serve the GLM-1 policy {cfg.model.init_from}: {GLM1_MESSAGE} "
                        f"(set rollout.engine=hf)")


def load_models(cfg: PPOConfig):
    """``(policy, reference, tokenizer, reward_model, reward_tokenizer, critic)``; dropout off in the
    policy, reference and critic (old and new log-probs must agree before an update). ``critic`` is
    None for GRPO/RLOO and with ``critic.shared`` (the head is added around the policy in :func:`run`)."""
    from transformers import AutoModelForSequenceClassification

    from glm_base.loading import load_model_and_tokenizer

    no_dropout = dict(hidden_dropout=0.0, attention_dropout=0.0)
    policy, tokenizer = load_model_and_tokenizer(
        cfg.model.init_from, what="policy (model.init_from)", **no_dropout,
        hint="train one first: python -m align.sft --config configs/sft/tiny.yaml")
    check_chat_template(tokenizer, cfg.model.init_from)
    critic_source = policy  # a critic from the policy copies the SFT weights, before any adapter
    if cfg.model.lora.enabled:
        policy = add_lora(policy, cfg.model.lora)
    if cfg.model.ref == "copy":
        reference = AdapterDisabled(policy) if cfg.model.lora.enabled else copy.deepcopy(policy)
    else:
        reference, _ = load_model_and_tokenizer(cfg.model.ref, what="reference model (model.ref)", **no_dropout)
    if not isinstance(reference, AdapterDisabled):
        reference.eval().requires_grad_(False)
    reward_model = reward_tokenizer = None
    if cfg.reward.model:
        reward_model, reward_tokenizer = load_model_and_tokenizer(
            cfg.reward.model, model_class=AutoModelForSequenceClassification, what="reward model (reward.model)",
            hint="train one: python -m rewards.train --config configs/rm/tiny.yaml", **no_dropout)
        if reward_model.config.num_labels != 1:
            raise UserError(f"reward.model {cfg.reward.model} has num_labels={reward_model.config.num_labels}; "
                            f"a reward model has one score (num_labels 1)")
        reward_model.eval().requires_grad_(False)
        check_chat_template(reward_tokenizer, cfg.reward.model)
    critic = None
    if cfg.ppo.algorithm == "ppo" and not cfg.critic.shared:
        critic = build_critic(cfg, critic_source, reward_model)
    return policy, reference, tokenizer, reward_model, reward_tokenizer, critic


def add_lora(policy, lora: LoraArgs):
    """The policy as a PEFT LoRA model (only the adapter trains; dropout off, as in the policy)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=0.0, target_modules=list(lora.target_modules),
                        task_type="CAUSAL_LM")
    return get_peft_model(policy, config)


class AdapterDisabled(torch.nn.Module):
    """The reference of a LoRA policy: the policy's forward with its adapter disabled (its base
    weights, which are the SFT model's and never train). Holds no weights of its own."""

    def __init__(self, peft_model):
        super().__init__()
        self._peft = [peft_model]  # a list, so the policy's parameters are not registered twice

    @property
    def config(self):
        return self._peft[0].config

    def forward(self, *args, **kwargs):
        with self._peft[0].disable_adapter():
            return self._peft[0](*args, **kwargs)


def policy_of(model):
    """The policy inside an (unwrapped) trained model: ``model.policy`` for a shared critic's
    :class:`PolicyWithValueHead`, else ``model`` itself."""
    return model.policy if isinstance(model, PolicyWithValueHead) else model


def merged_copy(policy):
    """A plain ``GLMForCausalLM`` with the LoRA adapter merged into a copy of the weights."""
    return copy.deepcopy(policy).merge_and_unload()


def check_chat_template(tokenizer, directory: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"the tokenizer of {directory} has no chat template (chat_template.jinja); prompts and "
                        f"replies are rendered with it. Save the tokenizer of glm_base.tokenizer (its "
                        f"CHAT_TEMPLATE) into that directory")


def build_critic(cfg: PPOConfig, policy, reward_model) -> ValueModel:
    source = cfg.critic.init_from
    if source == "auto":
        source = "reward" if reward_model is not None else "policy"
    if source == "reward":
        return ValueModel.from_causal_lm(reward_model)
    if source == "policy":
        return ValueModel.from_causal_lm(policy)
    from safetensors import safe_open

    from glm_base.loading import check_model_dir

    directory = check_model_dir(source, "critic (critic.init_from)")
    weights = directory / "model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as handle:
            if "value_head.weight" in handle.keys():
                return ValueModel.from_pretrained(directory)
    import glm_base  # noqa: F401
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(directory)
    head = AutoModelForSequenceClassification if any("Classification" in a for a in config.architectures or []) \
        else AutoModelForCausalLM
    return ValueModel.from_causal_lm(head.from_pretrained(directory, hidden_dropout=0.0, attention_dropout=0.0))


def load_prompt_rows(cfg: PPOConfig, run: Run) -> tuple[list[PromptRow], list[PromptRow]]:
    """Training prompts and held-out prompts (the user's files, else the world's)."""
    d = cfg.data
    with run.main_process_first():  # the main process builds the default world; the others wait
        if d.prompt_files:
            train = [row for path in d.prompt_files for row in read_prompts(path)]
        else:
            train = world_prompts("train", d.world_kinds, d.world_scale, d.world_seed, d.world_repeats)
        if d.eval_prompt_files:
            held_out = [row for path in d.eval_prompt_files for row in read_prompts(path)]
            held_out = held_out[:cfg.eval.prompts] if cfg.eval.prompts else held_out
        else:
            held_out = heldout_prompts(cfg.eval.prompts, d.world_scale, d.world_seed, cfg.eval.safety_probe)
    return train, held_out


def encode_prompts(rows: list[PromptRow], tokenizer, architecture: str, cfg: PPOConfig,
                   max_positions: int | None) -> tuple[list[PromptRow], list[list[int]]]:
    """Each row's prompt ids as SFT laid it out; rows longer than ``rollout.max_prompt_length`` or
    than the model's positions allow are left out (counted in the log)."""
    kept, ids = [], []
    for row in rows:
        prompt = chat_prompt_ids(tokenizer, row.messages, architecture)
        if len(prompt) <= cfg.rollout.max_prompt_length and fits(prompt, cfg.rollout.max_new_tokens, max_positions):
            kept.append(row)
            ids.append(prompt)
    if not kept:
        raise UserError(f"no prompt fits rollout.max_prompt_length={cfg.rollout.max_prompt_length} and the model's "
                        f"{max_positions} positions with {cfg.rollout.max_new_tokens} new tokens")
    if len(kept) < len(rows):
        logger.info("left out %d of %d prompts longer than rollout.max_prompt_length", len(rows) - len(kept), len(rows))
    return kept, ids


class PtxBatches:
    """Endless SFT micro-batches for PPO-ptx: global batches of ``batch_size`` rows in a permutation
    per epoch, this process's rows of each; ``position`` (global batches consumed) resumes exactly."""

    KEYS = ("input_ids", "attention_mask", "position_ids", "part_a_length", "shift_labels")

    def __init__(self, examples, batch_size: int, seed: int, pad_id: int, rank: int, world: int, position: int = 0):
        self.examples, self.pad_id, self.rank, self.world = examples, pad_id, rank, world
        self.sampler = PermutationSampler(len(examples), batch_size, seed)
        self.position = position

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        from glm_base.infilling import IGNORE_INDEX

        from align.packing import collate

        batch = collate([[self.examples[i]] for i in self.sampler.batch(self.position)], self.pad_id, "token")
        self.position += 1
        batch = {k: v for k, v in batch.items() if k in self.KEYS}
        return shard_rows(batch, self.rank, self.world, ignore={"shift_labels": IGNORE_INDEX})


@contextlib.contextmanager
def full_parameters(accelerator, model):
    """Under DeepSpeed ZeRO-3 gather the model's full parameters (generation, pushes to vLLM);
    elsewhere nothing to do."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", 0) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
            yield
    else:
        yield


def make_sampler(cfg: PPOConfig, run: Run, policy, tokenizer, architecture: str):
    """The rollout engine: ``HFRollout`` on the unwrapped policy, or a colocated ``VLLMRollout``
    on an export of ``model.init_from`` (written to ``output_dir/vllm_policy``) that receives the
    policy's weights at once and after every update."""
    r = cfg.rollout
    unwrapped = run.accelerator.unwrap_model(policy)
    sampling = dict(temperature=r.temperature, top_p=r.top_p, top_k=r.top_k)
    if r.engine == "hf":
        return HFRollout.for_chat(unwrapped, tokenizer, max_new_tokens=r.max_new_tokens, **sampling)
    from align.rl.vllm_engine import VLLMRollout
    from glm_base.export import export_to_transformers
    from glm_base.tokenizer import special_token_ids

    exported = run.run_dir / "vllm_policy"
    with run.main_process_first():
        if run.is_main and not (exported / "config.json").is_file():
            export_to_transformers(cfg.model.init_from, exported)
    ids = special_token_ids(tokenizer)
    sampler = VLLMRollout.colocated(unwrapped, exported, eos_token_ids=ids.chat_stop, pad_token_id=ids.pad,
                                    max_new_tokens=r.max_new_tokens, gpu_memory_utilization=r.vllm_gpu_memory_utilization,
                                    enable_sleep_mode=r.vllm_sleep_mode, seed=cfg.seed, **sampling)
    with full_parameters(run.accelerator, unwrapped):
        sampler.push_weights()  # a resumed policy is not the exported one
    return sampler


def step_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, rank or prompt index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def roll_out(cfg: PPOConfig, sampler, prompt_ids: list[list[int]], global_indices: list[int], step: int, rank: int):
    """``samples_per_prompt`` responses to each prompt, each prompt's consecutive. Sampling is
    seeded by (seed, step, rank), or per prompt by (seed, step, prompt index) with
    ``rollout.per_prompt_seed`` (same samples whatever the number of processes)."""
    k = cfg.rollout.samples_per_prompt
    if cfg.rollout.per_prompt_seed and isinstance(sampler, HFRollout):
        from align.rl.rollout import Rollout

        parts = []
        for ids, g in zip(prompt_ids, global_indices):
            torch.manual_seed(step_seed(cfg.seed, step, g))
            parts.append(sampler.generate([ids] * k))
        return concat_rollouts(parts, sampler.pad_token_id, Rollout)
    torch.manual_seed(step_seed(cfg.seed, step, 10_000_000 + rank))
    return sampler.generate([ids for ids in prompt_ids for _ in range(k)])


def concat_rollouts(parts, pad_id: int, rollout_cls):
    """One rollout of several: prompts re-left-padded, responses re-right-padded to a common width."""
    prompt_width = max(p.prompt_ids.shape[1] for p in parts)
    response_width = max(p.response_ids.shape[1] for p in parts)

    def pad(t, width, value, left):
        extra = width - t.shape[1]
        if extra == 0:
            return t
        filler = torch.full((t.shape[0], extra), value, dtype=t.dtype, device=t.device)
        return torch.cat([filler, t] if left else [t, filler], dim=1)

    return rollout_cls(
        prompt_ids=torch.cat([pad(p.prompt_ids, prompt_width, pad_id, True) for p in parts]),
        prompt_mask=torch.cat([pad(p.prompt_mask, prompt_width, 0, True) for p in parts]),
        response_ids=torch.cat([pad(p.response_ids, response_width, pad_id, False) for p in parts]),
        response_mask=torch.cat([pad(p.response_mask, response_width, 0, False) for p in parts]),
        truncated=torch.cat([p.truncated for p in parts]),
        logprobs=None if any(p.logprobs is None for p in parts) else
        torch.cat([pad(p.logprobs, response_width, 0.0, False) for p in parts]),
        layout=parts[0].layout)


def global_mean(accelerator, values: dict[str, float]) -> dict[str, float]:
    """The mean over processes of each value (each process holds as many rows)."""
    if accelerator.num_processes == 1 or not values:
        return dict(values)
    names = sorted(values)
    stacked = torch.tensor([values[n] for n in names], dtype=torch.float64, device=accelerator.device)
    reduced = accelerator.reduce(stacked, reduction="mean").cpu().tolist()
    return dict(zip(names, reduced))


def rollout_behaviour(accelerator, rows: list[PromptRow], texts: list[str]) -> dict[str, float | None]:
    """What the sampled responses of a step do, judged as the evaluation judges greedy replies
    (:func:`align.evaluate.judge_counts`, counts summed over processes): ``rollout/harmful_refusal_rate``,
    ``rollout/needless_refusal_rate``, ``rollout/mixing_rate`` (None when the step had no such prompt).
    Set beside the greedy ``eval/`` figures they show whether PPO reinforces what it is meant to: a
    policy that never samples a clean refusal cannot be taught to refuse."""
    metrics = metrics_from_counts(summed_counts(accelerator, judge_counts(rows, texts)))
    return {f"rollout/{name}": metrics[name] for name in ("harmful_refusal_rate", "needless_refusal_rate", "mixing_rate")}


def write_samples(run: Run, step: int, table: list[dict]) -> None:
    from common.jsonl import append_jsonl

    if run.is_main:
        for row in table:
            append_jsonl(run.run_dir / "samples.jsonl", {"step": step, **row})


# --- the loop ------------------------------------------------------------------------------------

def run(cfg: PPOConfig) -> dict[str, Any]:
    check_inputs(cfg)
    run = start_run(cfg, "ppo")
    accelerator = run.accelerator
    policy, reference, tokenizer, reward_model, reward_tokenizer, critic = load_models(cfg)
    architecture = getattr(policy.config, "architecture", "glm4")
    max_positions = getattr(policy.config, "max_position_embeddings", None)
    device = accelerator.device

    train_rows, eval_rows = load_prompt_rows(cfg, run)
    train_rows, train_ids = encode_prompts(train_rows, tokenizer, architecture, cfg, max_positions)
    with run.main_process_first():
        eval_examples = heldout_examples(tokenizer, architecture, cfg.eval.heldout_rows, cfg.data.world_scale,
                                         cfg.data.world_seed, cfg.data.max_length)
    if cfg.rollout.prompts_per_step % run.world:
        raise UserError(f"rollout.prompts_per_step={cfg.rollout.prompts_per_step} must split evenly over {run.world} processes")
    if cfg.ppo.minibatch_size % (run.world * cfg.grad_accum):
        raise UserError(f"ppo.minibatch_size={cfg.ppo.minibatch_size} must split over {run.world} processes x "
                        f"grad_accum={cfg.grad_accum} micro-batches")

    from rewards.rules import build_rules

    world = None
    if "consistency" in {k.removeprefix("rules:") for k in cfg.reward.rules} and not cfg.data.prompt_files:
        from rewards.rules import world_from_dir
        from world.default import world_dir

        world = world_from_dir(world_dir(cfg.data.world_scale, cfg.data.world_seed))
    rules = build_rules(cfg.reward.rules, world=world) if cfg.reward.rules else None
    reward_evidence = None
    if reward_model is not None:
        from rewards.evidence import load_evidence

        reward_evidence = load_evidence(cfg.reward.model, reward_model.config)  # the tools it was trained to read
    scorer = Scorer(rules, reward_model.to(device) if reward_model is not None else None, reward_tokenizer,
                    cfg.reward.rm_weight, cfg.reward.max_length, cfg.reward.batch_size, reward_evidence)
    reference.to(device)

    ptx, ptx_left_out = None, 0
    if cfg.ppo.ptx_coef > 0:
        examples, ptx_left_out = ptx_examples(cfg, tokenizer, architecture, rules if cfg.ppo.ptx_rule_filter else None)
        ptx = PtxBatches(examples, cfg.ppo.ptx_batch_size, cfg.seed + 1, tokenizer.pad_token_id, run.rank, run.world)

    if critic is not None and getattr(accelerator.state, "deepspeed_plugin", None) is not None:
        raise UserError("ppo.algorithm=ppo with a separate critic trains a second model beside the policy, and "
                        "accelerate drives one DeepSpeed engine per Accelerator: set critic.shared=true (a value "
                        "head on the policy), use ppo.algorithm=grpo or rloo, or a DDP/FSDP config "
                        "(configs/accelerate/ddp.yaml, fsdp.yaml) for PPO with a separate critic")
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    shared = cfg.ppo.algorithm == "ppo" and cfg.critic.shared
    # `model` is what the policy optimizer trains: the policy, or the policy with its value head
    model = PolicyWithValueHead(policy) if shared else policy
    updates_per_step = cfg.ppo.epochs * (cfg.responses_per_step // cfg.ppo.minibatch_size)
    total_updates = cfg.max_steps * updates_per_step
    policy_opt, policy_sched = build_optimizer(model, cfg.optim, total_updates)
    if critic is not None:
        critic_args = copy.copy(cfg.optim)
        critic_args.lr = cfg.critic.lr
        critic_opt, critic_sched = build_optimizer(critic, critic_args, total_updates)
        model, policy_opt, critic, critic_opt = accelerator.prepare(model, policy_opt, critic, critic_opt)
        accelerator.register_for_checkpointing(policy_sched, critic_sched)
    else:
        critic_opt = critic_sched = None
        model, policy_opt = accelerator.prepare(model, policy_opt)
        accelerator.register_for_checkpointing(policy_sched)
    # the plain policy (no DDP/engine wrapper, no value head): generation, evaluation, vLLM pushes
    unwrapped = policy_of(accelerator.unwrap_model(model))

    kl_ctl = (AdaptiveKLController(cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
              if cfg.ppo.kl_target is not None else FixedKLController(cfg.ppo.kl_coef))
    reward_stats = RunningMeanStd()
    state = run.resume(cfg.signature(prompts_per_step=cfg.rollout.prompts_per_step,
                                     samples_per_prompt=cfg.rollout.samples_per_prompt,
                                     prompts=len(train_rows), algorithm=cfg.ppo.algorithm,
                                     shared_critic=shared))
    if state:
        kl_ctl.load_state_dict(state["kl_controller"])
        reward_stats.load_state_dict(state["reward_stats"])
        if ptx is not None:
            ptx.position = int(state.get("ptx_position", 0))
    sampler = make_sampler(cfg, run, unwrapped, tokenizer, architecture)

    def evaluate(step: int) -> dict[str, Any]:
        with full_parameters(accelerator, unwrapped):
            result = evaluate_policy(unwrapped, tokenizer, eval_rows, eval_examples, max_new_tokens=cfg.eval.max_new_tokens,
                                     batch_size=cfg.eval.batch_size, accelerator=accelerator, samples=cfg.eval.samples)
        write_samples(run, step, result["samples"])
        return result

    if run.cfg.resume and run.is_main and (run.run_dir / "samples.jsonl").is_file():
        from common.jsonl import load_jsonl, write_jsonl

        kept = [row for row in load_jsonl(run.run_dir / "samples.jsonl", tolerate_torn_tail=True)
                if run.start_step and row.get("step", 0) <= run.start_step]
        write_jsonl(run.run_dir / "samples.jsonl", kept)  # one history, as metrics.jsonl
    initial = state.get("initial_eval")
    if initial is None:
        initial = evaluate(0)
        initial = {"metrics": initial["metrics"], "counts": initial["counts"]}
        run.metrics.log(0, {f"eval/{k}": v for k, v in initial["metrics"].items()})

    prompt_sampler = PermutationSampler(len(train_rows), cfg.rollout.prompts_per_step, cfg.seed)
    update_args = PPOUpdateArgs(ppo_epochs=cfg.ppo.epochs, minibatch_size=cfg.ppo.minibatch_size // run.world,
                                clip_eps=cfg.ppo.clip_eps, clip_eps_high=cfg.ppo.clip_eps_high,
                                value_clip_eps=cfg.ppo.value_clip_eps, vf_coef=cfg.critic.vf_coef,
                                entropy_coef=cfg.ppo.entropy_coef,
                                ptx_coef=cfg.ppo.ptx_coef, temperature=cfg.rollout.temperature,
                                loss_reduction=cfg.ppo.loss_reduction, grad_clip=cfg.optim.grad_clip)
    all_reduce = (lambda t: accelerator.reduce(t, reduction="sum")) if run.world > 1 else None
    all_gather = accelerator.gather if run.world > 1 else None
    final: dict[str, Any] = {}
    last: dict[str, Any] = {}
    step = run.start_step
    with tqdm(total=cfg.max_steps, initial=run.start_step, desc="ppo", disable=not run.is_main,
              dynamic_ncols=True) as progress:
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            times = {}
            t0 = time.perf_counter()
            indices = prompt_sampler.batch(step - 1)
            mine = list(range(run.rank, len(indices), run.world))
            rows = [train_rows[indices[i]] for i in mine]
            with full_parameters(accelerator, unwrapped):
                rollout = roll_out(cfg, sampler, [train_ids[indices[i]] for i in mine], mine, step, run.rank)
            rollout = rollout.to(device)
            times["time/rollout"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            k = cfg.rollout.samples_per_prompt
            sample_rows = [row for row in rows for _ in range(k)]
            texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in rollout.responses()]
            scored = scorer.score([r.messages for r in sample_rows], texts,
                                  [rule_metadata(r, t) for r, t in zip(sample_rows, rollout.truncated.tolist())])
            raw = scored.total.to(device)  # on the device: the reward statistics are gathered (NCCL on GPUs)
            if not torch.isfinite(raw).all():
                raise NonFiniteLoss("reward", step)
            scores = raw
            if cfg.ppo.reward_normalization == "running":
                reward_stats.update(raw, all_gather=all_gather)
                scores = reward_stats.normalize(raw, clip=cfg.ppo.reward_clip)
            times["time/score"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            kl_coef = kl_ctl.value
            experience, exp_stats = make_experience(
                rollout, scores.to(device), model, reference, critic, kl_coef=kl_coef, shared_critic=shared,
                kl_estimator=cfg.ppo.kl_estimator, temperature=cfg.rollout.temperature, gamma=cfg.ppo.gamma,
                lam=cfg.ppo.lam, advantage_estimator="gae" if cfg.ppo.algorithm == "ppo" else cfg.ppo.algorithm,
                group_size=None if cfg.ppo.algorithm == "ppo" else k, whiten_advantages=cfg.ppo.whiten_advantages,
                truncation_penalty=cfg.ppo.truncation_penalty, all_reduce=all_reduce, autocast=accelerator.autocast)
            mask = experience.response_mask.float()
            exp_stats["entropy"] = float(-(experience.old_logprobs * mask).sum() / mask.sum().clamp(min=1))
            exp_stats["reward"] = float(raw.mean())
            exp_stats["reward/normalized"] = float(scores.float().mean())
            exp_stats.update({name: float(values.mean()) for name, values in scored.parts.items()})
            exp_stats = global_mean(accelerator, exp_stats)
            behaviour = rollout_behaviour(accelerator, sample_rows, texts)
            kl_ctl.update(exp_stats["kl"], cfg.responses_per_step)
            times["time/experience"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            with at_step(step):
                update = ppo_update(accelerator, model, policy_opt, experience, update_args, critic=critic,
                                    critic_optimizer=critic_opt, ptx_batches=ptx,
                                    generator=torch.Generator().manual_seed(step_seed(cfg.seed, step, run.rank, 7)),
                                    policy_scheduler=policy_sched, critic_scheduler=critic_sched,
                                    shared_critic=shared)
            if cfg.rollout.engine == "vllm":
                with full_parameters(accelerator, unwrapped):
                    sampler.push_weights()
            times["time/update"] = time.perf_counter() - t0

            last = {
                "reward": exp_stats["reward"], "score": exp_stats["score"],
                **{k2: v for k2, v in exp_stats.items() if k2.startswith(("rules/", "rm"))},
                "reward/normalized": exp_stats["reward/normalized"],
                "kl": exp_stats["kl"], "kl_coef": kl_coef, "entropy": exp_stats["entropy"],
                "clipfrac": update["policy/clip_fraction"], "approx_kl": update["policy/approx_kl"],
                "policy_loss": update["policy/policy_loss"],
                "value_loss": update.get("value/value_loss"),
                "explained_variance": exp_stats.get("value_explained_variance"),
                "response_length": exp_stats["response_length"], "truncated": exp_stats["truncated"], **behaviour,
                "lr": policy_sched.get_last_lr()[0], **{f"train/{k2}": v for k2, v in update.items()}, **times,
                "samples_per_s": cfg.responses_per_step / max(sum(times.values()), 1e-9),
            }
            progress.update(1)
            progress.set_postfix(reward=f"{last['reward']:.3f}", kl=f"{last['kl']:.3f}")
            if run.should_log(step):
                run.metrics.log(step, last)
            if run.should_eval(step):
                result = evaluate(step)
                final = {"metrics": result["metrics"], "counts": result["counts"]}
                run.metrics.log(step, {f"eval/{k2}": v for k2, v in result["metrics"].items()})
                progress.write(f"step {step}: " + ", ".join(f"{k2} {v:.3f}" for k2, v in result["metrics"].items()
                                                            if v is not None))
            if run.should_save(step):
                trainer_state = {"kl_controller": kl_ctl.state_dict(), "reward_stats": reward_stats.state_dict(),
                                 "ptx_position": ptx.position if ptx is not None else 0, "initial_eval": initial}
                run.save(step, model, tokenizer, trainer_state,
                         extra_models={"value": critic} if critic is not None else None)

    evaluation = {"initial": initial["metrics"], "final": final.get("metrics"), "initial_counts": initial["counts"],
                  "final_counts": final.get("counts"), "prompts": len(eval_rows), "heldout_rows": len(eval_examples),
                  "steps": step}
    run.write_json("eval.json", evaluation)
    summary = {"steps": step, "prompts": len(train_rows), "algorithm": cfg.ppo.algorithm,
               "ptx_rows": len(ptx.examples) if ptx is not None else 0, "ptx_rows_left_out": ptx_left_out,
               "engine": cfg.rollout.engine, "last": {k2: v for k2, v in last.items() if not k2.startswith("train/")},
               "eval": {"initial": initial["metrics"], "final": final.get("metrics")}}
    title = f"PPO ({cfg.ppo.algorithm}, {architecture})"
    final_model = model  # with a shared critic, PolicyWithValueHead.save_pretrained writes the policy + value/
    if cfg.model.lora.enabled:  # model/ holds the merged policy (a plain model directory), model/adapter/ the adapter
        from glm_base.trainkit.checkpoint import save_models

        save_models(accelerator, model, None, run.run_dir / "model" / "adapter")
        final_model = merged_copy(unwrapped)
        if shared:
            final_model = PolicyWithValueHead(final_model, accelerator.unwrap_model(model).value_head)
    return run.finish(final_model, tokenizer, summary, extra_models={"value": critic} if critic is not None else None,
                      plots=[lambda d: plot_ppo_curves(cfg, d / "metrics.jsonl", d / "reward_curve.png", title)])


def plot_ppo_curves(cfg: PPOConfig, metrics_path, out_png, title: str):
    """Stacked panels over steps: the rewards (total, reward model, each rule), what the sampled
    responses do (harmful refused, needless refusals, mixing), the KL to the reference against its
    target, and the KL coefficient; per-step figures come from a few rollouts, so each is drawn as a
    moving average over its faint raw values."""
    rules = [f"rules/{name.removeprefix('rules:')}" for name in cfg.reward.rules]
    target = {"KL to the reference (nats per response)": (cfg.ppo.kl_target, "target")} if cfg.ppo.kl_target else {}
    return plot_curves(metrics_path, out_png, [], title=title, smooth=max(1, min(8, cfg.max_steps // 10)),
                       panels=[("rewards", ["reward", "rm", *rules]),
                               ("sampled responses", ["rollout/harmful_refusal_rate", "rollout/needless_refusal_rate",
                                                      "rollout/mixing_rate"]),
                               ("KL to the reference (nats per response)", ["kl"]),
                               ("KL coefficient", ["kl_coef"])],
                       reference_lines=target, raw=["kl_coef"])


def ptx_examples(cfg: PPOConfig, tokenizer, architecture: str, rules=None) -> tuple[list, int]:
    """The SFT examples PPO-ptx trains on (``data.ptx_files``, else the world's sft train split) and
    how many rows were left out because ``rules`` penalise their reply (:func:`rule_passing_rows`, on
    each row as the SFT loader reads it: chat ``messages`` and single-turn ``prompt``/``completion``)."""
    from align.sft_data import load_sft_examples

    def rule_passing(rows, path):
        return rule_passing_rows(rows, rules, path)

    files = cfg.data.ptx_files or [world_prompts_file("sft", cfg)]
    examples, report = load_sft_examples(files, tokenizer, architecture, cfg.data.max_length, truncation="drop",
                                         bad_rows="drop", row_filter=None if rules is None else rule_passing)
    left_out = report.get("filtered", 0)
    if left_out:
        logger.info("PPO-ptx: %d of %d SFT rows left out: the rules penalise their reply", left_out,
                    left_out + len(examples))
    return examples, left_out


def world_prompts_file(kind: str, cfg: PPOConfig) -> str:
    from world.default import world_files

    return world_files(kind, size=cfg.data.world_scale, seed=cfg.data.world_seed)[0]


def main(argv: list[str] | None = None) -> None:
    train_main(PPOConfig, run, argv, prog="python -m align.ppo")


if __name__ == "__main__":
    main()
