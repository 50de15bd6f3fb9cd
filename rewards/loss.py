"""The reward model's Bradley–Terry loss over a micro-batch of K-way groups.

For a pair (chosen c, rejected r) with margin m and weight w the loss is ``-w log σ(r_c - r_r - m)``
(Bradley–Terry; the margin is Llama 2's: with a rank gap the better response must win by more).
:func:`rm_loss` follows the training kit's contract (:mod:`glm_base.trainkit.steps`): it returns the
*sum* over the micro-batch's pairs divided by ``num_items`` (the step's summed pair weight, shared
out over processes and accumulation), and its metrics normalised the same way, so the step reports
the weighted means ``accuracy`` (a tie counts half) and ``margin`` (mean r_c - r_r).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Per-pair ``-log σ(chosen - rejected - margin)`` (numerically stable)."""
    return -F.logsigmoid(chosen - rejected - margin)


def pair_outcome(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """1 where the chosen response scores higher, 0.5 for equal scores, 0 where it scores lower."""
    return (chosen > rejected).float() + 0.5 * (chosen == rejected).float()


def rewards_of(model, batch: dict) -> torch.Tensor:
    """One reward per row of ``batch`` (the score at each row's last real token)."""
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0].float()


def rm_loss(model, batch: dict, num_items: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed weighted Bradley–Terry loss of the batch's pairs / ``num_items``, with accuracy and margin."""
    rewards = rewards_of(model, batch)
    chosen, rejected = rewards[batch["chosen"]], rewards[batch["rejected"]]
    weight = batch["weight"]
    loss = (weight * bradley_terry(chosen, rejected, batch["margin"])).sum() / num_items
    with torch.no_grad():
        metrics = {"accuracy": (weight * pair_outcome(chosen, rejected)).sum() / num_items,
                   "margin": (weight * (chosen - rejected)).sum() / num_items}
    return loss, metrics
