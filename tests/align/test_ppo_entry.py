"""The PPO entry point end to end on tiny random models (a policy, a reward model, the rule rewards):
what the run directory holds, exact resume, the group methods without a critic, the vLLM path through
the fake engine, and GLM-1 + vLLM refused with one error line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from align.ppo import main
from tests.align import fake_vllm
from tests.align.ppo_helpers import policy_dir, reward_dir, tiny_overrides

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ("step", "reward", "rules/mixing", "rules/refusal", "rules/safety", "kl", "kl_coef", "entropy", "clipfrac",
            "value_loss", "explained_variance", "response_length", "rollout/harmful_refusal_rate",
            "rollout/needless_refusal_rate", "rollout/mixing_rate")
EVAL_KEYS = {"mixing_rate", "mixed_reply_rate", "mostly_wrong_language_rate", "mixing_from_mostly_wrong",
             "needless_refusal_rate", "harmful_refusal_rate", "factual_accuracy", "heldout_loss"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo-models")
    return {"glm4": policy_dir(root, "glm4"), "glm1": policy_dir(root, "glm1"), "rm": reward_dir(root)}


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_rows(run_dir: Path) -> dict[int, dict]:
    return {row["step"]: row for row in metrics(run_dir) if "reward" in row}


def load_state(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def resume_from_step_2(full: Path, resumed: Path, models: dict, extra: dict) -> Path:
    """A copy of the 3-step run ``full`` without its step-3 checkpoint and final outputs, resumed
    (from step 2) to the end with the same ``extra`` overrides."""
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000003")
    for name in ("model", "eval.json", "summary.json"):
        path = resumed / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    main(tiny_overrides(resumed, models["glm4"], models["rm"], resume="true", **extra))
    return resumed


def assert_step_3_and_models_equal(full: Path, resumed: Path) -> dict:
    """Step 3's metrics (timings aside) and the final policy and critic/value head of the two runs
    are equal; returns the uninterrupted run's step-3 row."""
    a, b = train_rows(full)[3], train_rows(resumed)[3]
    for key, value in a.items():
        if value is None:  # e.g. a rollout share over no prompt of its kind
            assert b[key] is None, key
        elif not key.startswith("time/") and key != "samples_per_s":
            assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    for name in ("", "value"):
        left, right = load_state(full / "model" / name), load_state(resumed / "model" / name)
        assert left.keys() == right.keys()
        for key in left:
            torch.testing.assert_close(right[key], left[key], rtol=0, atol=1e-6, msg=key)
    return a


def test_entry_point_writes_metrics_eval_checkpoints_and_samples(tmp_path, models, architecture):
    out = tmp_path / "run"
    main(tiny_overrides(out, models[architecture], models["rm"], **{"reward.rm_weight": 0.5}))

    rows = train_rows(out)
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert set(REQUIRED) <= set(row), set(REQUIRED) - set(row)
        # the score is the weighted sum of its parts (means are linear): 0.5 x RM + 1 x each rule
        parts = 0.5 * row["rm"] + row["rules/mixing"] + row["rules/refusal"] + row["rules/safety"]
        assert row["reward"] == pytest.approx(parts, abs=1e-5)
        assert row["kl_coef"] == 0.05
        assert 0 < row["response_length"] <= 8
    assert rows[1]["kl"] == 0.0  # the first rollout comes from the reference's own weights

    evaluation = json.loads((out / "eval.json").read_text())
    assert set(evaluation["initial"]) == EVAL_KEYS and set(evaluation["final"]) == EVAL_KEYS
    assert evaluation["prompts"] == 6 and evaluation["heldout_rows"] == 4
    step0 = metrics(out)[0]
    assert step0["step"] == 0 and step0["eval/heldout_loss"] == pytest.approx(evaluation["initial"]["heldout_loss"])
    assert evaluation["initial_counts"]["loss_tokens"] > 0
    assert evaluation["final"]["heldout_loss"] != evaluation["initial"]["heldout_loss"]  # the policy moved

    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [0, 0, 0, 2, 2, 2]
    assert {"prompt", "reply", "lang", "category", "label"} <= set(samples[0])

    from align.rl.value_model import ValueModel

    for checkpoint in (out / "checkpoints" / "step-0000002", out / "model"):
        assert (checkpoint / "config.json").is_file() and (checkpoint / "tokenizer.json").is_file()
        critic = ValueModel.from_pretrained(checkpoint / "value")
        assert critic.value_head.weight.abs().sum() > 0  # trained away from its zero start
    state = json.loads((out / "checkpoints" / "step-0000002" / "trainer_state.json").read_text())
    assert state["kl_controller"] == {"kind": "fixed", "value": 0.05}
    assert set(state["initial_eval"]["metrics"]) == EVAL_KEYS


