"""Static cache and compiled decoding: the same tokens as the dynamic cache, one graph for all steps."""

import pytest
import torch
from test_modeling import VARIANTS, VOCAB, infill_batch, tiny_model
from transformers import CompileConfig


def left_padded_prompts():
    prompt = torch.randint(3, VOCAB, (2, 6), generator=torch.Generator().manual_seed(9))
    mask = torch.ones_like(prompt)
    mask[0, :2] = 0
    return dict(inputs=prompt, attention_mask=mask)


def infill_prompts():
    ids, positions, part_a = infill_batch(part_a=7, part_b=1)  # Part A + <sop>: generate the span
    return dict(inputs=ids, position_ids=positions, part_a_length=part_a)


PROMPTS = {"left_padded": left_padded_prompts, "blank_infilling": infill_prompts}


def greedy(model, prompts, **kwargs):
    return model.generate(**prompts, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None, **kwargs)


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("prompts", list(PROMPTS))
def test_static_cache_generation_equals_dynamic(arch, prompts):
    model = tiny_model(arch)
    inputs = PROMPTS[prompts]()
    dynamic = greedy(model, inputs)
    static = greedy(model, inputs, cache_implementation="static")
    assert torch.equal(static, dynamic)
    torch.manual_seed(4)
    sampled = model.generate(**inputs, max_new_tokens=8, do_sample=True, pad_token_id=0, cache_implementation="static")
    torch.manual_seed(4)
    assert torch.equal(sampled, model.generate(**inputs, max_new_tokens=8, do_sample=True, pad_token_id=0))


def compile_config(backend):
    config = CompileConfig(fullgraph=True, backend=backend, mode=None, dynamic=False)
    config._compile_all_devices = True  # generate compiles on accelerators only unless told
    return config


@pytest.mark.parametrize("arch", VARIANTS)
@pytest.mark.parametrize("prompts", list(PROMPTS))
def test_compiled_fullgraph_decoding_is_one_graph_and_equals_dynamic(arch, prompts):
    """Dynamo traces the decoding forward whole (fullgraph) and never recompiles across steps: the
    2D mask grows each step, so it is padded to the static cache's size before the forward."""
    assert type(tiny_model(arch))._can_compile_fullgraph
    torch._dynamo.reset()
    model = tiny_model(arch)
    inputs = PROMPTS[prompts]()
    dynamic = greedy(model, inputs)
    with torch._dynamo.config.patch(recompile_limit=1):  # a second graph would fail (fullgraph)
        compiled = greedy(model, inputs, cache_implementation="static", compile_config=compile_config("eager"))
    assert hasattr(model, "_compiled_call")
    assert torch.equal(compiled, dynamic)
    torch._dynamo.reset()


@pytest.mark.slow
def test_inductor_compiled_decoding_equals_dynamic():
    """Real compilation (inductor, about 15 s per case on CPU)."""
    torch._dynamo.reset()
    model = tiny_model("glm4")
    for make in PROMPTS.values():
        inputs = make()
        assert torch.equal(greedy(model, inputs, cache_implementation="static",
                                  compile_config=compile_config("inductor")), greedy(model, inputs))
    torch._dynamo.reset()
