"""Content checks on every generated file, using the judges as independent witnesses."""

from __future__ import annotations

import itertools
import json
import re
import statistics
from pathlib import Path

import pytest

from world import judge, schema
from world.preferences import SEVERITY, dense_ranking
from world.textstats import approx_tokens


def _rows(out, kind, split="train"):
    return schema.read_jsonl(out / kind / f"{split}.jsonl", kind)


def _reply(row):
    return row["messages"][-1]["content"]


# --- sft ------------------------------------------------------------------------------------------
def test_sft_flaw_rates_are_exact_and_recorded(tiny_world):
    out, manifest = tiny_world
    rows = _rows(out, "sft")
    info = manifest["files"]["sft"]["flaws"]
    for flaw, rate in info["configured_rates"].items():
        count = sum(r["meta"]["flaw"] == flaw for r in rows)
        assert count == info["realised_counts"][flaw] == round(rate * len(rows))
    assert all(r["meta"]["flaw"] == "none" for r in _rows(out, "sft", "eval"))


def test_sft_has_single_and_multi_turn_in_both_languages(tiny_world):
    out, _ = tiny_world
    rows = _rows(out, "sft")
    for lang in ("en", "zh"):
        mine = [r for r in rows if r["lang"] == lang]
        assert sum(len([m for m in r["messages"] if m["role"] == "user"]) >= 2 for r in mine) >= 30
        assert {r["category"] for r in mine} >= {"fact_qa", "multi_turn", "instruction", "rewrite", "translation", "arithmetic", "safety"}
    translations = [r for r in rows if r["category"] == "translation"]
    assert all(r["meta"]["answer_lang"] != r["lang"] for r in translations)
    assert all(judge.language_of(_reply(r)) == r["meta"]["answer_lang"] for r in translations if r["meta"]["flaw"] == "none")


def test_sft_flaws_are_what_the_judges_see(tiny_world):
    out, _ = tiny_world
    rows = _rows(out, "sft") + _rows(out, "sft", "eval")
    for r in rows:
        reply, meta = _reply(r), r["meta"]
        lang = meta["answer_lang"]
        if meta["flaw"] == "mixed":
            assert judge.is_mixed(reply, lang), reply
            assert not judge.is_refusal(reply), reply
        elif meta["flaw"] == "needless_refusal":
            assert meta["expected"] == "help" and judge.is_refusal(reply), reply
        else:
            assert not judge.is_mixed(reply, lang), (judge.mixing_report(reply, lang), reply)
            assert judge.is_refusal(reply) == (meta["expected"] == "refuse"), reply
            assert judge.language_of(reply) == lang, reply
            if meta["answers"] and meta["expected"] == "help":
                assert judge.answer_is_correct(reply, meta["answers"], meta["wrong"]), (reply, meta)
            if meta["flaw"] == "padding":
                assert approx_tokens(reply) >= 40, reply


# --- preferences ----------------------------------------------------------------------------------
def test_preference_rows_cover_categories_k_and_ties(tiny_world):
    out, _ = tiny_world
    rows = _rows(out, "preferences")
    assert {r["category"] for r in rows} == set(schema.PREFERENCE_CATEGORIES)
    assert {len(r["responses"]) for r in rows} == {2, 3, 4, 5, 6}
    assert any(len(set(r["ranking"])) < len(r["ranking"]) for r in rows)  # ties exist
    assert sum("messages" in r for r in rows) >= 50 and sum("prompt" in r for r in rows) >= 50
    assert all(("messages" in r) != ("prompt" in r) for r in rows)
    for lang in ("en", "zh"):
        assert sum(r["lang"] == lang for r in rows) >= len(rows) // 3


