"""PPO losses. Each loss returns ``(loss, metrics)``: a scalar to backpropagate and a dict of
detached 0-dim tensors for logging, each reduced exactly like the loss (same reduction, same
normaliser). With the default normaliser a metric is this batch's mean; with a step's normaliser it
is this micro-batch's share of the step's mean, which is what ``glm_base.trainkit.steps.train_step``
sums over micro-batches and processes.

Reductions (``reduction``):

- ``"token"``: ``sum over valid tokens of the per-token loss / normaliser``; the normaliser defaults
  to this batch's valid-token count. Pass the *global* count of the optimizer step (all
  micro-batches, all processes, divided as :mod:`glm_base.trainkit.steps` expects) and accumulated
  gradients equal those of one big batch.
- ``"sequence"``: each row's token-mean, summed over rows, ``/ normaliser`` (default: the number of
  rows): every response weighs the same, however long (the "seq-mean-token-mean" of veRL).
"""

from __future__ import annotations

import torch

from .masked import masked_mean, masked_sum

REDUCTIONS = ("token", "sequence")


def reduce_loss(per_token: torch.Tensor, mask: torch.Tensor, reduction: str = "token",
                normaliser: float | torch.Tensor | None = None) -> torch.Tensor:
    """Reduce a per-token loss ``(B, T)`` over valid tokens as described in the module docstring.
    Raises ``ValueError`` for an unknown reduction."""
    if reduction == "token":
        total = masked_sum(per_token, mask)
        denom = mask.sum() if normaliser is None else normaliser
    elif reduction == "sequence":
        rows = masked_sum(per_token, mask, dim=1) / mask.sum(dim=1).clamp(min=1).to(per_token.dtype)
        total = rows.sum()
        denom = mask.shape[0] if normaliser is None else normaliser
    else:
        raise ValueError(f"unknown loss reduction {reduction!r}; choose one of {REDUCTIONS}")
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device, total.dtype)
    return total / denom


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip_eps: float = 0.2, clip_eps_high: float | None = None, reduction: str = "token",
                normaliser: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate: per token ``-min(r * A, clip(r, 1 - eps, 1 + eps_high) * A)`` with
    ``r = exp(logprobs - old_logprobs)`` (``eps_high`` defaults to ``eps``; a larger one is DAPO's
    "clip higher"). Metrics: ``policy_loss``, ``clip_fraction`` (share of valid tokens where the
    clipped term is the smaller, i.e. the gradient is cut), ``approx_kl`` (mean of ``d**2 / 2`` with
    ``d = logprobs - old_logprobs``), ``ratio_mean``."""
    if not (logprobs.shape == old_logprobs.shape == advantages.shape == mask.shape):
        raise ValueError(f"shapes differ: logprobs {tuple(logprobs.shape)}, old {tuple(old_logprobs.shape)}, "
                         f"advantages {tuple(advantages.shape)}, mask {tuple(mask.shape)}")
    high = clip_eps if clip_eps_high is None else clip_eps_high
    log_ratio = logprobs.float() - old_logprobs.float()
    ratio = torch.exp(log_ratio)
    advantages = advantages.float()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    loss = reduce_loss(per_token, mask, reduction, normaliser)
    with torch.no_grad():
        metrics = {
            "policy_loss": loss.detach(),
            "clip_fraction": reduce_loss((clipped < unclipped).float(), mask, reduction, normaliser),
            "approx_kl": reduce_loss(0.5 * log_ratio.square(), mask, reduction, normaliser),
            "ratio_mean": reduce_loss(ratio, mask, reduction, normaliser),
        }
    return loss, metrics


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_eps: float | None = 0.2, reduction: str = "token",
               normaliser: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Clipped value loss: per token ``0.5 * max((V - R)**2, (V_clip - R)**2)`` with
    ``V_clip = V_old + clip(V - V_old, -eps, eps)``; ``clip_eps=None`` gives ``0.5 * (V - R)**2``.
    Metrics: ``value_loss``, ``value_clip_fraction`` (share of valid tokens where the clipped error
    is the larger), ``value_mean``."""
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(f"shapes differ: values {tuple(values.shape)}, old {tuple(old_values.shape)}, "
                         f"returns {tuple(returns.shape)}, mask {tuple(mask.shape)}")
    values, returns = values.float(), returns.float()
    error = (values - returns).square()
    if clip_eps is None:
        per_token = 0.5 * error
        clipped_more = torch.zeros_like(error, dtype=torch.bool)
    else:
        old_values = old_values.float()
        clipped_values = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
        clipped_error = (clipped_values - returns).square()
        per_token = 0.5 * torch.maximum(error, clipped_error)
        clipped_more = clipped_error > error
    loss = reduce_loss(per_token, mask, reduction, normaliser)
    with torch.no_grad():
        metrics = {
            "value_loss": loss.detach(),
            "value_clip_fraction": reduce_loss(clipped_more.float(), mask, reduction, normaliser),
            "value_mean": reduce_loss(values.detach(), mask, reduction, normaliser),
        }
    return loss, metrics


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax of ``logits`` over the last dimension, in fp32:
    ``logsumexp(l) - sum(softmax(l) * l)``. Apply the sampling temperature to the logits first."""
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def entropy_bonus(logits: torch.Tensor, mask: torch.Tensor, reduction: str = "token",
                  normaliser: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Mean entropy of the policy over valid tokens (``logits`` ``(B, T, V)`` aligned with ``mask``),
    reduced like the losses; subtract ``coef * entropy`` from the loss for an entropy bonus.
    Metric: ``entropy`` (the same value, detached)."""
    if logits.shape[:-1] != mask.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not align with mask {tuple(mask.shape)}")
    per_token = entropy_from_logits(logits)
    entropy = reduce_loss(per_token, mask, reduction, normaliser)
    return entropy, {"entropy": entropy.detach()}


@torch.no_grad()
def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(R - V) / Var(R)`` over valid tokens: 1 for a perfect critic, 0 for one that predicts
    the mean, negative for worse. NaN when the returns have no variance."""
    valid = mask.bool()
    returns, values = returns.float(), values.float()
    residual = returns - values
    var_returns = masked_mean((returns - masked_mean(returns, valid)).square(), valid)
    var_residual = masked_mean((residual - masked_mean(residual, valid)).square(), valid)
    if float(var_returns) == 0.0:
        return torch.tensor(float("nan"))
    return 1.0 - var_residual / var_returns
