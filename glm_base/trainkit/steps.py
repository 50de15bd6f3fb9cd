"""One optimizer step over accumulated micro-batches, normalised by a count for the whole step.

A trainer gives :func:`train_step` its process's micro-batches, a loss function and the step's
normaliser: the number of units the loss sums over (target tokens, examples, sequences) in *all*
micro-batches of *all* processes. Each micro-batch's loss is ``sum of unit losses / normaliser``,
so the update is the gradient of the mean over every unit of the step however the step is cut into
micro-batches and processes: batch 8 x accumulation 1, batch 1 x accumulation 8, and one or two
processes give the same update (a per-micro-batch mean would weight short micro-batches more).

The normaliser is either known for the whole step (every process builds the same global batch) or
summed over processes with :func:`global_count` (per-rank samplers, PPO rollouts).

Loss functions have the signature ``loss_fn(model, batch, num_items) -> (loss, metrics)``:
``num_items`` is the per-process share of the normaliser (a tensor) that the loss divides its sum
by, exactly as transformers' ``num_items_in_batch``; ``metrics`` maps names to tensors normalised
the same way (a sum over the micro-batch's units divided by ``num_items``), so the step's value of
a metric is the mean over all units of the step: a reward model reports accuracy and margin, PPO
its clip fraction, KL and entropy. Accelerate averages gradients over processes and divides the loss
by the accumulation steps; ``num_items`` undoes both.

Only the forward runs under ``accelerator.autocast()``; backward, clipping and the optimizer step
run outside it. The step refuses to update on a non-finite loss *or* a non-finite gradient norm.
Under DeepSpeed the engine clips (at ``gradient_clipping``, see :func:`glm_base.trainkit.accel`)
and reports the norm only once it has stepped; that norm is then checked after the step.
"""

from __future__ import annotations

import math
import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch

LossFn = Callable[..., "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


class NonFiniteLoss(RuntimeError):
    """The step's loss or gradient norm was NaN or inf. Raised before the optimizer step (after it
    under DeepSpeed, which reports the norm only then), so the last checkpoint is good."""

    def __init__(self, what: str = "loss", step: int | None = None):
        super().__init__(f"non-finite {what}")
        self.what = what
        self.step = step


@contextlib.contextmanager
def at_step(step: int):
    """Stamp a :class:`NonFiniteLoss` raised inside with the optimizer step it happened at (the
    entry point's error message names it)."""
    try:
        yield
    except NonFiniteLoss as err:
        err.step = step
        raise


@dataclass
class StepResult:
    loss: float
    grad_norm: float | None
    metrics: dict[str, float] = field(default_factory=dict)


def causal_lm_loss(model, batch: dict, num_items: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The model's own loss over its ``labels``/``shift_labels``, summed and divided by ``num_items``
    (no KV cache: training never reuses one)."""
    return model(**batch, num_items_in_batch=num_items, use_cache=False).loss, {}


def targets_only_loss(model, batch: dict, num_items: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """:func:`causal_lm_loss` for models taking ``return_logits=False`` (GLMForCausalLM): the output
    layer runs only at positions with a target, which in blank infilling skips most of each row."""
    return model(**batch, num_items_in_batch=num_items, return_logits=False, use_cache=False).loss, {}


def global_count(accelerator, local_count: float) -> float:
    """The sum of ``local_count`` over all processes (the normaliser when each process samples its
    own data)."""
    if accelerator.num_processes == 1:
        return float(local_count)
    total = torch.tensor(float(local_count), dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(total, reduction="sum").item())


def clip_gradients(accelerator, model, max_norm: float) -> float | None:
    """Clip to ``max_norm`` and return the norm before clipping; ``None`` where it is not known yet
    (DeepSpeed: the engine clips inside its step and reports the norm afterwards)."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm)
    return None if norm is None else float(norm)


def _engine_grad_norm(accelerator) -> float | None:
    wrapped = getattr(accelerator, "deepspeed_engine_wrapped", None)
    if wrapped is None:
        return None
    norm = wrapped.get_global_grad_norm()
    return None if norm is None else float(norm)


def train_step(accelerator, model, optimizer, local_batches: list[dict], normaliser: float,
               loss_fn: LossFn = causal_lm_loss, grad_clip: float = 0.0) -> StepResult:
    """Forward/backward every local micro-batch, then clip and step.

    ``normaliser`` counts the units ``loss_fn`` sums over in all micro-batches of all processes.
    Returns the step's global mean loss, the gradient norm before clipping (``None`` when clipping is
    off), and each metric's global mean. Raises :class:`NonFiniteLoss` before the optimizer step when
    the loss or the gradient norm is NaN/inf (gradients are zeroed, weights untouched).
    """
    world = accelerator.num_processes
    accumulation = len(local_batches)
    if accumulation != accelerator.gradient_accumulation_steps:
        raise ValueError(f"got {accumulation} micro-batches but the accelerator accumulates "
                         f"{accelerator.gradient_accumulation_steps}")
    share = world * accumulation
    num_items = torch.tensor(max(float(normaliser), 1e-12) / share, dtype=torch.float32, device=accelerator.device)
    totals: dict[str, torch.Tensor] = {}
    loss_total = torch.zeros((), dtype=torch.float32, device=accelerator.device)
    grad_norm = None
    for batch in local_batches:
        with accelerator.accumulate(model):
            with accelerator.autocast():
                loss, metrics = loss_fn(model, batch, num_items)
            loss_total += loss.detach().float() / share
            for name, value in metrics.items():
                value = torch.as_tensor(value, dtype=torch.float32, device=accelerator.device).detach()
                totals[name] = totals.get(name, 0.0) + value / share
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                loss_total = accelerator.reduce(loss_total, reduction="sum")
                if not torch.isfinite(loss_total):
                    optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteLoss("loss")
                if grad_clip > 0:
                    grad_norm = clip_gradients(accelerator, model, grad_clip)
                    if grad_norm is not None and not math.isfinite(grad_norm):
                        optimizer.zero_grad(set_to_none=True)
                        raise NonFiniteLoss("gradient norm")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    if grad_clip > 0 and grad_norm is None:
        grad_norm = _engine_grad_norm(accelerator)
        if grad_norm is not None and not math.isfinite(grad_norm):
            raise NonFiniteLoss("gradient norm")
    reduced = {}
    if totals:
        names = sorted(totals)
        stacked = accelerator.reduce(torch.stack([totals[n] for n in names]), reduction="sum")
        reduced = {n: float(v) for n, v in zip(names, stacked.tolist())}
    return StepResult(loss=float(loss_total.item()), grad_norm=grad_norm, metrics=reduced)
