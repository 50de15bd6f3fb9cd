"""align.pipeline: stages run in order into one directory, a rerun skips finished stages, --force
reruns a stage and what depends on it, and every artefact loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from align.pipeline import PipelineConfig, downstream, main

REPO = Path(__file__).resolve().parents[2]
MICRO = [
    "stages=[world, pretrain, infill, export]",
    "overrides={pretrain: [max_steps=2, eval_every=0, save_every=0, eval_batches=1, batch_size=4, "
    "'data.max_length=64', 'tokenizer.vocab_size=400', 'model.overrides={hidden_size: 32, num_hidden_layers: 1, "
    "num_attention_heads: 2, num_key_value_heads: 1}']}",
]


def done_times(out: Path) -> dict[str, float]:
    return {p.parent.name: p.stat().st_mtime for p in out.glob("*/.done")}


@pytest.mark.slow
def test_micro_pipeline_runs_skips_and_forces(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "run"
    main([f"output_dir={out}", *MICRO])
    assert set(done_times(out)) == {"world", "pretrain", "infill", "export"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["export"]["max_abs_diff"] < 1e-4
    assert summary["stages"]["pretrain"]["steps"] == 2
    assert (out / "SUMMARY.md").is_file() and (out / "logs" / "pretrain.log").is_file()

    import glm_base  # noqa: F401
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, GlmForCausalLM

    assert AutoModelForCausalLM.from_pretrained(out / "pretrain" / "model") is not None
    assert GlmForCausalLM.from_pretrained(out / "export" / "hf") is not None
    assert len(load_dataset("json", data_files=str(out / "world" / "sft" / "train.jsonl"), split="train")) > 0

    before = done_times(out)
    main([f"output_dir={out}", *MICRO])  # everything complete: nothing reruns
    assert done_times(out) == before
    main([f"output_dir={out}", *MICRO, "--force", "pretrain"])
    after = done_times(out)
    assert after["world"] == before["world"]
    assert all(after[s] > before[s] for s in ("pretrain", "infill", "export"))

    # a world built by another world version (an older checkout) is rebuilt, with everything after it
    manifest = out / "world" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": "0.9"}))
    main([f"output_dir={out}", *MICRO])
    rebuilt = done_times(out)
    assert all(rebuilt[s] > after[s] for s in ("world", "pretrain", "infill", "export"))
    assert json.loads(manifest.read_text())["version"] != "0.9"


RECIPE_OVERRIDES = (
    "overrides={"
    "pretrain: [max_steps=2, eval_every=0, save_every=0, eval_batches=1, batch_size=4, 'data.max_length=64', "
    "'tokenizer.vocab_size=400', 'model.overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "num_key_value_heads: 1, max_position_embeddings: 1024}'], "
    "sft: [max_steps=2, eval_every=0, save_every=0, batch_size=4, 'data.max_length=512', 'data.truncation=drop', "
    "'eval.language_questions=2', 'eval.max_rows=4', 'eval.max_new_tokens=4'], "
    "rm: [max_steps=2, focus_steps=1, eval_every=0, save_every=0, batch_size=2, 'data.max_length=1024', 'data.bad_rows=drop', "
    "eval_batch_size=8], "
    "dpo: [max_steps=2, batch_size=2, 'data.max_length=256'], "
    "ppo: [max_steps=1, eval_every=0, save_every=0, 'rollout.max_new_tokens=4', 'rollout.prompts_per_step=2', "
    "'rollout.samples_per_prompt=2', 'ppo.minibatch_size=2', 'ppo.epochs=1', 'eval.prompts=2', "
    "'eval.heldout_rows=2', 'eval.max_new_tokens=4']}"
)


@pytest.mark.slow
def test_the_whole_recipe_in_micro(tmp_path, monkeypatch):
    """world -> pretrain -> SFT -> feedback (annotation loop) -> RM -> DPO -> PPO -> evaluate, each on a
    micro setting: every artefact exists and loads with its Auto class or load_dataset, the report is
    written and evaluates every policy."""
    monkeypatch.chdir(REPO)
    out = tmp_path / "recipe"
    main([f"output_dir={out}", "stages=[world, pretrain, sft, feedback, rm, dpo, ppo, evaluate]",
          "feedback_prompts=2", "eval_prompts=2", RECIPE_OVERRIDES])
    import glm_base  # noqa: F401
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    for stage in ("pretrain", "sft", "dpo", "ppo"):
        assert AutoModelForCausalLM.from_pretrained(out / stage / "model") is not None, stage
    # SFT reads the run's own world; its config (world_safety: true) adds the safety demonstrations
    sft_files = json.loads((out / "sft" / "summary.json").read_text())["train_data"]["files"]
    assert sft_files == [str(out / "world" / "sft" / "train.jsonl"), str(out / "world" / "safety" / "train.jsonl")]
    rm = AutoModelForSequenceClassification.from_pretrained(out / "rm" / "model")
    assert rm.config.num_labels == 1
    assert len(load_dataset("json", data_files=str(out / "feedback" / "rankings.jsonl"), split="train")) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"base", "sft", "dpo", "ppo"}
    assert all("mixing_rate" in m and "heldout_loss" in m for m in metrics.values())
    assert (out / "report.md").is_file() and "Alignment metrics by stage" in (out / "report.md").read_text()
    assert (out / "ppo" / "eval.json").is_file()


def test_force_takes_every_dependent_stage():
    assert downstream(["pretrain"]) >= {"pretrain", "infill", "fact_probe", "export", "cloze", "sft", "rm", "dpo", "ppo"}
    assert "world" not in downstream(["pretrain"])
    assert downstream(["sft"]) == {"sft", "feedback", "rm", "dpo", "ppo", "evaluate"}
    assert downstream(["ppo"]) == {"ppo", "evaluate"}
    assert downstream(["annotation"]) == {"annotation"}


@pytest.mark.parametrize("args, message", [
    (["stages=[world, sfft]"], "stages: unknown ['sfft']"),
    (["stages=[infill]"], "stage infill needs ['pretrain'] first"),
    (["--force", "pretrian"], "force: unknown stage(s) ['pretrian']"),
])
def test_bad_stage_names_are_one_error_line(args, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "align.pipeline", f"output_dir={tmp_path / 'x'}", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, last


def test_config_defaults_run_the_stages_whose_configs_exist():
    cfg = PipelineConfig()
    assert cfg.output_dir == "runs/demo" and cfg.stages == [] and cfg.force == []
