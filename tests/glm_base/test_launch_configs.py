"""The shipped accelerate configs are valid for accelerate and agree with the model and trainers.

They target GPUs and cannot run here; what can be checked on a CPU is that accelerate reads every
file without unknown keys, that FSDP wraps a layer class the model really has, and that DeepSpeed
clips gradients at the trainers' own ``optim.grad_clip`` (under DeepSpeed the engine clips, not
``accelerator.clip_grad_norm_``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

import glm_base.modeling as modeling
from glm_base.pretrain import PretrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "accelerate").glob("*.yaml"))


def test_the_four_launch_modes_are_shipped():
    assert {p.stem for p in CONFIGS} == {"ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_reads_the_config(path):
    config = load_config_from_file(str(path))  # raises on unknown keys
    assert config.num_processes > 1 and config.mixed_precision == "bf16"
    assert path.read_text(encoding="utf-8").startswith(f"# accelerate launch --config_file configs/accelerate/{path.name}")
    if config.distributed_type == DistributedType.DEEPSPEED:
        stage = int(path.stem[-1])
        assert config.deepspeed_config["zero_stage"] == stage
        assert config.deepspeed_config["gradient_clipping"] == PretrainConfig().optim.grad_clip
    elif config.distributed_type == DistributedType.FSDP:
        layer = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        assert isinstance(getattr(modeling, layer, None), type), f"no class {layer} in glm_base.modeling"
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    else:
        assert config.distributed_type == DistributedType.MULTI_GPU
