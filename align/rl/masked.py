"""Reductions over the valid tokens of padded ``(B, T)`` tensors.

``mask`` is 1 (or True) on valid tokens and 0 elsewhere; values at masked positions never reach a
result, even when they are NaN or inf (they are selected away, not multiplied by 0). Each function
takes an optional ``all_reduce`` (a callable summing a tensor over processes, such as
``lambda t: accelerator.reduce(t, "sum")``), so the statistics can be those of the global batch.
"""

from __future__ import annotations

from typing import Callable

import torch

AllReduce = Callable[[torch.Tensor], torch.Tensor]


def _check(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if values.shape != mask.shape:
        raise ValueError(f"values have shape {tuple(values.shape)} but mask has {tuple(mask.shape)}")
    return mask.bool()


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is set (over ``dim``, or over everything)."""
    valid = _check(values, mask)
    zeroed = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return zeroed.sum() if dim is None else zeroed.sum(dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None,
                all_reduce: AllReduce | None = None) -> torch.Tensor:
    """Mean of ``values`` over valid tokens. With ``dim``, per row/column; a row with no valid token
    gives 0 (not NaN). Over everything, an empty mask raises ``ValueError``."""
    valid = _check(values, mask)
    total = masked_sum(values, valid, dim)
    count = valid.sum() if dim is None else valid.sum(dim)
    count = count.to(total.dtype)
    if all_reduce is not None:
        total, count = all_reduce(total), all_reduce(count)
    if dim is None:
        if float(count) == 0:
            raise ValueError("masked_mean over an empty mask: there is no valid token")
        return total / count
    return total / count.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = False,
               all_reduce: AllReduce | None = None) -> torch.Tensor:
    """Variance of ``values`` over all valid tokens (population variance, or with Bessel's
    correction when ``unbiased``). Raises ``ValueError`` if the mask is empty, or if ``unbiased``
    and only one token is valid."""
    valid = _check(values, mask)
    mean = masked_mean(values, valid, all_reduce=all_reduce)
    squares = masked_sum((values - mean) ** 2, valid)
    count = valid.sum().to(squares.dtype)
    if all_reduce is not None:
        squares, count = all_reduce(squares), all_reduce(count)
    if unbiased:
        if float(count) < 2:
            raise ValueError("unbiased masked_var needs at least two valid tokens")
        return squares / (count - 1)
    return squares / count


def check_prefix_mask(mask: torch.Tensor, name: str = "response_mask") -> None:
    """Raise ``ValueError`` unless every row of ``mask`` is ones then zeros (a response that is valid
    up to its end and padded after it), naming the first bad row."""
    m = mask.long()
    if m.dim() != 2:
        raise ValueError(f"{name} must be (batch, tokens), got shape {tuple(mask.shape)}")
    if m.shape[1] > 1:
        rises = (m[:, 1:] > m[:, :-1]).any(dim=1)
        if bool(rises.any()):
            row = int(rises.nonzero()[0])
            raise ValueError(f"{name} row {row} has a valid token after padding ({m[row].tolist()}); "
                             f"responses must be valid up to their end and padded after it")
