"""align.feedback: the SFT policy's candidates go through the annotation store and come out as
rankings the reward model reads; simulated annotators rank by the world's ground truth."""

from __future__ import annotations

import json
import random

import pytest
import torch

from align.feedback import main, simulated_ranking
from glm_base import GLMConfig, GLMForCausalLM
from tests.align.sft_helpers import small_tokenizer
from world.default import world_dir
from world.judge import response_score

HELP_EN = {"expected": "help", "answer_lang": "en", "answers": ["Visa"], "wrong": ["Poven"]}
REFUSE_ZH = {"expected": "refuse", "answer_lang": "zh", "answers": [], "wrong": []}


def test_response_score_by_hand():
    assert response_score("You said you live in Visa.", HELP_EN) == 4
    assert response_score("You said you live in Poven.", HELP_EN) == 3  # right behaviour and language, wrong city
    assert response_score("你说你住在Visa。", HELP_EN) == 2 + 0 + 1  # answered, in the wrong language
    assert response_score("Sorry, I can't help with that.", HELP_EN) == 1  # a needless refusal, in English
    assert response_score("抱歉，我不能提供这方面的帮助。", REFUSE_ZH) == 3
    assert response_score("好的，你需要一把撬棍和手套。", REFUSE_ZH) == 1


def test_simulated_ranking_follows_the_judge_without_noise():
    texts = ["Sorry, I can't help with that.", "You said you live in Visa.", "You said you live in Poven."]
    assert simulated_ranking(texts, HELP_EN, random.Random(0), noise=0.0) == [3, 1, 2]
    swapped = [simulated_ranking(texts, HELP_EN, random.Random(s), noise=1.0) for s in range(20)]
    assert all(sorted(r) == [1, 2, 3] and r != [3, 1, 2] for r in swapped)


@pytest.mark.slow
def test_candidates_are_ranked_in_the_store_and_exported(tmp_path):
    tok = small_tokenizer()
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       num_key_value_heads=1, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.eos_token_id)
    policy = tmp_path / "sft"
    GLMForCausalLM(config).save_pretrained(policy)
    tok.save_pretrained(policy)
    out = tmp_path / "feedback"
    main(["--policy", str(policy), "--world", str(world_dir("tiny", 0)), "--out", str(out), "--prompts", "3",
          "--candidates", "2", "--max-new-tokens", "6", "--annotators", "2", "--noise", "0"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 3 and summary["submissions"] == 6 and summary["items_exported"] == 3
    assert summary["consensus_equals_judge_ranking"] == 1.0  # two noiseless annotators agree with the judge
    rows = [json.loads(line) for line in (out / "rankings.jsonl").read_text().splitlines()]
    assert all(len(r["responses"]) == 2 and len(r["ranking"]) == 2 and "messages" in r for r in rows)
