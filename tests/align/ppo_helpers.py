"""Tiny model directories for the PPO entry-point tests: a policy (glm4 or glm1) and a reward model
(``GLMForSequenceClassification``, one score) sharing a small BPE tokenizer; nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

from tests.align.sft_helpers import small_tokenizer


def policy_dir(root: Path, architecture: str = "glm4", seed: int = 0) -> Path:
    """A random hidden-32, 2-layer ``GLMForCausalLM`` + tokenizer saved in ``root/policy-<arch>``."""
    import torch

    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForCausalLM

    out = root / f"policy-{architecture}"
    if (out / "config.json").is_file():
        return out
    tokenizer = small_tokenizer()
    torch.manual_seed(seed)
    config = config_for_size("tiny", architecture=architecture, vocab_size=len(tokenizer), hidden_size=32,
                             num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    GLMForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def reward_dir(root: Path, seed: int = 1) -> Path:
    """A random reward model (num_labels 1, reward_offset 0.25) with the same tokenizer."""
    import torch

    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForSequenceClassification

    out = root / "rm"
    if (out / "config.json").is_file():
        return out
    tokenizer = small_tokenizer()
    torch.manual_seed(seed)
    config = config_for_size("tiny", architecture="glm4", vocab_size=len(tokenizer), hidden_size=32,
                             num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=1024,
                             pad_token_id=tokenizer.pad_token_id, num_labels=1, reward_offset=0.25,
                             initializer_range=0.2)
    GLMForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def tiny_overrides(out: Path, policy: Path, rm: Path | None, **extra) -> list[str]:
    """``key=value`` overrides of a PPO run that takes seconds: 4 prompts x 2 samples, 8 new tokens."""
    values = {
        "output_dir": str(out), "model.init_from": str(policy), "max_steps": 2, "save_every": 1, "eval_every": 0,
        "rollout.prompts_per_step": 4, "rollout.samples_per_prompt": 2, "rollout.max_new_tokens": 8,
        "rollout.max_prompt_length": 160, "ppo.epochs": 2, "ppo.minibatch_size": 4, "optim.lr": 1e-3,
        "critic.lr": 1e-3, "eval.prompts": 6, "eval.heldout_rows": 4, "eval.max_new_tokens": 6, "eval.samples": 3,
        "mixed_precision": "no",
    }
    if rm is not None:
        values["reward.model"] = str(rm)
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
