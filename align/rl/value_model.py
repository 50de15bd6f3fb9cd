"""The critic: a causal LM's backbone with a scalar head giving a value for every position.

``V_t`` for response token ``t`` is read at the position that *predicts* that token (the same
position as its logits), so values, log-probs and rewards line up column by column. Build one from
a policy, SFT or reward checkpoint with :meth:`ValueModel.from_causal_lm`; the head starts at zero
(every value 0), so the first advantages are the plain discounted rewards.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .logprobs import layout_kwargs


class ValueModel(nn.Module):
    """``backbone`` (a transformers base model returning ``last_hidden_state``) + ``Linear(hidden, 1)``."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_causal_lm(cls, lm: nn.Module) -> "ValueModel":
        """A critic on a deep copy of ``lm``'s backbone (``lm.base_model``: ``GLMModel`` for
        ``GLMForCausalLM``); ``lm`` itself is left untouched."""
        backbone = copy.deepcopy(lm.base_model)
        return cls(backbone, lm.config.hidden_size)

    @property
    def config(self):
        return self.backbone.config

    def save_pretrained(self, out_dir, state_dict: dict | None = None, **_) -> None:
        """``config.json`` (the backbone's) and ``model.safetensors`` (backbone and head) in
        ``out_dir``; ``state_dict`` is the gathered one under sharding (what trainkit passes)."""
        from pathlib import Path

        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(out_dir)
        state = self.state_dict() if state_dict is None else state_dict
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(out_dir / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, directory) -> "ValueModel":
        """Load what :meth:`save_pretrained` wrote (the backbone class comes from the config through
        ``AutoModelForCausalLM``; import ``glm_base`` first for GLM checkpoints). Raises on missing
        or unexpected weights."""
        from pathlib import Path

        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModelForCausalLM

        directory = Path(directory)
        lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(directory))
        critic = cls(lm.base_model, lm.config.hidden_size)
        critic.load_state_dict(load_file(str(directory / "model.safetensors")), strict=True)
        return critic

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                part_a_length: torch.Tensor | None = None) -> torch.Tensor:
        """Values ``(B, L)`` in fp32 for every position; positions default to the mask's
        (``part_a_length`` for GLM's prefix layout, see :mod:`align.rl.rollout`)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                               **layout_kwargs(attention_mask, position_ids, part_a_length)).last_hidden_state
        return self.value_head(hidden).squeeze(-1).float()


def response_values(critic: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
                    position_ids: torch.Tensor | None = None, part_a_length: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, R)`` values of the states before each of the last ``response_length`` tokens."""
    if response_length <= 0 or response_length >= input_ids.shape[1]:
        raise ValueError(f"response_length {response_length} must be in 1..{input_ids.shape[1] - 1}")
    return critic(input_ids, attention_mask, position_ids, part_a_length)[:, -response_length - 1:-1]