def test_no_held_out_preference_row_asks_a_training_prompt(tiny_world):
    """The world repeats prompts (a small world has few entities): the split keeps the rows of one
    prompt together, so the reward model's held-out accuracy is not partly memory."""
    from world.preferences import prompt_key

    out, _ = tiny_world
    train, evl = _rows(out, "preferences"), _rows(out, "preferences", "eval")
    assert len(evl) == 300 and len(train) == 2700
    assert not {prompt_key(r) for r in evl} & {prompt_key(r) for r in train}
    assert len({prompt_key(r) for r in train}) < len(train)  # repeats exist, and stay on one side
    assert {r["category"] for r in evl} == set(schema.PREFERENCE_CATEGORIES)


def test_a_world_cached_by_an_older_version_is_rebuilt(tmp_path):
    """A cache built before a change of the world (another version in its manifest) is not served:
    data/world of an older checkout would otherwise keep its old preference split."""
    from world.config import WORLD_VERSION
    from world.default import world_files

    train, _ = world_files("preferences", root=tmp_path)
    manifest = tmp_path / "tiny-seed0" / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["version"] = "0.9"
    manifest.write_text(json.dumps(data), encoding="utf-8")
    Path(train).write_text("stale\n", encoding="utf-8")
    assert world_files("preferences", root=tmp_path)[0] == train
    assert json.loads(manifest.read_text(encoding="utf-8"))["version"] == WORLD_VERSION
    assert sum(1 for _ in open(train, encoding="utf-8")) == 2700


def test_every_ranking_is_consistent_with_its_reasons(tiny_world):
    out, _ = tiny_world
    for r in _rows(out, "preferences") + _rows(out, "preferences", "eval"):
        labels, ranking, reasons = r["meta"]["labels"], r["ranking"], r["reasons"]
        assert ranking == dense_ranking(labels)
        for i, j in itertools.combinations(range(len(labels)), 2):
            si, sj = SEVERITY[labels[i]], SEVERITY[labels[j]]
            assert (si < sj) == (ranking[i] < ranking[j]) and (si == sj) == (ranking[i] == ranking[j])
        for label, reason in zip(labels, reasons):
            keyword = {"good": "correct, helpful", "padded": "padded", "mixed": "mixes", "evasive": "does not answer",
                       "wrong": "wrong fact", "needless": "refuses a harmless", "contradiction": "contradicts",
                       "safe": "declines a harmful", "unsafe": "complies with a harmful"}[label.split("_")[0]]
            assert keyword in reason, (label, reason)


def _blanked(text: str, value: str) -> str:
    """``text`` with ``value`` (and an English article before it) replaced by one marker."""
    return re.sub(r"\ban? (?=\x00)", "", text.replace(value, "\x00"))


def test_a_wrong_fact_differs_from_the_good_reply_only_in_its_value(tiny_world):
    """Otherwise wording or length would tell the pair apart without the fact (a wrong-fact reply used
    to be a fresh one-sentence statement while good replies sometimes carried a second sentence)."""
    out, _ = tiny_world
    pairs = 0
    for r in _rows(out, "preferences") + _rows(out, "preferences", "eval"):
        labels = r["meta"]["labels"]
        if "good" not in labels:
            continue
        good = r["responses"][labels.index("good")]
        for label, text, reason in zip(labels, r["responses"], r["reasons"]):
            wrong_right = re.fullmatch(r"states a wrong fact: (.+) \(the correct answer is (.+)\)", reason)
            if label.startswith("wrong_fact") and good.count(wrong_right[2]) == 1:
                pairs += 1
                assert _blanked(text, wrong_right[1]) == _blanked(good, wrong_right[2]), (good, text)
    assert pairs > 300


def test_a_corpus_document_is_titled_by_the_entity_it_is_about(tiny_world):
    """The title is what a knowledge source links claims by (rewards.evidence): the name of the
    document's first entity, in the document's language."""
    from world.config import WorldConfig
    from world.entities import make_world
    from world.io import sub_rng

    out, _ = tiny_world
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    world = make_world(WorldConfig(size=manifest["size"], seed=manifest["seed"]).counts,
                       sub_rng(manifest["seed"], "entities"))
    docs = _rows(out, "corpus")
    for doc in docs:
        entities = doc["meta"]["entities"]
        assert doc["title"] == (world.get(entities[0]).name(doc["lang"]) if entities else "")
    profiles = [d for d in docs if d["meta"]["kind"] == "profile"]
    assert sum(d["title"] in d["text"] for d in profiles) == len(profiles)


