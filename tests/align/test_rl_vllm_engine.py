"""VLLMRollout against a fake engine with vLLM's interface (tests/align/fake_vllm.py): weights pushed
after updates reach the engine under the exported names, sleep mode never reloads from disk, GLM-1
and unexported checkpoints are refused."""

import sys

import pytest
import torch
from safetensors import safe_open

from align.rl.logprobs import response_logprobs
from align.rl.rollout import HFRollout
from align.rl.vllm_engine import (
    VLLMRollout, VLLMUnsupported, check_checkpoint_dir, named_weights_for_vllm, vllm_weight_name,
)
from glm_base.export import export_to_transformers
from tests.align import fake_vllm
from tests.align.rl_helpers import tiny_model

EOS, PAD = [1, 2, 3], 0
PROMPTS = [[10, 11, 12, 13], [20, 21], [30, 31, 32], [40]]


@pytest.fixture
def exported(tmp_path):
    """A tiny glm4 policy and its export to transformers' GlmForCausalLM (what vLLM would load)."""
    policy = tiny_model("glm4", seed=4)
    policy.save_pretrained(tmp_path / "policy")
    export_to_transformers(tmp_path / "policy", tmp_path / "policy-hf")
    return policy, tmp_path / "policy-hf"


@pytest.fixture
def fake_vllm_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm.module())
    return sys.modules["vllm"]


def _colocated(policy, path, **kwargs):
    return VLLMRollout.colocated(policy, path, eos_token_ids=EOS, pad_token_id=PAD, max_new_tokens=8, **kwargs)


def _greedy_hf(policy):
    return HFRollout(policy, EOS, PAD, max_new_tokens=8, temperature=0.0).generate(PROMPTS).responses()


def _perturb(policy, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.2)


def test_glm1_and_unexported_checkpoints_are_refused(tmp_path, exported):
    glm1 = tiny_model("glm1")
    with pytest.raises(VLLMUnsupported, match="no GLM-1 architecture"):
        VLLMRollout(object(), glm1, EOS, PAD, 4)
    with pytest.raises(VLLMUnsupported, match="no GLM-1"):
        list(named_weights_for_vllm(glm1))
    glm1.save_pretrained(tmp_path / "glm1")
    with pytest.raises(VLLMUnsupported, match="no GLM-1"):
        check_checkpoint_dir(tmp_path / "glm1")
    with pytest.raises(VLLMUnsupported, match="python -m glm_base.export"):
        check_checkpoint_dir(tmp_path / "policy")  # the glm_base checkpoint the fixture exported
    check_checkpoint_dir(exported[1])


def test_pushed_names_are_the_exported_checkpoints(exported):
    policy, path = exported
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    assert {name for name, _ in named_weights_for_vllm(policy)} == saved
    assert vllm_weight_name("module._orig_mod.model.layers.0._checkpoint_wrapped_module.mlp.down_proj.weight") == \
        "model.layers.0.mlp.down_proj.weight"
    with pytest.raises(VLLMUnsupported, match="merge the adapter"):
        vllm_weight_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight")


def test_colocated_engine_is_built_in_process(exported, fake_vllm_module):
    policy, path = exported
    rollout = _colocated(policy, path, gpu_memory_utilization=0.25)
    kwargs = fake_vllm.LLM.last.kwargs
    assert fake_vllm.LLM.last.model_path == str(path)
    assert kwargs["distributed_executor_backend"] == "external_launcher"
    assert kwargs["gpu_memory_utilization"] == 0.25 and kwargs["logprobs_mode"] == "processed_logprobs"
    params = rollout.sampling_params()
    assert (params.stop_token_ids, params.max_tokens, params.top_k, params.logprobs) == (EOS, 8, -1, 0)