def test_resume_after_step_k_gives_the_uninterrupted_step_k_plus_1(tmp_path, models):
    extra = {"max_steps": 3, "ppo.kl_target": 1.0, "ppo.kl_horizon": 10, "ppo.reward_normalization": "running",
             "ppo.ptx_coef": 0.1, "ppo.ptx_batch_size": 2}
    full = tmp_path / "full"
    main(tiny_overrides(full, models["glm4"], models["rm"], **extra))
    resumed = resume_from_step_2(full, tmp_path / "resumed", models, extra)
    a = assert_step_3_and_models_equal(full, resumed)
    assert a["kl_coef"] != 0.05  # the adaptive coefficient moved, and resumed from the trainer state
    assert json.loads((full / "eval.json").read_text())["final"] == \
        pytest.approx(json.loads((resumed / "eval.json").read_text())["final"])
    assert [r["step"] for r in metrics(resumed)] == [r["step"] for r in metrics(full)]
    # PPO-ptx leaves out the world's SFT rows the rules penalise: its 58 mixed and 36 needless-refusal rows
    summary = json.loads((full / "summary.json").read_text())
    assert summary["ptx_rows_left_out"] == 94 and summary["ptx_rows"] > 0


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_group_methods_train_without_a_critic(tmp_path, models, algorithm):
    out = tmp_path / algorithm
    main(tiny_overrides(out, models["glm4"], None, **{"ppo.algorithm": algorithm, "rollout.samples_per_prompt": 4,
                                                       "rollout.prompts_per_step": 2, "ppo.kl_estimator": "k3"}))
    rows = train_rows(out)
    assert rows[2]["value_loss"] is None and rows[2]["explained_variance"] is None
    assert not (out / "model" / "value").exists() and not (out / "checkpoints" / "step-0000002" / "value").exists()
    assert "rm" not in rows[2] and rows[2]["kl"] >= 0  # k3 is never negative


@pytest.fixture
def fake_vllm_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm.module())
    # VLLMRollout.colocated sets the external launcher's variables; restore them after the test, or the
    # next Accelerator would start a one-process group on MASTER_PORT
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "0")  # records the variable's state (even absent) for the undo
        monkeypatch.delenv(name)
    return sys.modules["vllm"]


@pytest.mark.parametrize("shared", [False, True])
def test_vllm_engine_from_the_entry_point_gets_the_policy_after_every_update(tmp_path, models, fake_vllm_module,
                                                                            shared):
    out = tmp_path / "vllm"
    main(tiny_overrides(out, models["glm4"], models["rm"], **{"rollout.engine": "vllm", "max_steps": 3,
                                                              "critic.shared": str(shared).lower()}))
    engine = fake_vllm.LLM.last
    assert Path(engine.model_path) == out / "vllm_policy"  # the exported (transformers GlmForCausalLM) policy
    assert engine.kwargs["distributed_executor_backend"] == "external_launcher"
    names = engine.names()
    # one push at start (a resumed policy is not the export), then rollout, update, push per step
    assert names.count("reset_prefix_cache") == 4 and "collective_rpc" not in names
    generates = [i for i, n in enumerate(names) if n == "generate"]
    resets = [i for i, n in enumerate(names) if n == "reset_prefix_cache"]
    assert resets[0] < generates[0] and all(any(g < r for r in resets) for g in generates[:3])
    final = load_state(out / "model")
    engine_state = engine.model.state_dict()
    for key, value in final.items():
        torch.testing.assert_close(engine_state[key], value, rtol=0, atol=0, msg=key)
    assert train_rows(out)[3]["kl"] != 0.0


def test_glm1_with_vllm_is_refused_with_one_error_line(tmp_path, models):
    out = tmp_path / "refused"
    cmd = [sys.executable, "align/ppo.py", *tiny_overrides(out, models["glm1"], None, **{"rollout.engine": "vllm"})]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: rollout.engine=vllm cannot serve the GLM-1 policy"), lines
    assert "rollout.engine=hf" in lines[0]
    assert not out.exists()  # refused before the run directory is made


def test_a_nan_reward_stops_the_run_with_one_error_line_naming_the_last_checkpoint(tmp_path, models, capsys):
    from transformers import AutoModelForSequenceClassification

    import glm_base  # noqa: F401

    broken = tmp_path / "rm-nan"
    rm = AutoModelForSequenceClassification.from_pretrained(models["rm"])
    with torch.no_grad():
        rm.score.weight.fill_(float("nan"))
    rm.save_pretrained(broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(models["rm"] / name, broken)
    out = tmp_path / "nan"
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_overrides(out, models["glm4"], broken))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: the training reward became NaN/inf at step 1"), lines[-1]
    assert "Last good checkpoint: none" in lines[-1]
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())