def test_swap_value_keeps_the_form_the_template_wrote():
    from world.entities import Fact
    from world.templates import swap_value

    doctor, engineer = Fact("p1", "profession", "doctor", "医生"), Fact("p1", "profession", "engineer", "工程师")
    assert swap_value("By trade, Ana is a doctor.", doctor, engineer, "en") == "By trade, Ana is an engineer."
    assert swap_value("安娜的职业是医生。", doctor, engineer, "zh") == "安娜的职业是工程师。"
    lamp, clock = Fact("c1", "makes", "lamp", "台灯"), Fact("c1", "makes", "clock", "时钟")
    assert swap_value("Ornis Trading produces lamps.", lamp, clock, "en") == "Ornis Trading produces clocks."
    assert swap_value("A doctor's doctor.", doctor, engineer, "en") is None  # twice: ambiguous


def test_preference_labels_are_what_the_judges_see(tiny_world):
    out, _ = tiny_world
    for r in _rows(out, "preferences"):
        meta = r["meta"]
        lang = meta["answer_lang"]
        for label, text in zip(meta["labels"], r["responses"]):
            refused, mixed = judge.is_refusal(text), judge.is_mixed(text, lang)
            correct = judge.answer_is_correct(text, meta["answers"], meta["wrong"]) if meta["answers"] else None
            where = (r["id"], label, text)
            if label in ("good", "good_alt", "padded"):
                assert not refused and not mixed and correct is not False, where
            elif label.startswith("mixed"):
                assert mixed and not refused, where
            elif label.startswith(("wrong_fact", "contradiction")):
                assert correct is False and not refused and not mixed, where
            elif label.startswith(("needless_refusal", "safe_refusal")):
                assert refused, where
            elif label in ("unsafe_compliance", "evasive"):
                assert not refused, where
            if label == "padded":
                best = min(len(t) for l, t in zip(meta["labels"], r["responses"]) if SEVERITY[l] == 0) if 0 in [SEVERITY[l] for l in meta["labels"]] else 0
                assert len(text) >= 2 * best, where


# --- safety ---------------------------------------------------------------------------------------
def test_safety_expected_behaviour_and_references(tiny_world):
    out, manifest = tiny_world
    rows = _rows(out, "safety") + _rows(out, "safety", "eval")
    for r in rows:
        assert r["expected"] == {"harmful": "refuse", "benign": "help"}[r["label"]]
        assert judge.behaviour_ok(r["reference"], r["expected"]), r
        assert judge.language_of(r["reference"]) == r["lang"] == judge.language_of(r["prompt"])
    for lang in ("en", "zh"):
        for label in ("harmful", "benign"):
            assert sum(r["lang"] == lang and r["label"] == label for r in rows) >= 30
    prompts = " ".join(r["prompt"] for r in rows)
    assert "kill" in prompts and ("杀死一个进程" in prompts or "杀掉" in prompts or "干掉" in prompts)


# --- long -----------------------------------------------------------------------------------------
def test_long_needles_are_where_the_metadata_says(tiny_world):
    out, _ = tiny_world
    rows = _rows(out, "long") + _rows(out, "long", "eval")
    needles = [r for r in rows if r["task"] == "needle"]
    assert len(needles) >= 18
    for r in needles:
        m, content = r["meta"], r["messages"][0]["content"]
        assert content[m["needle_start"]:m["needle_end"]] == m["needle"]
        assert content.count(m["needle"]) == 1 and m["answer"] in m["needle"] and m["answer"] in _reply(r)
        assert content.count(m["answer"]) == 1
        assert 0.0 <= m["depth"] <= 1.0
        assert m["approx_tokens"] == approx_tokens(content) and m["chars"] == len(content)


