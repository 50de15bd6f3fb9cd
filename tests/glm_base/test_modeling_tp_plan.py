"""The tensor-parallel plan names modules the model has, and covers every projection of a block."""

import re

import pytest
import torch
from test_modeling import VARIANTS, tiny_model
from transformers import GlmConfig
from transformers.distributed.tensor_parallel import ALL_PARALLEL_STYLES

from glm_base import GLMConfig, GLMForSequenceClassification


def rule_pattern(rule: str) -> re.Pattern:
    return re.compile(re.escape(rule).replace(r"\*", r"\d+") + r"$")


@pytest.mark.parametrize("arch", VARIANTS)
def test_every_tp_rule_names_existing_modules_and_every_block_linear_has_a_rule(arch):
    models = [tiny_model(arch), GLMForSequenceClassification(GLMConfig(**tiny_model(arch).config.to_dict()))]
    for model in models:
        plan = model._tp_plan
        assert model.supports_tp_plan and plan
        assert set(plan) >= {f"model.{rule}" for rule in model.config.base_model_tp_plan}
        names = [name for name, _ in model.named_modules()]
        for rule, style in plan.items():
            assert style in ALL_PARALLEL_STYLES, (rule, style)
            assert any(rule_pattern(rule).match(name) for name in names), f"{rule} names no module"
        block_linears = [name for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear) and ".layers." in name]
        for name in block_linears:
            assert any(rule_pattern(rule).match(name) for rule in plan), f"{name} has no TP rule"


def test_glm4_plan_is_transformers_glm_plan():
    assert tiny_model("glm4").config.base_model_tp_plan == GlmConfig.base_model_tp_plan