def test_a_pushed_update_changes_the_engines_outputs(exported, fake_vllm_module):
    policy, path = exported
    rollout = _colocated(policy, path, temperature=0.0)
    engine = fake_vllm.LLM.last
    before = rollout.generate(PROMPTS).responses()
    assert before == _greedy_hf(policy)  # the engine loaded the exported policy from disk
    _perturb(policy, seed=0)
    assert rollout.generate(PROMPTS).responses() == before  # not pushed yet: the engine is stale
    rollout.push_weights()
    after = rollout.generate(PROMPTS).responses()
    assert after == _greedy_hf(policy) and after != before
    engine_params = dict(engine.model.named_parameters())
    for name, tensor in named_weights_for_vllm(policy):
        assert torch.equal(engine_params[name], tensor), name
    assert engine.names()[-4:] == ["apply_model", "load_weights", "reset_prefix_cache", "generate"]


def test_pushes_happen_after_each_update(exported, fake_vllm_module):
    policy, path = exported
    rollout = _colocated(policy, path, temperature=0.0, bucket_bytes=10_000)  # several buckets per push
    engine = fake_vllm.LLM.last
    all_names = {name for name, _ in named_weights_for_vllm(policy)}
    outputs = []
    for step in range(3):
        outputs.append(rollout.generate(PROMPTS).responses())
        _perturb(policy, seed=step)  # the PPO update
        start = len(engine.calls)
        rollout.push_weights()
        pushed = engine.calls[start:]
        loaded = {n for call in pushed if call[0] == "load_weights" for n in call[1]}
        assert loaded == all_names and sum(c[0] == "load_weights" for c in pushed) > 1
        assert pushed[-1] == ("reset_prefix_cache",)
    assert rollout.pushes == 3
    outputs.append(rollout.generate(PROMPTS).responses())
    assert outputs[-1] == _greedy_hf(policy)
    assert all(a != b for a, b in zip(outputs, outputs[1:]))


def test_sleep_mode_pushes_and_never_reloads_from_disk(exported, fake_vllm_module):
    policy, path = exported
    rollout = _colocated(policy, path, temperature=0.0, enable_sleep_mode=True)
    engine = fake_vllm.LLM.last
    assert engine.calls == [("sleep", 2)]  # asleep from the start, weights dropped
    _perturb(policy, seed=1)  # the policy moves away from the checkpoint on disk
    first = rollout.generate(PROMPTS).responses()
    assert first == _greedy_hf(policy)  # the pushed weights, not the disk's
    assert engine.names()[1:] == ["wake_up", "apply_model", "load_weights", "reset_prefix_cache", "wake_up",
                                  "generate", "sleep"]
    assert engine.calls[1] == ("wake_up", ("weights",)) and engine.calls[5] == ("wake_up", ("kv_cache",))
    _perturb(policy, seed=2)
    rollout.push_weights()  # after the update: wake the weights, push (the KV cache stays asleep)
    assert rollout.generate(PROMPTS).responses() == _greedy_hf(policy)
    second = rollout.generate(PROMPTS).responses()  # level 2 dropped the weights again: pushed again
    assert second == _greedy_hf(policy)
    assert ("collective_rpc", "reload_weights") not in engine.calls
    assert all(c[0] != "collective_rpc" for c in engine.calls)


def test_engine_logprobs_match_the_training_forward(exported, fake_vllm_module):
    policy, path = exported
    rollout = _colocated(policy, path, temperature=0.7)
    torch.manual_seed(0)
    out = rollout.generate(PROMPTS)
    recomputed = response_logprobs(policy, out.input_ids, out.attention_mask, out.response_length, 0.7,
                                   out.response_mask)
    valid = out.response_mask.bool()
    assert (recomputed[valid] - out.logprobs[valid]).abs().max().item() <= 1e-4
    assert out.truncated.tolist() == [not (set(r) & set(EOS)) for r in out.responses()]


