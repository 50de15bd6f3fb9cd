"""Log-likelihoods of aligned targets from logits: one implementation for every scorer.

Cloze's multi-token label scores, the fact probe's candidate fillings, and the RLHF log-probs all
need ``log_softmax(logits)[target]`` at the positions that have a target (``-100`` = none).
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B, L)`` log-probability of each aligned target under ``logits`` ``(B, L, V)`` (computed in
    fp32); 0 where the target is ignored."""
    targets = targets.to(logits.device)
    valid = targets != IGNORE_INDEX
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * valid


def sequence_log_likelihoods(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``(B,)`` summed log-probability of each row's targets (no length normalisation)."""
    return target_log_probs(logits, targets).sum(-1)
