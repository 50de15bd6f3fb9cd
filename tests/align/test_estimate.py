"""align.estimate: parameter counts equal the model's, and every term equals a hand computation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from align.estimate import (GIB, Shape, Workload, activation_bytes, parameter_count, plan, shape_of,
                            workload_from_config)
from glm_base import GLMConfig, GLMForCausalLM
from glm_base.configuration import config_for_size

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("values", [
    dict(architecture="glm4", vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
         num_key_value_heads=2),
    dict(architecture="glm4", vocab_size=97, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
         num_key_value_heads=1, head_dim=24, intermediate_size=100, tie_word_embeddings=True),
    dict(architecture="glm1", vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
         max_position_embeddings=80),
])
def test_parameter_count_equals_the_models(values):
    config = GLMConfig(**values)
    with torch.device("meta"):
        model = GLMForCausalLM(config)
    assert parameter_count(shape_of(config)) == sum(p.numel() for p in model.parameters())


def test_glm4_9b_has_the_published_size():
    assert parameter_count(shape_of(config_for_size("glm4-9b"))) == pytest.approx(9.40e9, rel=0.005)


SHAPE = Shape("glm4", vocab=1000, hidden=100, layers=2, heads=4, kv_heads=2, head_dim=25, intermediate=300,
              max_positions=512, tied=False)


def test_terms_by_hand():
    p = parameter_count(SHAPE)
    # embeddings 1000*100, per layer: qkv 100*(100+50+50)+200, o 100*100, mlp 100*600+300*100, norms 200
    assert p == 100_000 + 2 * (20_000 + 200 + 10_000 + 60_000 + 30_000 + 200) + 100 + 100_000
    # activations: s*b*(14h + 4kv + 8i) per layer + 6 s b V; s=10, b=2
    per_layer = 20 * (14 * 100 + 4 * 50 + 8 * 300)
    assert activation_bytes(SHAPE, 2, 10, checkpointing=False) == 2 * per_layer + 6 * 20 * 1000
    assert activation_bytes(SHAPE, 2, 10, checkpointing=True) == 2 * (2 * 20 * 100) + per_layer + 6 * 20 * 1000
    work = Workload("sft", SHAPE, 2, 10, False)
    ddp, zero2, zero3 = (plan(work, s, 4, 80) for s in ("ddp", "zero2", "zero3"))
    assert (ddp.terms["weights"], ddp.terms["gradients"], ddp.terms["optimizer"]) == (2 * p, 2 * p, 12 * p)
    assert (zero2.terms["weights"], zero2.terms["gradients"], zero2.terms["optimizer"]) == (2 * p, 2 * p // 4, 12 * p // 4)
    assert zero3.total == 2 * p // 4 + 2 * p // 4 + 12 * p // 4 + activation_bytes(SHAPE, 2, 10, False)


def test_ppo_adds_critic_reference_reward_model_and_vllm():
    work = Workload("ppo", SHAPE, 2, 10, True, vllm_utilization=0.25)
    p = parameter_count(SHAPE)
    fsdp = plan(work, "fsdp", 4, 80)
    assert fsdp.terms["reference (frozen)"] == 2 * p // 4 == fsdp.terms["reward model (frozen)"]
    assert fsdp.terms["critic optimizer"] == 12 * p // 4
    assert fsdp.terms["vLLM engine (colocated)"] == int(0.25 * 80 * GIB)
    assert plan(work, "ddp", 4, 80).terms["reference (frozen)"] == 2 * p
    grpo = Workload("ppo", SHAPE, 2, 10, True, with_critic=False)
    assert not any(t.startswith("critic") for t in plan(grpo, "fsdp", 4, 80).terms)
    assert "reward model (frozen)" in plan(grpo, "fsdp", 4, 80).terms


def test_config_and_cli(tmp_path):
    config = tmp_path / "ppo" / "big.yaml"
    config.parent.mkdir()
    config.write_text("batch_size: 1\ngradient_checkpointing: true\nmodel: {size: glm4-9b}\n"
                      "rollout: {engine: vllm, max_new_tokens: 512, vllm_gpu_memory_utilization: 0.3}\n")
    work = workload_from_config(config, None, None, None, None, None)
    assert (work.stage, work.seq_len, work.vllm_utilization, work.checkpointing) == ("ppo", 1024, 0.3, True)
    out = subprocess.run([sys.executable, "-m", "align.estimate", "--config", str(config), "--gpus", "8",
                          "--gpu-mem", "80"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    total = next(line for line in out.stdout.splitlines() if line.startswith("| **total**"))
    fits = next(line for line in out.stdout.splitlines() if line.startswith("| fits"))
    assert fits.split("|")[2:6] == [" no ", " no ", " yes ", " yes "], (total, fits)
    bad = subprocess.run([sys.executable, "-m", "align.estimate", "--config", str(config), "--size", "huge"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: --size 'huge' is not a named size")
