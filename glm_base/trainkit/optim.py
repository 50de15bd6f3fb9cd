"""AdamW with decoupled weight decay on the weight matrices only, and its warmup + cosine schedule.

Every entry point's config holds an :class:`OptimArgs` (or a subclass that changes the defaults, as
cloze fine-tuning does), and :func:`build_optimizer` turns it into the optimizer and scheduler, so
the trainers agree on which parameters decay and on how the learning rate moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from .schedule import warmup_cosine


@dataclass
class OptimArgs:
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW decay (not on norms, biases, embeddings)"})
    beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    beta2: float = field(default=0.95, metadata={"help": "AdamW beta2"})
    eps: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    warmup_steps: int = field(default=20, metadata={"help": "linear warmup steps"})
    min_lr_ratio: float = field(default=0.1, metadata={"help": "cosine floor as a share of the peak"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0 = off)"})
    no_decay: list[str] = field(default_factory=lambda: ["embed"], metadata={
        "help": "parameters whose name contains one of these never decay (1-D ones never do)"})


def param_groups(model: torch.nn.Module, weight_decay: float, no_decay_names: Sequence[str] = ("embed",)) -> list[dict]:
    """Two AdamW groups: weight matrices decay; 1-D parameters (norms, biases) and those whose name
    contains one of ``no_decay_names`` (embeddings by default; a trainer may add e.g. ``"lora_"`` or
    ``"score"``) do not. Frozen parameters are left out."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            keep = param.ndim < 2 or any(pattern in name for pattern in no_decay_names)
            (no_decay if keep else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, args: OptimArgs, total_steps: int) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW over :func:`param_groups` and linear warmup then cosine decay over ``total_steps``."""
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay, args.no_decay), lr=args.lr,
                                  betas=(args.beta1, args.beta2), eps=args.eps)
    scheduler = warmup_cosine(optimizer, args.warmup_steps, max(total_steps, 1), args.min_lr_ratio)
    return optimizer, scheduler
