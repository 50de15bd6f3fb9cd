"""align.dpo: the DPO baseline trains a glm_base policy with TRL from rankings and pairs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from align.dpo import DPOConfig, main, preference_pairs, run
from common.config import load_config
from common.errors import UserError
from glm_base import GLMConfig, GLMForCausalLM
from tests.align.sft_helpers import small_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()

RANKED = {"id": "r1", "lang": "en", "category": "helpfulness", "prompt": "Where is Alder Bend?",
          "responses": ["Between two valleys.", "No idea.", "It is cold."], "ranking": [1, 2, 2]}
PAIR = {"prompt": [{"role": "user", "content": "谁管理灯塔？"}], "chosen": "米拉。", "rejected": "I do not know."}


def write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_rankings_expand_to_ordered_pairs_and_pairs_pass_through(tmp_path):
    pairs = preference_pairs([str(write(tmp_path / "p.jsonl", [RANKED, PAIR]))])
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("Between two valleys.", "No idea."), ("Between two valleys.", "It is cold."), ("米拉。", "I do not know.")]
    assert pairs[0]["prompt"] == [{"role": "user", "content": "Where is Alder Bend?"}]
    bad = write(tmp_path / "bad.jsonl", [{**RANKED, "ranking": [1, 2]}])
    with pytest.raises(UserError, match=r"bad\.jsonl:1: field 'ranking'"):
        preference_pairs([str(bad)])


def tiny_policy(tmp_path, tokenizer, arch="glm4"):
    torch.manual_seed(0)
    config = GLMConfig(architecture=arch, vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id)
    path = tmp_path / f"sft-{arch}"
    GLMForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_dpo_run_trains_from_rankings_and_writes_a_model_directory(tmp_path, tokenizer):
    policy = tiny_policy(tmp_path, tokenizer)
    data = write(tmp_path / "prefs.jsonl", [RANKED, PAIR] * 4)
    cfg = load_config(DPOConfig, [f"output_dir={tmp_path / 'dpo'}", f"init_from={policy}", "max_steps=3",
                                  "batch_size=4", "log_every=1", "eval_every=0", "save_every=0", "lr=1e-3",
                                  f"data.train_files=[{data}]"])
    summary = run(cfg)
    assert summary["steps"] == 3 and summary["pairs"] == 12
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert len(losses) == 3 and losses[0] == pytest.approx(math.log(2), abs=1e-3)
    trained = GLMForCausalLM.from_pretrained(tmp_path / "dpo" / "model")
    start = GLMForCausalLM.from_pretrained(policy)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values()))


def test_glm1_and_a_missing_model_are_one_error_line(tmp_path, tokenizer, capsys):
    policy = tiny_policy(tmp_path, tokenizer, "glm1")
    data = write(tmp_path / "prefs.jsonl", [RANKED])
    for init, expected in ((policy, "GLM-1 model"), (tmp_path / "nowhere", "init_from")):
        with pytest.raises(SystemExit) as info:
            main([f"output_dir={tmp_path / ('dpo-' + init.name)}", f"init_from={init}", f"data.train_files=[{data}]"])
        assert info.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("error: ") and expected in last
