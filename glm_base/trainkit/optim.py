"""AdamW with decoupled weight decay on the weight matrices only, and its warmup + cosine schedule.

Every entry point's config holds an :class:`OptimArgs` (or a subclass that changes the defaults, as
cloze fine-tuning does), and :func:`build_optimizer` turns it into the optimizer and scheduler, so
the trainers agree on which parameters decay and on how the learning rate moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight matrices decay; norms, biases and embeddings (1-D or ``embed``) do not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "embed" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, args: OptimArgs, total_steps: int) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW over :func:`param_groups` and linear warmup then cosine decay over ``total_steps``."""
    optimizer = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr,
                                  betas=(args.beta1, args.beta2), eps=args.eps)
    scheduler = warmup_cosine(optimizer, args.warmup_steps, max(total_steps, 1), args.min_lr_ratio)
    return optimizer, scheduler