def test_server_engine_uses_the_trl_client_calls(exported):
    policy, _ = exported

    class FakeClient:
        def __init__(self):
            self.calls = []

        def generate(self, prompts, n, temperature, top_p, top_k, max_tokens, logprobs, generation_kwargs):
            self.calls.append(("generate", temperature, top_k, max_tokens, generation_kwargs))
            return {"prompt_ids": prompts, "completion_ids": [[7, 8, 2], [9, 9, 9, 9, 9, 9, 9, 9]],
                    "logprobs": [[[-0.5], [-0.25], [-1.0]], [[-0.1]] * 8]}

        def update_named_params(self, metadata, named):
            self.calls.append(("update_named_params", [m[0] for m in metadata], len(list(named))))

        def reset_prefix_cache(self):
            self.calls.append(("reset_prefix_cache",))

    client = FakeClient()
    rollout = VLLMRollout.from_server(policy, client, eos_token_ids=EOS, pad_token_id=PAD, max_new_tokens=8)
    out = rollout.generate([[5, 6], [7]])
    assert out.response_mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1] * 8]
    assert out.truncated.tolist() == [False, True]
    assert out.logprobs[0, :3].tolist() == [-0.5, -0.25, -1.0]
    assert client.calls[0] == ("generate", 1.0, 0, 8, {"stop_token_ids": EOS})
    rollout.push_weights()
    names = [n for n, _ in named_weights_for_vllm(policy)]
    assert client.calls[1] == ("update_named_params", names, len(names))
    assert client.calls[2] == ("reset_prefix_cache",)


class _ScriptedEngine:
    """Returns prepared vLLM outputs, one per prompt."""

    def __init__(self, completions):
        self.completions = completions

    def generate(self, prompts, sampling_params=None, use_tqdm=False):
        return [fake_vllm.RequestOutput(str(i), None, p["prompt_token_ids"], None, [c])
                for i, (p, c) in enumerate(zip(prompts, self.completions))]


def test_completion_outputs_become_a_rollout():
    lp = lambda *pairs: [{t: fake_vllm.Logprob(v)} for t, v in pairs]
    completions = [
        fake_vllm.CompletionOutput(0, "", [7, 8, 2], None, lp((7, -0.5), (8, -0.25), (2, -1.0)), "stop", 2),
        fake_vllm.CompletionOutput(0, "", [9, 9], None, lp((9, -0.1), (9, -0.2)), "length", None),  # cut short
        # the end token left out of token_ids (stop_reason says which): restored, its log-prob unknown (NaN)
        fake_vllm.CompletionOutput(0, "", [6], None, lp((6, -0.3)), "stop", 3),
    ]
    rollout = VLLMRollout(_ScriptedEngine(completions), tiny_model("glm4"), EOS, PAD, max_new_tokens=3,
                          sampling_params_cls=fake_vllm.SamplingParams)
    out = rollout.generate([[5, 6], [7], [8, 9, 10]])
    assert out.prompt_ids.tolist() == [[0, 5, 6], [0, 0, 7], [8, 9, 10]]
    assert out.response_ids.tolist() == [[7, 8, 2], [9, 9, 0], [6, 3, 0]]
    assert out.response_mask.tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 0]]
    assert out.truncated.tolist() == [False, True, False]
    torch.testing.assert_close(out.logprobs[:2], torch.tensor([[-0.5, -0.25, -1.0], [-0.1, -0.2, 0.0]]))
    assert out.logprobs[2, 0].item() == pytest.approx(-0.3)
    assert torch.isnan(out.logprobs[2, 1]) and out.logprobs[2, 2].item() == 0.0
    wrong = [fake_vllm.CompletionOutput(0, "", [6, 4], None, None, "stop", None)]
    with pytest.raises(RuntimeError, match="not one of eos_token_ids"):
        VLLMRollout(_ScriptedEngine(wrong), tiny_model("glm4"), EOS, PAD, 4, return_logprobs=False,
                    sampling_params_cls=fake_vllm.SamplingParams).generate([[5]])
