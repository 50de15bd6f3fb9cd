"""KL between the policy and the reference model, per token, and the coefficient that weighs it.

With ``d = logp - logp_ref`` at the sampled token (sampled from the policy):

- ``k1 = d``: unbiased for KL(policy || ref), can be negative per token (TRL, OpenRLHF default);
- ``k2 = d**2 / 2``: biased, low variance, always >= 0;
- ``k3 = exp(-d) - 1 + d``: unbiased and always >= 0 (Schulman's estimator, GRPO's choice).

``d`` is clamped to ``[-clamp, clamp]`` before k3's exponential so one extreme token cannot overflow.
"""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1",
                 mask: torch.Tensor | None = None, clamp: float = 20.0) -> torch.Tensor:
    """Per-token KL estimate, ``(B, T)``; 0 where ``mask`` is 0 (when given).

    Raises ``ValueError`` for an unknown ``estimator`` or mismatched shapes.
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} differ")
    d = logprobs.float() - ref_logprobs.float()
    if estimator == "k1":
        kl = d
    elif estimator == "k2":
        kl = 0.5 * d.square()
    elif estimator == "k3":
        d = d.clamp(-clamp, clamp)
        kl = torch.expm1(-d) + d
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose one of {KL_ESTIMATORS}")
    if mask is not None:
        kl = torch.where(mask.bool(), kl, torch.zeros((), dtype=kl.dtype, device=kl.device))
    return kl


class FixedKLController:
    """A constant KL coefficient ``value``; ``update`` does nothing (same interface as adaptive)."""

    def __init__(self, value: float):
        if value < 0:
            raise ValueError(f"KL coefficient must be >= 0, got {value}")
        self.value = float(value)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Return the (unchanged) coefficient."""
        return self.value

    def state_dict(self) -> dict:
        return {"kind": "fixed", "value": self.value}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; raises ``ValueError`` for an adaptive controller's state."""
        if state.get("kind") != "fixed":
            raise ValueError(f"cannot load a {state.get('kind')!r} KL controller state into a fixed one")
        self.value = float(state["value"])


class AdaptiveKLController:
    """Ziegler et al. (2019): steer the coefficient so the measured KL tracks ``target``.

    ``update(kl, n)``: ``err = clip(kl / target - 1, -0.2, 0.2)``; ``value *= 1 + err * n / horizon``,
    where ``n`` is the number of samples (episodes) the KL was measured on. ``state_dict`` /
    ``load_state_dict`` carry the coefficient across a resume.
    """

    def __init__(self, init_value: float, target: float, horizon: float):
        if init_value < 0:
            raise ValueError(f"KL coefficient must be >= 0, got {init_value}")
        if target <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target > 0 and horizon > 0, got target={target}, horizon={horizon}")
        self.value = float(init_value)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move the coefficient after a batch of ``n_steps`` samples with mean KL ``current_kl``;
        returns the new value."""
        error = min(max(float(current_kl) / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"kind": "adaptive", "value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        """Restore the coefficient (target and horizon come from the current config). Raises
        ``ValueError`` for a fixed controller's state."""
        if state.get("kind") != "adaptive":
            raise ValueError(f"cannot load a {state.get('kind')!r} KL controller state into an adaptive one")
        self.value = float(state["value"])
