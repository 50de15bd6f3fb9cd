"""Advantages: GAE with returns, masked whitening, and the GRPO / RLOO group baselines.

All per-token tensors are ``(B, T)`` over response tokens with a prefix ``mask`` (see
:mod:`align.rl`). Everything here is computed without gradients: advantages and returns are targets.
"""

from __future__ import annotations

import torch

from .masked import AllReduce, check_prefix_mask, masked_mean, masked_var


@torch.no_grad()
def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
                   lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response. Returns ``(advantages, returns)``.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, run
    backwards over the valid tokens; after the last valid token the value is bootstrapped with 0 (the
    episode has ended) and ``A`` is 0, so padding contributes nothing whatever it holds.
    ``returns = A + V`` on valid tokens; both outputs are 0 on padding.

    Raises ``ValueError`` if shapes differ or a mask row is not ones-then-zeros.
    """
    if rewards.shape != values.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} differ in shape")
    check_prefix_mask(mask, "mask")
    valid = mask.bool()
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    rewards = torch.where(valid, rewards.to(values.dtype), zero)
    values = torch.where(valid, values, zero)
    keep = valid.to(values.dtype)
    length = values.shape[1]
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * keep[:, t]
        advantages[:, t] = running
    returns = (advantages + values) * keep
    return advantages, returns


@torch.no_grad()
def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, unbiased: bool = False,
                  eps: float = 1e-8, all_reduce: AllReduce | None = None) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` with mean and variance over the valid tokens only (of all
    processes when ``all_reduce`` is given). ``shift_mean=False`` adds the mean back (scale only).
    Padding is 0 in the result. Raises ``ValueError`` on an empty mask."""
    mean = masked_mean(values, mask, all_reduce=all_reduce)
    var = masked_var(values, mask, unbiased=unbiased, all_reduce=all_reduce)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros((), dtype=whitened.dtype, device=whitened.device))


def _groups(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    if scores.dim() != 1:
        raise ValueError(f"scores must be one per sequence, shape (N,), got {tuple(scores.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be at least 2 (several responses per prompt), got {group_size}")
    if scores.numel() % group_size:
        raise ValueError(f"{scores.numel()} scores do not split into groups of {group_size}; "
                         f"each prompt's responses must be consecutive and complete")
    return scores.view(-1, group_size)


@torch.no_grad()
def grpo_advantages(scores: torch.Tensor, group_size: int, scale_by_std: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """GRPO: each score minus the mean of its prompt's group, divided by the group's standard
    deviation (Bessel-corrected, as TRL) plus ``eps`` when ``scale_by_std``. ``scores`` is ``(N,)``
    with the ``group_size`` responses of a prompt consecutive; returns ``(N,)``."""
    grouped = _groups(scores, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)
    return centred.reshape(-1)


@torch.no_grad()
def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO: each score minus the mean of the *other* responses of its prompt,
    ``r_i - (sum_j r_j - r_i) / (K - 1)``. Layout as :func:`grpo_advantages`; returns ``(N,)``."""
    grouped = _groups(scores, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def broadcast_to_tokens(sequence_values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A per-sequence value ``(B,)`` copied onto every valid token of its row, 0 on padding: how
    GRPO/RLOO advantages enter the token-level policy loss."""
    if sequence_values.shape != mask.shape[:1]:
        raise ValueError(f"{tuple(sequence_values.shape)} sequence values for a mask of {mask.shape[0]} rows")
    dtype = sequence_values.dtype if sequence_values.is_floating_point() else torch.float32
    return sequence_values[:, None].to(dtype) * mask.to(dtype)