@pytest.mark.parametrize("shared", [False, True])
def test_lora_policy_uses_its_base_weights_as_reference_and_saves_the_merged_model(tmp_path, models, shared):
    from peft import PeftModel

    from glm_base.loading import load_model_and_tokenizer

    out = tmp_path / "lora"
    main(tiny_overrides(out, models["glm4"], models["rm"], **{"model.lora.enabled": "true", "model.lora.r": 4,
                                                              "optim.lr": 1e-2, "critic.shared": str(shared).lower()}))
    rows = train_rows(out)
    assert rows[1]["kl"] == 0.0 and rows[2]["kl"] != 0.0  # LoRA's B starts at zero: policy = base at first
    checkpoint = out / "checkpoints" / "step-0000002"
    assert (checkpoint / "adapter_config.json").is_file() and (checkpoint / "value" / "model.safetensors").is_file()
    if shared:  # the head alone beside the adapter and beside the merged policy
        from safetensors.torch import load_file

        for directory in (checkpoint, out / "model"):
            head = load_file(str(directory / "value" / "model.safetensors"))
            assert sorted(head) == ["value_head.bias", "value_head.weight"] and head["value_head.weight"].abs().sum() > 0
    merged, _ = load_model_and_tokenizer(out / "model")
    base, _ = load_model_and_tokenizer(models["glm4"])
    adapted = PeftModel.from_pretrained(load_model_and_tokenizer(models["glm4"])[0], out / "model" / "adapter")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted(input_ids=ids).logits, rtol=1e-4, atol=1e-4)
        assert (merged(input_ids=ids).logits - base(input_ids=ids).logits).abs().max() > 1e-4
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, base.state_dict()[k])]
    assert changed and all(any(m in k for m in ("q_proj", "k_proj", "v_proj", "o_proj")) for k in changed)


def test_shared_critic_checkpoints_the_head_alone_and_resumes_exactly(tmp_path, models):
    """critic.shared=true: the value head on the policy, one optimizer. Checkpoints and model/ hold the
    plain policy and only the head in value/; resuming after step 2 gives the uninterrupted step 3."""
    from safetensors.torch import load_file

    from glm_base.loading import load_model_and_tokenizer

    extra = {"max_steps": 3, "critic.shared": "true", "critic.vf_coef": 0.5, "ppo.ptx_coef": 0.1,
             "ppo.ptx_batch_size": 2, "ppo.reward_normalization": "running"}
    full = tmp_path / "full"
    main(tiny_overrides(full, models["glm4"], models["rm"], **extra))
    rows = train_rows(full)
    for row in rows.values():
        assert set(REQUIRED) <= set(row), set(REQUIRED) - set(row)
        assert row["value_loss"] > 0 and "train/shared/loss" in row and "train/value/grad_norm" not in row
        assert row["train/shared/loss"] == pytest.approx(row["train/policy/loss"] + 0.5 * row["train/value/loss"],
                                                         rel=1e-5, abs=1e-7)
    assert rows[1]["kl"] == 0.0
    for directory in (full / "checkpoints" / "step-0000003", full / "model"):
        head = load_file(str(directory / "value" / "model.safetensors"))
        assert sorted(head) == ["value_head.bias", "value_head.weight"]
        assert head["value_head.weight"].abs().sum() > 0  # trained away from its zero start
        assert not (directory / "value" / "config.json").exists()
        assert set(load_state(directory)) == set(load_state(models["glm4"]))  # the plain policy's weights
    policy, _ = load_model_and_tokenizer(full / "model")  # loadable as before
    assert type(policy).__name__ == "GLMForCausalLM"

    resumed = resume_from_step_2(full, tmp_path / "resumed", models, extra)
    assert_step_3_and_models_equal(full, resumed)


def test_shared_critic_refuses_a_critic_source_and_group_methods(tmp_path, models):
    from align.ppo import PPOConfig
    from common.config import ConfigError, load_config

    for extra, message in (({"critic.init_from": "policy"}, "critic.init_from=policy has no meaning"),
                           ({"ppo.algorithm": "grpo"}, "applies to ppo.algorithm=ppo"),
                           ({"critic.vf_coef": -1}, "vf_coef must be >= 0")):
        overrides = tiny_overrides(tmp_path / "x", models["glm4"], models["rm"], **{"critic.shared": "true", **extra})
        with pytest.raises((ConfigError, ValueError), match=message):
            load_config(PPOConfig, overrides, prog="python -m align.ppo")
