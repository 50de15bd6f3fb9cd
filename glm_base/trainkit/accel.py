"""The Accelerator every training entry point runs on: precision, and data parallelism on CPUs.

Several CPU processes: start them with ``torchrun --nproc_per_node N -m glm_base.pretrain ...``.
:func:`make_accelerator` then asks for the CPU (gloo) backend, because an ``Accelerator()`` started by
torchrun on a machine without CUDA would otherwise run N unconnected copies, each thinking it is
alone. ``accelerate launch --num_processes N --cpu`` starts *one* process unless it goes through
mpirun (``--mpirun_hostfile``); that launch is refused with a message rather than training on one
process while the user believes there are N.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator

from common.errors import UserError

# Set by MPI launchers (Open MPI, Intel MPI / MPICH, MVAPICH): accelerate's mpirun route.
_MPI_WORLD_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


class LaunchError(UserError):
    """The processes that started are not the ones the launch command asked for."""


def resolve_precision(value: str) -> str:
    """``auto`` is bf16 on CUDA and fp32 (``no``) elsewhere; other values pass through."""
    if value == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return value


def check_launch(env: dict[str, str] | None = None) -> None:
    """Refuse ``accelerate launch --num_processes N`` (N > 1) on CPU without mpirun: accelerate then
    starts a single process with no world size, which would train alone."""
    env = os.environ if env is None else env
    by_accelerate = "ACCELERATE_USE_CPU" in env
    asked_for_many = "MASTER_PORT" in env
    has_world = "WORLD_SIZE" in env or any(name in env for name in _MPI_WORLD_VARS)
    if by_accelerate and asked_for_many and not has_world:
        raise LaunchError(
            "accelerate launch was asked for several processes but started one: on CPU it starts "
            "several only through mpirun (--mpirun_hostfile). Start CPU data parallelism with "
            "`torchrun --nproc_per_node N -m <module> ...` instead (GPU launches are not affected)."
        )


def make_accelerator(grad_accum: int = 1, mixed_precision: str = "auto", grad_clip: float | None = None) -> Accelerator:
    """An Accelerator for an entry point: ``mixed_precision`` may be ``auto`` (see
    :func:`resolve_precision`); a multi-process launch without CUDA uses the CPU (gloo) backend.
    Under DeepSpeed, whose engine clips inside its own step, ``grad_clip`` (the trainer's
    ``optim.grad_clip``) replaces the DeepSpeed config's ``gradient_clipping``."""
    check_launch()
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    accelerator = Accelerator(gradient_accumulation_steps=grad_accum, mixed_precision=resolve_precision(mixed_precision),
                              cpu=several and not torch.cuda.is_available())
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and grad_clip is not None:
        plugin.deepspeed_config["gradient_clipping"] = float(grad_clip)
    return accelerator
