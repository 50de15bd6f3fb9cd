"""rewards.evidence: the knowledge lookup (linking, pronouns, the subject the question asks about),
the words a claim has that its source lacks (EN, numbers, ZH two-character runs), the calculator,
the observation turn the reward model reads, and the index travelling with a trained reward model
(train -> config + knowledge.jsonl in the model and every checkpoint -> compare and PPO's scorer
render the same ids; a checkpoint does not resume under other tools)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from rm_helpers import ranked_rows, tiny_model_dir, write_jsonl  # noqa: E402

from common.errors import UserError  # noqa: E402
from rewards.evidence import (KNOWLEDGE_FILE, Evidence, KnowledgeIndex, calculator_notes,  # noqa: E402
                              load_evidence, unmatched_words)

DOCS = [
    {"title": "Doromite", "text": "Doromite was discovered in 1837. Doromite was discovered by Ormor Kazansa. "
                                  "Factories use Doromite to make soap."},
    {"title": "Hagor Marul", "text": "Hagor Marul discovered Varwenol. She works as a chemist.\nQ: Where does Hagor Marul live?\nA: Hagor Marul lives in Nelgor."},
    {"title": "Nelgor", "text": "Nelgor has 422,000 residents. Nelgor was founded in 1378."},
    {"title": "内戈", "text": "内戈位于翰乔地区。内戈以茶闻名。"},
    {"title": "约德·塞马翁", "text": "约德·塞马翁最喜欢的颜色是紫色。她是一名医生。"},
]


@pytest.fixture(scope="module")
def index():
    return KnowledgeIndex.from_documents(DOCS)


def test_index_keeps_statements_resolves_pronouns_and_drops_questions(index):
    texts = [r["text"] for r in index.rows]
    assert "Hagor Marul works as a chemist." in texts and "约德·塞马翁是一名医生。" in texts
    assert "Hagor Marul lives in Nelgor." in texts  # the A: label dropped
    assert not any(t.endswith("?") for t in texts)
    assert set(index.names) == {d["title"] for d in DOCS}
    assert [len(n) for n in index.names] == sorted(map(len, index.names), reverse=True)  # longest match first


def test_lookup_finds_the_sentence_of_the_claims_relation_about_the_asked_subject(index):
    assert index.lookup("Nelgor has 168,800 residents.") == "Nelgor has 422,000 residents."
    assert index.lookup("Nelgor was founded in 1290.") == "Nelgor was founded in 1378."
    # the wrong value names another entity: the question's subject decides where to look
    found = index.lookup("Hagor Marul discovered Doromite.", question="Who discovered Doromite?")
    assert found.startswith("Doromite was discovered")
    assert index.lookup("内戈位于内温地区。") == "内戈位于翰乔地区。"
    assert index.lookup("I am glad to help.") is None


def test_unmatched_words_english_numbers_and_chinese_runs():
    assert unmatched_words("Nelgor has 168800 residents.", "Nelgor has 422,000 residents.") == ["168800"]
    assert unmatched_words("Nelgor has 422000 residents.", "Nelgor has 422,000 residents.") == []
    assert unmatched_words("Hagor Marul discovered Doromite.", "Doromite was discovered by Ormor Kazansa.") == ["Hagor Marul"]
    # 内 of 内温 is not 内 of 内戈: a Chinese character counts only inside a run the source has
    assert unmatched_words("内戈位于内温地区。", "内戈位于翰乔地区。") == ["内温"]
    assert unmatched_words("约德·塞马翁最爱红色。", "约德·塞马翁最喜欢的颜色是紫色。") == ["爱红色"]


def test_calculator_evaluates_every_product_the_response_writes():
    assert calculator_notes("4 Brilo lamps cost 4 × 290 = 870 coins, and 2 x 1,200 = 2,400.") == [
        "calculator: 4 × 290 = 870 is false (4 × 290 = 1160)", "calculator: 2 × 1200 = 2400 is true"]
    assert calculator_notes("No sums here.") == []


def test_observation_turn_follows_the_reply_only_when_a_tool_has_something_to_say(index):
    evidence = Evidence(calculator=True, index=index)
    question = [{"role": "user", "content": "How many people live in Nelgor?"}]
    seen = evidence.observe(question, "Good question! Nelgor has 168800 residents. Hope this helps!")
    assert seen == "source: Nelgor has 422,000 residents.\nnot in source: 168800"
    assert evidence.observe(question, "Nelgor has 422,000 residents.").endswith("not in source: -")
    assert evidence.conversation(question, "I cannot say.") == question + [
        {"role": "assistant", "content": "I cannot say."}]
    turns = evidence.conversation(question, "3 × 4 = 12.")
    assert turns[-1] == {"role": "observation", "content": "calculator: 3 × 4 = 12 is true"}
    assert Evidence(index=index, show_unmatched=False).observe(question, "Nelgor has 1 resident.") == \
        "source: Nelgor has 422,000 residents."


def test_the_renderer_puts_the_observation_between_the_reply_and_its_end_token(index, tmp_path):
    from transformers import AutoTokenizer

    from rewards.data import Renderer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(tmp_path / "m"))
    evidence = Evidence(index=index)
    context = [{"role": "user", "content": "How many people live in Nelgor?"}]
    ids, _ = Renderer(tokenizer, 4096, evidence=evidence)(context, "Nelgor has 9 residents.")
    expected = tokenizer.apply_chat_template(evidence.conversation(context, "Nelgor has 9 residents."),
                                             tokenize=True, return_dict=True)["input_ids"]
    assert ids == list(expected) + [tokenizer.convert_tokens_to_ids("<|user|>")]
    assert "<|observation|>" in tokenizer.decode(ids) and "not in source: 9" in tokenizer.decode(ids)


def test_bad_knowledge_files_are_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        KnowledgeIndex.from_files([tmp_path / "nope.jsonl"])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "Fine."}, {"text": 3}])
    with pytest.raises(UserError, match=r"bad.jsonl: row 2: field 'text'"):
        KnowledgeIndex.from_files([bad])
    with pytest.raises(UserError, match="no statement sentence"):
        KnowledgeIndex.from_documents([{"text": "Is this a question?"}])


def test_a_trained_reward_model_carries_its_knowledge_and_everything_that_loads_it_reads_it(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from align.rl.scorer import reward_model_scores
    from glm_base.loading import load_model_and_tokenizer
    from rewards.compare import model_scores
    from rewards.data import read_preferences
    from rewards.train import RMConfig, run
    from common.config import load_config

    knowledge = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    rows = ranked_rows(8)
    for row in rows:  # claims the lookup finds
        row["responses"][0] = "Nelgor has 422,000 residents. " + row["responses"][0]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg_args = [f"model.init_from={tiny_model_dir(tmp_path / 'init')}", f"data.train_files=[{train}]",
                f"data.eval_files=[{train}]", f"output_dir={tmp_path / 'run'}", "batch_size=4", "eval_every=0",
                "save_every=1", "evidence.calculator=true", f"evidence.knowledge=[{knowledge}]"]
    cfg = load_config(RMConfig, [*cfg_args, "max_steps=2"])
    summary = run(cfg)
    model_dir = tmp_path / "run" / "model"
    changed = load_config(RMConfig, [*cfg_args, "max_steps=3", "resume=true", "evidence.calculator=false"])
    with pytest.raises(UserError, match="evidence"):  # the inputs changed: the checkpoint cannot resume
        run(changed)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["reward_evidence"]["knowledge"] == KNOWLEDGE_FILE and summary["evidence"]["calculator"]
    assert (model_dir / KNOWLEDGE_FILE).read_bytes() == (tmp_path / "run" / "checkpoints" / "step-0000002" / KNOWLEDGE_FILE).read_bytes()

    model, tokenizer = load_model_and_tokenizer(model_dir, model_class=AutoModelForSequenceClassification,
                                                eval_mode=True)
    evidence = load_evidence(model_dir, model.config)
    assert evidence.calculator and len(evidence.index.rows) == len(KnowledgeIndex.from_documents(DOCS).rows)
    groups = read_preferences([train])[0]
    compared = model_scores(str(model_dir), groups, 512, 8)
    messages = [[{"role": "user", "content": g.context[-1]["content"]}] for g in groups for _ in g.responses]
    responses = [r for g in groups for r in g.responses]
    ppo = reward_model_scores(model, tokenizer, messages, responses, 512, 8, evidence)
    torch.testing.assert_close(torch.tensor([s for g in compared for s in g]), ppo, atol=1e-5, rtol=0)
    blind = reward_model_scores(model, tokenizer, messages, responses, 512, 8)
    assert not torch.allclose(ppo, blind)  # the observation changes what the model reads

    (model_dir / KNOWLEDGE_FILE).write_text((model_dir / KNOWLEDGE_FILE).read_text()[:-40] + "\n")
    with pytest.raises(UserError, match="sha256 differs"):
        load_evidence(model_dir, model.config)
    (model_dir / KNOWLEDGE_FILE).unlink()
    with pytest.raises(UserError, match="knowledge.jsonl, which is missing"):
        load_evidence(model_dir, model.config)
