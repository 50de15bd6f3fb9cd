"""The critic: a scalar head giving a value for every position, on its own backbone or the policy's.

``V_t`` for response token ``t`` is read at the position that *predicts* that token (the same
position as its logits), so values, log-probs and rewards line up column by column. The head starts
at zero (every value 0), so the first advantages are the plain discounted rewards.

Two designs:

- :class:`ValueModel` (separate critic, as OpenRLHF and veRL): a deep copy of a causal LM's backbone
  + head, with its own optimizer. Build one from a policy, SFT or reward checkpoint with
  :meth:`ValueModel.from_causal_lm`.
- :class:`PolicyWithValueHead` (shared critic, as TRL's classic ``AutoModelForCausalLMWithValueHead``):
  the head reads the policy's own final hidden state, so one forward gives the response logits and
  the values, and one backward trains both (the value loss's gradient reaches the policy's trunk).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import NamedTuple

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


class PolicyValueOutput(NamedTuple):
    """What :class:`PolicyWithValueHead` returns for a response: logits ``(B, R, V)`` predicting
    each response token, and values ``(B, R)`` (fp32) of the states before each."""

    logits: torch.Tensor
    values: torch.Tensor


class PolicyWithValueHead(nn.Module):
    """A causal LM (``policy``, possibly a PEFT model) + ``value_head = Linear(hidden, 1)`` on its
    final (post-norm) hidden state: the shared critic.

    ``model(input_ids, attention_mask, response_length, position_ids, part_a_length)`` runs the policy
    once (output layer only on the ``R + 1`` last positions, as
    :func:`~align.rl.logprobs.response_logits`) and returns :class:`PolicyValueOutput`. Without
    ``response_length`` the call is the policy's own forward (every keyword passed through), so
    language-model batches (PPO-ptx) go through the same wrapper, which matters under DDP.

    :meth:`save_pretrained` writes the plain policy (loadable as before) with the head alone in
    ``value/model.safetensors`` (keys ``value_head.weight``, ``value_head.bias``);
    :meth:`load_value_head` reads it back.
    """

    def __init__(self, policy: nn.Module, value_head: nn.Linear | None = None):
        super().__init__()
        self.policy = policy
        if value_head is None:
            value_head = nn.Linear(policy.config.hidden_size, 1)
            nn.init.zeros_(value_head.weight)
            nn.init.zeros_(value_head.bias)
        self.value_head = value_head

    @property
    def config(self):
        return self.policy.config

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                response_length: int | None = None, position_ids: torch.Tensor | None = None,
                part_a_length: torch.Tensor | None = None, **lm_kwargs):
        """:class:`PolicyValueOutput` for the last ``response_length`` tokens of each row (prompt
        left-padded, then response; positions default to the mask's). Without ``response_length``,
        the policy's output for ``lm_kwargs`` (labels, ``num_items_in_batch``, ...). Raises
        ``ValueError`` when ``response_length`` is not in ``1..T-1``."""
        if response_length is None:
            for name, value in (("position_ids", position_ids), ("part_a_length", part_a_length)):
                if value is not None:
                    lm_kwargs[name] = value
            return self.policy(input_ids=input_ids, attention_mask=attention_mask, **lm_kwargs)
        if lm_kwargs:
            raise TypeError(f"unexpected arguments with response_length: {sorted(lm_kwargs)}")
        if response_length <= 0 or response_length >= input_ids.shape[1]:
            raise ValueError(f"response_length {response_length} must be in 1..{input_ids.shape[1] - 1} "
                             f"(the rows hold {input_ids.shape[1]} tokens, prompt included)")
        outputs = self.policy(input_ids=input_ids, attention_mask=attention_mask,
                              **layout_kwargs(attention_mask, position_ids, part_a_length),
                              logits_to_keep=response_length + 1, use_cache=False, output_hidden_states=True)
        hidden = outputs.hidden_states[-1][:, -response_length - 1:-1]  # the final, post-norm hidden state
        values = self.value_head(hidden).squeeze(-1).float()
        return PolicyValueOutput(outputs.logits[:, :-1], values)

    def save_pretrained(self, out_dir, state_dict: dict | None = None, **kwargs) -> None:
        """The policy through its own ``save_pretrained`` in ``out_dir`` (a PEFT policy writes its
        adapter), the head in ``out_dir/value/model.safetensors``. ``state_dict`` is this module's
        (gathered under sharding: what trainkit passes); ``kwargs`` go to the policy's save."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        state = self.state_dict() if state_dict is None else state_dict
        policy_state = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
        head_state = {k: v.detach().contiguous().cpu() for k, v in state.items() if k.startswith("value_head.")}
        if len(policy_state) + len(head_state) != len(state):
            unknown = sorted(k for k in state if not k.startswith(("policy.", "value_head.")))
            raise ValueError(f"state dict keys outside policy./value_head.: {unknown[:5]}")
        self.policy.save_pretrained(out_dir, state_dict=policy_state, **kwargs)
        (out_dir / "value").mkdir(parents=True, exist_ok=True)
        save_file(head_state, str(out_dir / "value" / "model.safetensors"))

    def load_value_head(self, directory) -> None:
        """Load the head :meth:`save_pretrained` wrote (``directory`` is the model directory or its
        ``value/``). Raises ``FileNotFoundError`` without the file and on missing/unexpected keys."""
        from safetensors.torch import load_file

        directory = Path(directory)
        path = (directory if directory.name == "value" else directory / "value") / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"no value head at {path} (expected what PolicyWithValueHead.save_pretrained "
                                    f"writes)")
        state = load_file(str(path))
        self.value_head.load_state_dict({k.removeprefix("value_head."): v for k, v in state.items()}, strict=True)
