"""The real vLLM colocated rollout on a CUDA machine: a tiny exported glm4 policy is served by
``vllm.LLM`` in this process; greedy outputs equal ``model.generate``'s, a pushed update changes
them, sleep mode pushes instead of reloading from disk, and the training forward recomputes vLLM's
log-probs closely. Skipped without CUDA or vLLM (run: pytest -m vllm tests/gpu)."""

import importlib.util

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.vllm,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (vLLM's PyPI wheel is a CUDA build)"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="needs vLLM installed (pip install 'glm-align[vllm]'; vllm==0.30.0 fits torch 2.13)"),
]

EOS, PAD = [1, 2, 3], 0
PROMPTS = [[10, 11, 12, 13], [20, 21], [30, 31, 32], [40]]


@pytest.fixture(scope="module")
def policy_and_export(tmp_path_factory):
    from glm_base import GLMConfig, GLMForCausalLM
    from glm_base.export import export_to_transformers

    root = tmp_path_factory.mktemp("vllm")
    torch.manual_seed(0)
    config = GLMConfig(architecture="glm4", vocab_size=256, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=256, initializer_range=0.2)
    policy = GLMForCausalLM(config).cuda().eval()
    policy.save_pretrained(root / "policy")
    export_to_transformers(root / "policy", root / "policy-hf")
    return policy, root / "policy-hf"


def _greedy_hf(policy):
    from align.rl.rollout import HFRollout

    return HFRollout(policy, EOS, PAD, max_new_tokens=8, temperature=0.0).generate(PROMPTS).responses()


def _perturb(policy, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.2)


def test_vllm_rollout_follows_pushed_weights(policy_and_export):
    """One engine per process (the external launcher owns torch.distributed), in sleep mode: every
    generation wakes the weights, pushes the policy's, and sleeps again at level 2."""
    from align.rl.logprobs import response_logprobs
    from align.rl.vllm_engine import VLLMRollout

    policy, path = policy_and_export
    rollout = VLLMRollout.colocated(policy, path, eos_token_ids=EOS, pad_token_id=PAD, max_new_tokens=8,
                                    temperature=0.0, gpu_memory_utilization=0.2, max_model_len=256,
                                    enable_sleep_mode=True, dtype="float32",
                                    llm_kwargs={"skip_tokenizer_init": True, "enforce_eager": True})
    rollout.push_weights()
    assert rollout.generate(PROMPTS).responses() == _greedy_hf(policy)
    before = rollout.generate(PROMPTS).responses()
    _perturb(policy, seed=1)
    rollout.push_weights()
    after = rollout.generate(PROMPTS).responses()
    assert after != before and after == _greedy_hf(policy)

    rollout.temperature, rollout.return_logprobs = 0.7, True
    out = rollout.generate(PROMPTS)
    recomputed = response_logprobs(policy, out.input_ids, out.attention_mask, out.response_length, 0.7,
                                   out.response_mask)
    valid = out.response_mask.bool()
    assert (recomputed[valid] - out.logprobs[valid]).abs().max().item() < 1e-3
