"""Log-probabilities of response tokens under a causal LM, as the sampler saw them.

The training forward must reproduce the rollout's distribution exactly: same token positions (from
the attention mask, so left padding does not shift them), same masks, and the same temperature
(``logits / temperature``, which is what ``generate`` and vLLM sample from before any top-p/top-k
cut). Top-p/top-k truncation is *not* applied: PPO's ratio is taken between full distributions, as
in TRL, OpenRLHF and veRL.

Memory: the output layer runs only on the rows that predict response tokens (``logits_to_keep``),
and the fp32 log-softmax runs over ``chunk_rows`` rows at a time on the valid tokens only, so a
``(B, T, V)`` fp32 copy of the logits is never made.
"""

from __future__ import annotations

import torch


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting only attended tokens: ``(mask.cumsum(-1) - 1).clamp(min=0)``. A
    left-padded row's first real token gets position 0, as it would without padding."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0,
                         mask: torch.Tensor | None = None, chunk_rows: int = 1024) -> torch.Tensor:
    """``log_softmax(logits / temperature)[token]`` for every position, shape ``tokens.shape``, fp32.

    ``logits`` is ``(..., V)`` aligned with ``tokens`` ``(...)`` (the logits that *predict* each token).
    Only positions where ``mask`` is set are computed (others are 0), ``chunk_rows`` at a time, as
    ``logit[token] - logsumexp(logits)``. Raises ``ValueError`` on misaligned shapes or a
    non-positive temperature.
    """
    if logits.shape[:-1] != tokens.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not align with tokens {tuple(tokens.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (greedy decoding has no log-probs to match), got {temperature}")
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_tokens = tokens.reshape(-1)
    out = torch.zeros(flat_tokens.shape, dtype=torch.float32, device=logits.device)
    rows = torch.arange(flat_tokens.numel(), device=logits.device)
    if mask is not None:
        if mask.shape != tokens.shape:
            raise ValueError(f"mask {tuple(mask.shape)} does not align with tokens {tuple(tokens.shape)}")
        rows = rows[mask.reshape(-1).bool()]
    for start in range(0, rows.numel(), chunk_rows):
        index = rows[start:start + chunk_rows]
        chunk = flat_logits[index].float() / temperature
        picked = chunk.gather(-1, flat_tokens[index].unsqueeze(-1)).squeeze(-1)
        out[index] = picked - torch.logsumexp(chunk, dim=-1)
    return out.view(tokens.shape)


def layout_kwargs(attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                  part_a_length: torch.Tensor | None = None) -> dict:
    """The forward's layout arguments: ``position_ids`` (from the mask unless given) and, for GLM's
    prefix layout, ``part_a_length`` (left out when None, so any causal LM accepts the result)."""
    kwargs = {"position_ids": positions_from_mask(attention_mask) if position_ids is None else position_ids}
    if part_a_length is not None:
        kwargs["part_a_length"] = part_a_length
    return kwargs


def response_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
                    position_ids: torch.Tensor | None = None, part_a_length: torch.Tensor | None = None,
                    **model_kwargs) -> torch.Tensor:
    """Logits ``(B, R, V)`` predicting the last ``response_length`` tokens of ``input_ids`` (prompt
    left-padded, then response), from one forward with ``logits_to_keep = R + 1``. Positions are the
    rollout's (:attr:`align.rl.rollout.Rollout.position_ids`), by default those of the mask; GLM's
    prefix layout also passes ``part_a_length``. Works for any transformers causal LM taking
    ``position_ids`` and ``logits_to_keep``."""
    if response_length <= 0 or response_length >= input_ids.shape[1]:
        raise ValueError(f"response_length {response_length} must be in 1..{input_ids.shape[1] - 1} "
                         f"(the rows hold {input_ids.shape[1]} tokens, prompt included)")
    outputs = model(input_ids=input_ids, attention_mask=attention_mask,
                    **layout_kwargs(attention_mask, position_ids, part_a_length),
                    logits_to_keep=response_length + 1, use_cache=False, **model_kwargs)
    return outputs.logits[:, :-1]


def response_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int,
                      temperature: float = 1.0, response_mask: torch.Tensor | None = None,
                      chunk_rows: int = 1024, position_ids: torch.Tensor | None = None,
                      part_a_length: torch.Tensor | None = None) -> torch.Tensor:
    """Log-probs ``(B, R)`` of the response tokens (the last ``response_length`` of each row) under
    ``model`` at ``temperature``; 0 where ``response_mask`` is 0. Gradients flow when enabled.
    ``position_ids``/``part_a_length`` as in :func:`response_logits`."""
    logits = response_logits(model, input_ids, attention_mask, response_length, position_ids, part_a_length)
    tokens = input_ids[:, -response_length:]
    return logprobs_from_logits(logits, tokens, temperature, mask=response_mask, chunk_rows=chunk_rows)