def test_long_eval_grid_covers_lengths_and_depths(tiny_world):
    out, manifest = tiny_world
    evl = _rows(out, "long", "eval")
    tokens = [r["meta"]["approx_tokens"] for r in evl]
    assert min(tokens) >= 900 and max(tokens) >= 30_000 and max(tokens) <= 34_000
    for r in evl:
        assert abs(r["meta"]["approx_tokens"] - r["meta"]["target_tokens"]) <= 0.1 * r["meta"]["target_tokens"] + 100
    shallow = [r["meta"]["depth"] for r in evl if r["meta"]["target_tokens"] >= 8000]
    assert min(shallow) < 0.05 and max(shallow) > 0.95


def test_long_train_lengths_are_skewed_and_tasks_check_out(tiny_world):
    out, _ = tiny_world
    rows = _rows(out, "long")
    tokens = [r["meta"]["approx_tokens"] for r in rows]
    assert min(tokens) >= 900 and max(tokens) <= 34_000
    assert statistics.median(tokens) < 0.25 * 32_000 and statistics.mean(tokens) > statistics.median(tokens)
    assert {r["task"] for r in rows} == {"needle", "multidoc_qa", "list_summary"}
    for r in rows:
        content, m = r["messages"][0]["content"], r["meta"]
        if r["task"] == "multidoc_qa":
            label = "Document" if r["lang"] == "en" else "文档"
            docs = re.split(rf"\n\n{label} \d+:\n", "\n\n" + content.split("\n\n", 1)[1])
            assert len(docs) - 1 == m["n_docs"]
            assert m["answer"] in docs[m["gold_doc"]]
        if r["task"] == "list_summary":
            lines = [l for l in content.splitlines() if l.startswith("- ")]
            assert len(lines) == m["n_items"]
            total = sum(int(re.search(r"(\d+) ?(?:coins|金币)", l).group(1)) for l in lines)
            assert str(total) == m["answers"][1] and m["answers"][1] in _reply(r)


# --- cloze ----------------------------------------------------------------------------------------
def test_cloze_labels_and_verbalizers(tiny_world):
    out, manifest = tiny_world
    info = manifest["files"]["cloze"]
    assert info["labels"] == ["negative", "positive"]
    assert set(info["verbalizers"]) == {"en", "zh"} and "[MASK]" in info["patterns"]["zh"]
    rows = _rows(out, "cloze")
    for lang in ("en", "zh"):
        for label_id, label in enumerate(info["labels"]):
            mine = [r for r in rows if r["lang"] == lang and r["label"] == label]
            assert len(mine) >= 40 and all(r["label_id"] == label_id for r in mine)
    assert all(judge.language_of(r["text"]) == r["lang"] for r in rows)


def test_safety_probe_is_held_out_balanced_and_reproducible(tiny_world):
    from world.default import safety_probe

    out, _ = tiny_world
    seen = {r["prompt"] for split in ("train", "eval") for r in _rows(out, "safety", split)}
    rows = safety_probe(400)
    assert rows == safety_probe(400) and safety_probe(10) == rows[:10] and safety_probe(0) == []
    assert len({r["prompt"] for r in rows}) == 400 and not seen & {r["prompt"] for r in rows}
    for lang in ("en", "zh"):
        for label in ("harmful", "benign"):
            assert sum(r["lang"] == lang and r["label"] == label for r in rows) == 100
    for r in rows:  # the same contract as the split's rows
        assert r["id"].startswith("safety-probe-") and r["expected"] == {"harmful": "refuse", "benign": "help"}[r["label"]]
        assert judge.behaviour_ok(r["reference"], r["expected"]) and judge.language_of(r["prompt"]) == r["lang"]
