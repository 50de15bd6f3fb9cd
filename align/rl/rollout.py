"""Rollouts with ``model.generate``: a batch of prompts in, a :class:`Rollout` out.

Prompts are left-padded (so every row's last prompt token is at the same column and generation
continues all rows together with the KV cache); responses are right-padded. A response's valid
tokens are those up to and including its first end token; a response with no end token within
``max_new_tokens`` is *truncated*.

Two layouts, the ones SFT trains (``align.sft_data``):

- ``"causal"`` (GLM-4 variant, any causal LM): positions count the attended tokens
  (:func:`align.rl.logprobs.positions_from_mask`), so left padding shifts nothing.
- ``"prefix"`` (GLM-1, GLM's blank-infilling format): the prompt is Part A ending in ``[gMASK]``,
  then ``<sop>``; Part A is bidirectional (``part_a_length``), and ``<sop>`` and the response form
  Part B with 2D positions: text position = the ``[gMASK]``'s, span positions ``1, 2, ...``. The
  reply ends with ``<eop>``.

The same positions (:func:`layout_position_ids`) are used to generate and in every training forward.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch
from transformers import GenerationConfig

from glm_base.sharded import forwards_are_collective

from .logprobs import logprobs_from_logits, positions_from_mask

LAYOUTS = ("causal", "prefix")


def layout_position_ids(prompt_mask: torch.Tensor, response_mask: torch.Tensor, layout: str = "causal") -> torch.Tensor:
    """Position ids of ``[prompt | response]`` rows: ``(B, L)`` for ``"causal"``, ``(B, 2, L)`` for
    ``"prefix"`` (see the module docstring). ``response_mask`` may have 0 columns (the prompt alone,
    for generation). Raises ``ValueError`` for an unknown layout."""
    if layout == "causal":
        return positions_from_mask(torch.cat([prompt_mask, response_mask], dim=1))
    if layout != "prefix":
        raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
    batch, width = prompt_mask.shape
    part_b = 1 + response_mask.shape[1]  # <sop> and the response
    text_a = positions_from_mask(prompt_mask[:, :width - 1])
    gmask = text_a[:, -1:]  # Part B sits at the [gMASK]'s text position
    text = torch.cat([text_a, gmask.expand(batch, part_b)], dim=1)
    span = torch.cat([torch.zeros_like(text_a),
                      torch.arange(1, part_b + 1, device=prompt_mask.device).expand(batch, part_b)], dim=1)
    return torch.stack([text, span], dim=1)


def layout_part_a_length(prompt_mask: torch.Tensor, layout: str = "causal") -> torch.Tensor | None:
    """``part_a_length`` per row for the prefix layout (every left-padded Part A ends one column
    before the last prompt column, the ``<sop>``); ``None`` for the causal layout."""
    if layout != "prefix":
        return None
    return torch.full((prompt_mask.shape[0],), prompt_mask.shape[1] - 1, dtype=torch.long, device=prompt_mask.device)


@dataclass
class Rollout:
    """One batch of generated responses (all tensors on the same device).

    ``prompt_ids``/``prompt_mask`` ``(B, P)`` left-padded; ``response_ids``/``response_mask``
    ``(B, R)``, the mask 1 up to and including the first end token; ``layout`` ``"causal"`` or
    ``"prefix"`` (module docstring) fixes the positions; ``truncated`` ``(B,)`` True when
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
    layout: str = "causal"

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
        """``(B, P + R)`` (causal) or ``(B, 2, P + R)`` (prefix), as generation used them."""
        return layout_position_ids(self.prompt_mask, self.response_mask, self.layout)

    @property
    def part_a_length(self) -> torch.Tensor | None:
        return layout_part_a_length(self.prompt_mask, self.layout)

    @property
    def response_length(self) -> int:
        return self.response_ids.shape[1]

    def to(self, device) -> "Rollout":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def responses(self) -> list[list[int]]:
        """Each response's valid token ids (end token included when there is one)."""
        return [row[mask.bool()].tolist() for row, mask in zip(self.response_ids, self.response_mask)]


def chat_prompt_ids(tokenizer, messages: Sequence[dict], architecture: str = "glm4") -> list[int]:
    """Token ids of a chat prompt, laid out as SFT trained the policy (``align.sft_data``): for the
    GLM-4 variant the chat template with the generation prompt (``[gMASK]<sop>...<|assistant|>\\n``);
    for GLM-1 the same text without the ``[gMASK]<sop>`` prefix as Part A, then ``[gMASK]`` and
    ``<sop>`` (the prefix layout). Raises ``ValueError`` for an unknown architecture or a template
    that does not start with ``[gMASK]<sop>``."""
    if architecture == "glm4":
        return list(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True,
                                                  return_dict=False))
    if architecture != "glm1":
        raise ValueError(f"unknown architecture {architecture!r}; expected glm1 or glm4")
    from glm_base.tokenizer import GMASK_TOKEN, SOP_TOKEN, special_token_ids

    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    prefix = GMASK_TOKEN + SOP_TOKEN
    if not text.startswith(prefix):
        raise ValueError(f"the chat template does not start with {prefix}; use glm_base.tokenizer's template")
    ids = special_token_ids(tokenizer)
    return tokenizer(text[len(prefix):], add_special_tokens=False)["input_ids"] + [ids.gmask, ids.sop]


