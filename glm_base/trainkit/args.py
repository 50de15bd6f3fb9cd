"""The fields every training entry point shares, in one dataclass its config extends.

    @dataclass
    class SFTConfig(TrainArgs):
        output_dir: str = field(default="runs/sft", metadata={"help": "run directory"})
        data: SFTDataArgs = field(default_factory=SFTDataArgs)

A subclass may give a field another default by declaring it again; the field keeps its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class TrainArgs:
    output_dir: str = field(default="runs/train", metadata={"help": "run directory"})
    seed: int = field(default=0, metadata={"help": "seed for init, data order and sampling (the data's own seed is separate)"})
    max_steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "examples per global micro-batch (all processes)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    eval_every: int = field(default=50, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    keep_last: int = field(default=2, metadata={"help": "checkpoints kept"})
    log_every: int = field(default=10, metadata={"help": "log train metrics every N steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the run's latest checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": "delete what output_dir holds and start afresh"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | no | bf16 | fp16", "choices": list(PRECISIONS)})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})

    def __post_init__(self):
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 0:
            raise ValueError("batch_size and grad_accum must be >= 1 and max_steps >= 0")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {list(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume=true and overwrite=true contradict each other: pick one")
        if min(self.eval_every, self.save_every, self.keep_last) < 0 or self.log_every < 1:
            raise ValueError("eval_every, save_every and keep_last must be >= 0 and log_every >= 1")

    def signature(self, **data_fields) -> dict:
        """The fields that fix the data order; a checkpoint saved with other values cannot resume."""
        return {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "seed": self.seed, **data_fields}
