"""Models whose every forward is a collective across processes, and keeping the processes in step.

Under FSDP (1 and 2) and DeepSpeed ZeRO-3 each process holds a shard of the weights and every
forward gathers them from all the processes, so all of them must run the same number of forwards or
the ones that run more wait forever. Two consequences for any code that runs a model outside the
training step (evaluation, rollouts):

- ``generate`` needs ``synced_gpus=True``: a process whose replies are finished keeps stepping
  until every process is done (:func:`forwards_are_collective` says when).
- A loop over this process's share of the data must run as many iterations as the longest share,
  the extra ones on a stand-in whose result is dropped (:func:`in_step`).

Nothing changes for one process, DDP or ZeRO-1/2 (whole weights on every process).
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def forwards_are_collective(model) -> bool:
    """True when ``model``'s weights are sharded across processes (FSDP2 ``fully_shard``, an FSDP1
    wrapper, or DeepSpeed ZeRO-3 partitioned parameters), so that each forward is a collective."""
    if not _distributed():
        return False
    from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel

    if any(isinstance(m, (FullyShardedDataParallel, FSDPModule)) for m in model.modules()):
        return True
    return any(hasattr(p, "ds_id") for p in model.parameters())  # ZeRO-3 marks the parameters it partitions


def most_over_processes(n: int, device: torch.device | str = "cpu") -> int:
    """The largest ``n`` over all processes (``n`` itself outside a process group)."""
    if not _distributed():
        return n
    if dist.get_backend() == "nccl" and torch.device(device).type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    value = torch.tensor([n], dtype=torch.long, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item())


def in_step(batches: Sequence[Any], model, stand_in: Any) -> Iterator[tuple[bool, Any]]:
    """``(True, batch)`` for each of ``batches``, then, when ``model``'s forwards are collective,
    ``(False, stand_in)`` until this process has run as many iterations as the process with the most
    batches. Run the model on every item; keep the results of the real ones only."""
    total = len(batches)
    if forwards_are_collective(model):
        total = most_over_processes(len(batches), next(model.parameters()).device)
    for i in range(total):
        yield (True, batches[i]) if i < len(batches) else (False, stand_in)
