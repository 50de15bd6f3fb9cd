"""Token rewards for PPO and a running reward normaliser.

:func:`token_rewards` builds the reward every PPO implementation shares (InstructGPT, TRL, OpenRLHF,
veRL): ``-kl_coef * KL_t`` on every valid response token, plus the sequence score (reward model and
rule rewards) on the last valid token, plus ``truncation_penalty`` there when the response hit the
length limit without an end token.

:class:`RunningMeanStd` keeps the mean and variance of every score seen (Chan et al.'s parallel
update from (count, mean, M2)), so scores can be normalised across steps and processes and the
statistics survive a resume.
"""

from __future__ import annotations

from typing import Callable

import torch

from .masked import check_prefix_mask


def last_valid_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last valid token of each row of a prefix mask, ``(B,)``. Raises ``ValueError``
    naming a row with no valid token (an empty response has nowhere to put its score)."""
    check_prefix_mask(mask)
    lengths = mask.long().sum(dim=1)
    if bool((lengths == 0).any()):
        row = int((lengths == 0).nonzero()[0])
        raise ValueError(f"response {row} has no valid token, so it cannot receive its score")
    return lengths - 1


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float,
                  truncated: torch.Tensor | None = None, truncation_penalty: float = 0.0) -> torch.Tensor:
    """Per-token rewards ``(B, T)``: ``-kl_coef * kl`` on valid tokens, plus ``scores`` (``(B,)``)
    at each row's last valid token, plus ``truncation_penalty`` there (use a negative number) for rows
    whose ``truncated`` flag is set. Padding gets 0.

    Raises ``ValueError`` on mismatched shapes or a row with no valid token.
    """
    if kl.shape != mask.shape:
        raise ValueError(f"kl {tuple(kl.shape)} and mask {tuple(mask.shape)} differ in shape")
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"{tuple(scores.shape)} scores for {mask.shape[0]} responses; expected one score each")
    last = last_valid_index(mask)
    valid = mask.bool()
    rewards = torch.where(valid, -kl_coef * kl.float(), torch.zeros((), device=kl.device))
    final = scores.float().to(kl.device)
    if truncated is not None:
        if truncated.shape != scores.shape:
            raise ValueError(f"truncated flags {tuple(truncated.shape)} do not match scores {tuple(scores.shape)}")
        final = final + truncation_penalty * truncated.to(final.device).float()
    rows = torch.arange(mask.shape[0], device=kl.device)
    rewards[rows, last] += final
    return rewards


class RunningMeanStd:
    """Running mean and variance of a stream of values (float64), updatable from many processes.

    ``update(x)`` folds in a batch; with ``all_gather`` (a callable concatenating a tensor across
    processes along dim 0, e.g. ``accelerator.gather``) every process folds in every process's
    batch, so all of them hold the same statistics as one process that saw everything.
    """

    def __init__(self, eps: float = 1e-8):
        self.count = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.eps = eps

    @staticmethod
    def moments(values: torch.Tensor) -> torch.Tensor:
        """``[count, mean, M2]`` (float64) of a batch; M2 is the sum of squared deviations."""
        x = values.detach().double().reshape(-1)
        if x.numel() == 0:
            return torch.zeros(3, dtype=torch.float64, device=x.device)
        mean = x.mean()
        return torch.stack([torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device),
                            mean, ((x - mean) ** 2).sum()])

    def update_from_moments(self, count: float, mean: float, m2: float) -> None:
        """Chan et al.'s combination of the current statistics with a batch's (count, mean, M2)."""
        count, mean, m2 = float(count), float(mean), float(m2)
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def update(self, values: torch.Tensor, all_gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Fold a batch of values into the statistics (every process's batch when ``all_gather``)."""
        moments = self.moments(values)
        if all_gather is not None:
            moments = all_gather(moments)
        for count, mean, m2 in moments.reshape(-1, 3).tolist():
            self.update_from_moments(count, mean, m2)

    @property
    def var(self) -> float:
        """Population variance of everything seen (0 before any update)."""
        return self.m2 / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        return self.var ** 0.5

    def normalize(self, values: torch.Tensor, shift_mean: bool = True, clip: float | None = None) -> torch.Tensor:
        """``(x - mean) / sqrt(var + eps)`` (``x / sqrt(var + eps)`` when not ``shift_mean``),
        optionally clipped to ``[-clip, clip]``. Raises ``RuntimeError`` before any update."""
        if self.count == 0:
            raise RuntimeError("RunningMeanStd.normalize called before any update: no statistics yet")
        out = values.double()
        if shift_mean:
            out = out - self.mean
        out = out / (self.var + self.eps) ** 0.5
        if clip is not None:
            out = out.clamp(-clip, clip)
        return out.to(values.dtype if values.is_floating_point() else torch.float32)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; raises ``KeyError`` naming a missing field."""
        for key in ("count", "mean", "m2"):
            if key not in state:
                raise KeyError(f"RunningMeanStd state has no {key!r} (fields: {sorted(state)})")
        self.count, self.mean, self.m2 = float(state["count"]), float(state["mean"]), float(state["m2"])
