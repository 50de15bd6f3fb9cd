"""One optimizer step over accumulated micro-batches, normalised by the whole step's target count.

The loss of each micro-batch is ``sum of token losses / (targets in the whole step)``, so the update
is the gradient of the mean over every target token of the step, however the step is cut into
micro-batches and processes. That is what makes batch 8 x accumulation 1, batch 1 x accumulation 8,
and one or two processes give the same update (a per-micro-batch mean would weight short
micro-batches more). Accelerate averages gradients over processes and divides the loss by the
accumulation steps; the normaliser passed to the model undoes both.
"""

from __future__ import annotations

from typing import Callable

import torch


class NonFiniteLoss(RuntimeError):
    """The step's loss was NaN or inf; raised before the optimizer step so the weights stay good."""

    def __init__(self, step: int | None = None):
        super().__init__(step)
        self.step = step


def default_loss(model, batch: dict, num_items: torch.Tensor) -> torch.Tensor:
    return model(**batch, num_items_in_batch=num_items).loss


def targets_only_loss(model, batch: dict, num_items: torch.Tensor) -> torch.Tensor:
    """default_loss for models taking ``return_logits=False`` (GLMForCausalLM): the output layer
    runs only at positions with a target, which in blank infilling skips most of each row."""
    return model(**batch, num_items_in_batch=num_items, return_logits=False).loss


def train_step(accelerator, model, optimizer, local_batches: list[dict], step_targets: int, grad_clip: float = 0.0,
               loss_fn: Callable = default_loss) -> tuple[float, float | None]:
    """Forward/backward every local micro-batch, then clip and step. Returns (global mean loss of
    the step, gradient norm before clipping or None). ``step_targets`` counts target tokens (or
    whatever unit ``loss_fn`` sums) over all micro-batches of all processes."""
    world = accelerator.num_processes
    accumulation = len(local_batches)
    if accumulation != accelerator.gradient_accumulation_steps:
        raise ValueError(f"got {accumulation} micro-batches but the accelerator accumulates "
                         f"{accelerator.gradient_accumulation_steps}")
    num_items = torch.tensor(max(step_targets, 1) / (world * accumulation), dtype=torch.float32,
                             device=accelerator.device)
    step_loss = torch.zeros((), device=accelerator.device)
    grad_norm = None
    for batch in local_batches:
        with accelerator.accumulate(model), accelerator.autocast():
            loss = loss_fn(model, batch, num_items)
            step_loss += loss.detach().float() / (world * accumulation)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                step_loss = accelerator.reduce(step_loss, reduction="sum")
                if not torch.isfinite(step_loss):
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLoss()
                if grad_clip > 0:
                    grad_norm = float(accelerator.clip_grad_norm_(model.parameters(), grad_clip))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return step_loss.item(), grad_norm
