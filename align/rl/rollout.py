"""Rollouts with ``model.generate``: a batch of prompts in, a :class:`Rollout` out.

Prompts are left-padded (so every row's last prompt token is at the same column and generation
continues all rows together with the KV cache); responses are right-padded. A response's valid
tokens are those up to and including its first end token; a response with no end token within
``max_new_tokens`` is *truncated*. Positions come from the attention mask (see
:func:`align.rl.logprobs.positions_from_mask`), both here and in the training forward.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch
from transformers import GenerationConfig

from .logprobs import logprobs_from_logits, positions_from_mask


@dataclass
class Rollout:
    """One batch of generated responses (all tensors on the same device).

    ``prompt_ids``/``prompt_mask`` ``(B, P)`` left-padded; ``response_ids``/``response_mask``
    ``(B, R)``, the mask 1 up to and including the first end token; ``truncated`` ``(B,)`` True when
    a response has no end token; ``logprobs`` ``(B, R)`` the generation's own log-probs of its tokens
    (``log_softmax(logits / temperature)``, 0 on padding; NaN where a vLLM engine gave none) when
    requested, else None. They are for monitoring: PPO recomputes old log-probs with its own forward.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    truncated: torch.Tensor
    logprobs: torch.Tensor | None = None

    @property
    def input_ids(self) -> torch.Tensor:
        """Prompt then response, ``(B, P + R)``."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """1 on real prompt tokens and valid response tokens, ``(B, P + R)``."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1).long()

    @property
    def position_ids(self) -> torch.Tensor:
        return positions_from_mask(self.attention_mask)

    @property
    def response_length(self) -> int:
        return self.response_ids.shape[1]

    def to(self, device) -> "Rollout":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if getattr(self, f.name) is not None})

    def responses(self) -> list[list[int]]:
        """Each response's valid token ids (end token included when there is one)."""
        return [row[mask.bool()].tolist() for row, mask in zip(self.response_ids, self.response_mask)]


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of shape ``(B, longest)`` with each prompt right-aligned. Raises
    ``ValueError`` naming an empty prompt."""
    if not prompts:
        raise ValueError("no prompts to pad")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {i} is empty; a response needs at least one prompt token to follow")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
        mask[i, width - len(prompt):] = 1
    return ids, mask


def response_mask_and_truncation(response_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, truncated)``: mask 1 on tokens up to and including the first end token of each row
    (tokens after it, whatever they are, are 0); truncated True for rows without an end token."""
    is_end = torch.isin(response_ids, torch.as_tensor(list(eos_token_ids), device=response_ids.device))
    ends_before = is_end.long().cumsum(dim=1) - is_end.long()  # end tokens strictly before each position
    mask = (ends_before == 0).long()
    truncated = ~is_end.any(dim=1)
    return mask, truncated


class HFRollout:
    """Sample responses with ``model.generate`` (KV cache, left padding).

    ``temperature`` > 0 samples (with ``top_p``/``top_k``, 0 = off); ``temperature=0`` decodes
    greedily (no log-probs then). Generation stops at any of ``eos_token_ids`` or after
    ``max_new_tokens``. The model is put in eval mode while generating and its mode restored. With a
    wrapped (DDP/FSDP) model, pass ``accelerator.unwrap_model(model)``.
    """

    def __init__(self, model, eos_token_ids: Sequence[int], pad_token_id: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, return_logprobs: bool = True):
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        if temperature < 0 or not (0 < top_p <= 1):
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        if not eos_token_ids:
            raise ValueError("eos_token_ids is empty: responses would never end")
        self.model = model
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.return_logprobs = return_logprobs and temperature > 0

    @classmethod
    def for_chat(cls, model, tokenizer, max_new_tokens: int, **kwargs) -> "HFRollout":
        """An ``HFRollout`` that ends replies as GLM-4 chat does (``<|endoftext|>``, ``<|user|>``,
        ``<|observation|>``: :attr:`glm_base.tokenizer.SpecialTokenIds.chat_stop`), padding with
        ``<|pad|>``."""
        from glm_base.tokenizer import special_token_ids

        ids = special_token_ids(tokenizer)
        return cls(model, eos_token_ids=ids.chat_stop, pad_token_id=ids.pad, max_new_tokens=max_new_tokens, **kwargs)

    def generation_config(self) -> GenerationConfig:
        sampling = dict(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k) \
            if self.temperature > 0 else dict(do_sample=False)
        return GenerationConfig(max_new_tokens=self.max_new_tokens, eos_token_id=self.eos_token_ids,
                                pad_token_id=self.pad_token_id, return_dict_in_generate=True,
                                output_logits=self.return_logprobs, **sampling)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]]) -> Rollout:
        """Sample one response per prompt (repeat a prompt for several); returns a :class:`Rollout`
        on the model's device."""
        device = next(self.model.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_token_id)
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                                      position_ids=positions_from_mask(prompt_mask),
                                      generation_config=self.generation_config())
        finally:
            self.model.train(was_training)
        response_ids = out.sequences[:, prompt_ids.shape[1]:]
        response_mask, truncated = response_mask_and_truncation(response_ids, self.eos_token_ids)
        response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_token_id))
        logprobs = None
        if self.return_logprobs:
            logits = torch.stack(out.logits, dim=1)  # (B, R, V), the generation's raw logits
            logprobs = logprobs_from_logits(logits, response_ids, self.temperature, mask=response_mask)
        return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, truncated, logprobs)
