"""trainkit.optim: which parameters decay, the optimizer's hyper-parameters, and the schedule."""

from __future__ import annotations

import math

import pytest

from glm_base import GLMConfig, GLMForCausalLM
from glm_base.cloze import ClozeConfig
from glm_base.pretrain import PretrainConfig
from common.config import load_config
from glm_base.trainkit.optim import OptimArgs, build_optimizer, param_groups


@pytest.fixture(scope="module")
def model():
    config = GLMConfig(architecture="glm4", vocab_size=64, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2)
    return GLMForCausalLM(config)


def test_only_weight_matrices_decay(model):
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert decayed and kept and not decayed & kept
    assert decayed | kept == set(names.values())
    assert all(p.ndim == 2 for p in decay["params"])
    assert not any("embed" in n or "norm" in n or n.endswith("bias") for n in decayed)
    assert any("embed" in n for n in kept) and any("norm" in n for n in kept)
    assert any(n.endswith("bias") for n in kept)  # glm4: bias on QKV only, never decayed


def test_frozen_parameters_are_left_out(model):
    model.get_input_embeddings().weight.requires_grad_(False)
    try:
        groups = param_groups(model, 0.1)
        assert all(p.requires_grad for g in groups for p in g["params"])
    finally:
        model.get_input_embeddings().weight.requires_grad_(True)


def test_build_optimizer_uses_every_field_and_warms_up_then_decays(model):
    args = OptimArgs(lr=2e-3, weight_decay=0.05, beta1=0.8, beta2=0.9, eps=1e-6, warmup_steps=4, min_lr_ratio=0.1)
    optimizer, scheduler = build_optimizer(model, args, total_steps=20)
    group = optimizer.param_groups[0]
    assert group["betas"] == (0.8, 0.9) and group["eps"] == 1e-6 and group["weight_decay"] == 0.05
    lrs = []
    for _ in range(20):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([5e-4, 1e-3, 1.5e-3, 2e-3])  # linear warmup to the peak
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))  # then never rises
    middle = 2e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert lrs[12] == pytest.approx(middle)
    assert scheduler.get_last_lr()[0] == pytest.approx(2e-4)  # the cosine floor


def test_entry_points_share_the_fields_with_their_own_defaults(tmp_path):
    pretrain, cloze = PretrainConfig().optim, ClozeConfig().optim
    assert isinstance(cloze, OptimArgs)
    assert (pretrain.lr, pretrain.beta2, pretrain.weight_decay) == (1e-3, 0.95, 0.1)
    assert (cloze.lr, cloze.beta2, cloze.weight_decay, cloze.warmup_steps) == (1e-4, 0.999, 0.01, 10)
    # every field can be set from the command line, for both entry points
    cfg = load_config(ClozeConfig, ["optim.beta2=0.98", "optim.eps=1e-7"])
    assert (cfg.optim.beta2, cfg.optim.eps) == (0.98, 1e-7)


def test_no_decay_names_are_a_parameter(model):
    decay, _ = param_groups(model, 0.1, no_decay_names=("embed", "lm_head", "mlp"))
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all("self_attn" in n for n in decayed)
    optimizer, _ = build_optimizer(model, OptimArgs(no_decay=["embed", "lm_head"]), 10)
    decayed = {names[id(p)] for p in optimizer.param_groups[0]["params"]}
    assert not any("lm_head" in n for n in decayed) and any("mlp" in n for n in decayed)