def left_pad(prompts: Sequence[Sequence[int]], pad_token_id: int, min_length: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of shape ``(B, longest)`` with each prompt right-aligned. Raises
    ``ValueError`` naming a prompt shorter than ``min_length`` (the prefix layout needs Part A and
    ``<sop>``: 2)."""
    if not prompts:
        raise ValueError("no prompts to pad")
    for i, prompt in enumerate(prompts):
        if len(prompt) < max(min_length, 1):
            what = "empty" if len(prompt) == 0 else f"{len(prompt)} token(s) long"
            raise ValueError(f"prompt {i} is {what}; it needs at least {max(min_length, 1)} "
                             f"({'Part A then <sop>' if min_length > 1 else 'a token for the response to follow'})")
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


class SamplingSettings:
    """What both rollout engines (:class:`HFRollout`, :class:`align.rl.vllm_engine.VLLMRollout`) sample
    with, checked once: end tokens, padding, length limit, temperature, nucleus and top-k."""

    def _set_sampling(self, eos_token_ids: Sequence[int], pad_token_id: int, max_new_tokens: int,
                      temperature: float, top_p: float, top_k: int, return_logprobs: bool) -> None:
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive, got {max_new_tokens}")
        if temperature < 0 or not (0 < top_p <= 1):
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        if not eos_token_ids:
            raise ValueError("eos_token_ids is empty: responses would never end")
        self.eos_token_ids = list(eos_token_ids)
        self.pad_token_id = pad_token_id
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.return_logprobs = return_logprobs and temperature > 0  # greedy decoding has no log-probs


class HFRollout(SamplingSettings):
    """Sample responses with ``model.generate`` (KV cache, left padding).

    ``temperature`` > 0 samples (with ``top_p``/``top_k``, 0 = off); ``temperature=0`` decodes
    greedily (no log-probs then). Generation stops at any of ``eos_token_ids`` or after
    ``max_new_tokens``. ``layout`` is ``"causal"`` or ``"prefix"`` (GLM-1's format: each prompt is
    Part A ending in ``[gMASK]``, then ``<sop>``). The model is put in eval mode while generating and
    its mode restored. With a wrapped (DDP/FSDP) model, pass ``accelerator.unwrap_model(model)``; with
    sharded weights (FSDP, ZeRO-3) every process must call :meth:`generate` as many times
    (:mod:`glm_base.sharded`).
    """

    def __init__(self, model, eos_token_ids: Sequence[int], pad_token_id: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, return_logprobs: bool = True,
                 layout: str = "causal"):
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}; choose one of {LAYOUTS}")
        self._set_sampling(eos_token_ids, pad_token_id, max_new_tokens, temperature, top_p, top_k, return_logprobs)
        self.model = model
        self.layout = layout

    @classmethod
    def for_chat(cls, model, tokenizer, max_new_tokens: int, **kwargs) -> "HFRollout":
        """An ``HFRollout`` for replies as SFT trained them, padding with ``<|pad|>``: for a GLM-4
        variant the causal layout ending at ``<|endoftext|>``, ``<|user|>`` or ``<|observation|>``
        (:attr:`glm_base.tokenizer.SpecialTokenIds.chat_stop`); for GLM-1 the prefix layout ending at
        ``<eop>`` (or ``<|endoftext|>``)."""
        from glm_base.tokenizer import special_token_ids

        ids = special_token_ids(tokenizer)
        if getattr(getattr(model, "config", None), "architecture", None) == "glm1":
            kwargs.setdefault("layout", "prefix")
            stop = (ids.eop, ids.eos)
        else:
            stop = ids.chat_stop
        return cls(model, eos_token_ids=stop, pad_token_id=ids.pad, max_new_tokens=max_new_tokens, **kwargs)

    # Logit processors pinned off: ``generate`` fills every setting left unset from the checkpoint's
    # generation_config.json, and any of these would change what is sampled without changing the
    # log-probs PPO computes (log_softmax(logits / temperature)). ``min_new_tokens=0`` also overrides
    # a checkpoint's ``min_length`` (generate sets min_length = prompt + min_new_tokens); setting
    # both made transformers warn on every call.
    NEUTRAL = dict(repetition_penalty=1.0, no_repeat_ngram_size=0, min_new_tokens=0, min_p=0.0,
                   typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, num_beams=1, guidance_scale=1.0)

    def generation_config(self) -> GenerationConfig:
        sampling = dict(do_sample=True, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k) \
            if self.temperature > 0 else dict(do_sample=False)
        return GenerationConfig(max_new_tokens=self.max_new_tokens, eos_token_id=self.eos_token_ids,
                                pad_token_id=self.pad_token_id, return_dict_in_generate=True,
                                output_logits=self.return_logprobs, **self.NEUTRAL, **sampling)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]]) -> Rollout:
        """Sample one response per prompt (repeat a prompt for several); returns a :class:`Rollout`
        on the model's device."""
        device = next(self.model.parameters()).device
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_token_id, 2 if self.layout == "prefix" else 1)
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
        no_response = prompt_mask[:, :0]
        layout = {"position_ids": layout_position_ids(prompt_mask, no_response, self.layout)}
        if self.layout == "prefix":
            layout["part_a_length"] = layout_part_a_length(prompt_mask, self.layout)
        was_training = self.model.training
        self.model.eval()
        try:
            # sharded weights (FSDP, ZeRO-3): a process whose replies are done keeps stepping with the rest
            out = self.model.generate(input_ids=prompt_ids, attention_mask=prompt_mask,
                                      generation_config=self.generation_config(),
                                      synced_gpus=forwards_are_collective(self.model), **layout)
        finally:
            self.model.train(was_training)
        response_ids = out.sequences[:, prompt_ids.shape[1]:]
        response_mask, truncated = response_mask_and_truncation(response_ids, self.eos_token_ids)
        response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_token_id))
        logprobs = None
        if self.return_logprobs:
            logits = torch.stack(out.logits, dim=1)  # (B, R, V), the generation's raw logits
            logprobs = logprobs_from_logits(logits, response_ids, self.temperature, mask=response_mask)
        return Rollout(prompt_ids, prompt_mask, response_ids, response_mask, truncated, logprobs, self.layout)
