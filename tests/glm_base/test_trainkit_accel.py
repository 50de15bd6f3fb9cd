"""trainkit.accel: precision choice and the CPU launch that would silently train on one process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from glm_base.trainkit.accel import LaunchError, check_launch, make_accelerator, resolve_precision

REPO = Path(__file__).resolve().parents[2]


def test_auto_precision_is_fp32_without_cuda():
    expected = "bf16" if torch.cuda.is_available() else "no"
    assert resolve_precision("auto") == expected
    assert resolve_precision("fp16") == "fp16" and resolve_precision("no") == "no"


@pytest.mark.parametrize("env, refused", [
    ({}, False),  # python -m ...
    ({"ACCELERATE_USE_CPU": "True"}, False),  # accelerate launch, one process
    ({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}, True),  # --num_processes 2 on CPU
    ({"ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500", "WORLD_SIZE": "2", "RANK": "0"}, False),  # torchrun route
    ({"ACCELERATE_USE_CPU": "True", "MASTER_PORT": "29500", "PMI_SIZE": "2"}, False),  # mpirun route
    ({"MASTER_PORT": "29500", "WORLD_SIZE": "2"}, False),  # torchrun
])
def test_check_launch(env, refused):
    if refused:
        with pytest.raises(LaunchError, match="torchrun --nproc_per_node N"):
            check_launch(env)
    else:
        check_launch(env)


def test_single_process_accelerator(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    accelerator = make_accelerator(grad_accum=2)
    assert accelerator.num_processes == 1 and accelerator.gradient_accumulation_steps == 2


@pytest.mark.slow
def test_accelerate_launch_of_two_cpu_processes_is_refused(tmp_path):
    # what `accelerate launch --num_processes 2 --cpu` really does on a CPU machine: one process
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--cpu",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "glm_base.pretrain", f"output_dir={tmp_path / 'run'}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "error: accelerate launch was asked for several processes but started one" in done.stderr
    assert "torchrun --nproc_per_node N" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
