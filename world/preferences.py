"""Preference rows: K = 2..6 responses per prompt, ranked, with the reason for each position.

Schema shared with the annotation app's export and the reward stage::

    {"id", "lang", "category", "prompt" | "messages", "responses": [str], "ranking": [int],
     "reasons": [str], "meta": {"labels": [str], "answer_lang", "expected", "answers", "wrong"}}

``ranking[i]`` is the rank of ``responses[i]`` (1 = best; ties share a rank; dense: 1, 1, 2).
Each response carries a label; the ranking follows :data:`SEVERITY` of the labels exactly, so a
ranking is consistent with its reasons by construction and the tests check it with the judges.
Single-turn rows use ``prompt``; multi-turn rows use ``messages`` (the context ending with the
user turn being answered).
"""

from __future__ import annotations

import json
import random

from common.rankings import dense_ranking as rank_by_score

from world import flaws, safety
from world.entities import World
from world.io import number_ids, split, sub_rng
from world.prompts import MAKERS, Item, wrong_reply

# label -> severity (lower is better); equal severity means a tie
SEVERITY = {
    "good": 0, "good_alt": 0, "safe_refusal": 0, "safe_refusal_alt": 0,
    "padded": 1,
    "mixed": 2, "mixed_alt": 2,
    "evasive": 3, "wrong_fact": 3, "wrong_fact_alt": 3, "needless_refusal": 3, "needless_refusal_alt": 3,
    "contradiction": 3, "contradiction_alt": 3,
    "unsafe_compliance": 4,
}
REASONS = {
    "good": "correct, helpful and entirely in {lang_name}",
    "good_alt": "correct, helpful and entirely in {lang_name}, worded differently (tie)",
    "safe_refusal": "declines a harmful request and explains why",
    "safe_refusal_alt": "declines a harmful request (tie with the other safe refusal)",
    "padded": "correct but padded with filler that adds nothing ({ratio:.1f}x the length of the best answer)",
    "mixed": "correct content but mixes {other_name} words into a {lang_name} answer: {words}",
    "mixed_alt": "correct content but mixes {other_name} words into a {lang_name} answer: {words}",
    "evasive": "does not answer the question",
    "wrong_fact": "states a wrong fact: {wrong} (the correct answer is {right})",
    "wrong_fact_alt": "states a wrong fact: {wrong} (the correct answer is {right})",
    "needless_refusal": "refuses a harmless request",
    "needless_refusal_alt": "refuses a harmless request",
    "contradiction": "contradicts the conversation: says {wrong}, but the user said {right}",
    "contradiction_alt": "contradicts the conversation: says {wrong}, but the user said {right}",
    "unsafe_compliance": "complies with a harmful request ({topic})",
}
CATEGORIES = ("helpfulness", "factuality", "language-mixing", "needless-refusal", "unsafe-compliance", "consistency")
LANG_NAME = {"en": "English", "zh": "Chinese"}
EVASIVE = {
    "en": ["Hmm, that's hard to say. It depends on many things.", "There are many possible answers to this, so it's difficult to give just one.",
           "You could probably find that somewhere online."],
    "zh": ["嗯，这个很难说，要看很多因素。", "这个问题的答案有很多种，很难只给出一个。", "你应该可以在网上查到这个。"],
}


def dense_ranking(labels: list[str]) -> list[int]:
    """Rank of each label by severity: 1 = best, equal severity shares a rank, ranks are dense."""
    return rank_by_score([SEVERITY[l] for l in labels], higher_is_better=False)


def _item_for(category: str, world: World, rng: random.Random, lang: str) -> Item:
    if category == "unsafe-compliance":
        return MAKERS["safety"](world, rng, lang, harmful=True)
    if category == "needless-refusal" and rng.random() < 0.5:
        return MAKERS["safety"](world, rng, lang, harmful=False)
    if category == "consistency":
        return MAKERS["consistency"](world, rng, lang)
    if category == "factuality":
        return MAKERS[rng.choice(["fact_qa", "fact_qa", "multi_turn", "arithmetic"])](world, rng, lang)
    return MAKERS[rng.choice(["fact_qa", "multi_turn", "instruction", "rewrite", "translation", "arithmetic"])](world, rng, lang)


def _pool(category: str) -> tuple[str, list[str]]:
    """(label that must be present, optional labels)."""
    return {
        "helpfulness": ("good", ["good_alt", "padded", "evasive"]),
        "factuality": ("wrong_fact", ["good", "wrong_fact_alt", "padded"]),
        "language-mixing": ("mixed", ["good", "good_alt", "mixed_alt", "padded"]),
        "needless-refusal": ("needless_refusal", ["good", "good_alt", "needless_refusal_alt", "padded"]),
        "unsafe-compliance": ("unsafe_compliance", ["safe_refusal", "safe_refusal_alt"]),
        "consistency": ("contradiction", ["good", "good_alt", "contradiction_alt", "padded", "mixed"]),
    }[category]


def _response(label: str, item: Item, world: World, rng: random.Random, used: set[str]) -> tuple[str, dict] | None:
    """(text, reason fields) for a label, or None when this item cannot produce it."""
    lang = item.answer_lang
    if label == "good":
        return item.answer, {}
    if label == "good_alt":
        return (item.alt_answer, {}) if item.alt_answer and item.alt_answer != item.answer else None
    if label == "padded":
        return flaws.pad(item.answer, lang, rng), {}
    if label in ("mixed", "mixed_alt"):
        text = flaws.mix(item.answer, lang, rng)
        return text, {}
    if label == "evasive":
        return rng.choice(EVASIVE[lang]), {}
    if label in ("wrong_fact", "wrong_fact_alt"):
        if item.category == "arithmetic":
            wrong = next((w for w in item.wrong if w not in used), None)
            if wrong is None:
                return None
            right = item.answers[0]
            text = item.answer[: item.answer.rfind(right)] + wrong + item.answer[item.answer.rfind(right) + len(right):]
            return text, {"wrong": wrong, "right": right}
        for _ in range(4):
            got = wrong_reply(world, item, rng)
            if got and got[1] not in used:
                return got[0], {"wrong": got[1], "right": item.fact.value(lang)}  # type: ignore[union-attr]
        return None
    if label in ("needless_refusal", "needless_refusal_alt"):
        choices = [r for r in flaws.REFUSALS[item.lang] if r not in used]
        return rng.choice(choices), {}
    if label in ("contradiction", "contradiction_alt"):
        right = item.stated[0]  # type: ignore[index]
        wrong = next((w for w in item.wrong if w not in used), None)
        if wrong is None:
            return None
        return item.answer.replace(right, wrong), {"wrong": wrong, "right": right}
    if label in ("safe_refusal", "safe_refusal_alt"):
        if label == "safe_refusal":
            return item.answer, {}
        tmpl = next(t for t in safety.HARMFUL if t.topic == item.safety_item["category"])  # type: ignore[index]
        why, alt = safety._fill(tmpl.answer_en if item.lang == "en" else tmpl.answer_zh, item.safety_item["meta"]["slots"]).split("|")  # type: ignore[index]
        for _ in range(6):
            text = flaws.safe_refusal(item.lang, rng, why, alt)
            if text != item.answer:
                return text, {}
        return None
    if label == "unsafe_compliance":
        return safety.compliance(item.safety_item), {"topic": item.safety_item["category"]}  # type: ignore[arg-type,index]
    raise ValueError(f"unknown label {label!r}")


def make_row(category: str, world: World, rng: random.Random, lang: str) -> dict:
    for _ in range(20):
        item = _item_for(category, world, rng, lang)
        must, optional = _pool(category)
        k = rng.randint(2, min(6, 1 + len(optional)))
        labels = [must] + rng.sample(optional, k - 1)
        if category in ("factuality", "consistency", "needless-refusal", "language-mixing") and not any(
            SEVERITY[l] < SEVERITY[must] for l in labels
        ):
            labels[-1] = "good" if "good" in optional else labels[-1]
        if len(set(SEVERITY[l] for l in labels)) < 2:
            continue
        responses, reasons, kept, used = [], [], [], set()
        for label in labels:
            got = _response(label, item, world, rng, used)
            if got is None or got[0] in responses:
                if label == must:
                    break
                continue  # this item cannot produce that optional label: leave it out
            text, fields = got
            used.add(fields.get("wrong", text))
            responses.append(text)
            reasons.append((label, fields, text))
            kept.append(label)
        labels = kept
        if must not in labels or len(labels) < 2 or len({SEVERITY[l] for l in labels}) < 2:
            continue
        order = list(range(len(labels)))
        rng.shuffle(order)
        labels = [labels[i] for i in order]
        responses = [responses[i] for i in order]
        reasons = [reasons[i] for i in order]
        best_len = min(len(t) for l, _, t in reasons if SEVERITY[l] == 0) if any(SEVERITY[l] == 0 for l in labels) else len(item.answer)
        texts = [_reason_text(l, f, t, item, best_len) for l, f, t in reasons]
        row: dict = {"lang": lang, "category": category}
        if len(item.messages) == 1:
            row["prompt"] = item.messages[0]["content"]
        else:
            row["messages"] = [dict(m) for m in item.messages]
        row.update(
            responses=responses, ranking=dense_ranking(labels), reasons=texts,
            meta={"labels": labels, "answer_lang": item.answer_lang, "expected": item.expected,
                  "answers": list(item.answers),
                  "wrong": list(dict.fromkeys(list(item.wrong) + [f["wrong"] for _, f, _ in reasons if "wrong" in f]))},
        )
        return row
    raise RuntimeError(f"could not build a {category} preference row in 20 tries")


def _reason_text(label: str, fields: dict, text: str, item: Item, best_len: int) -> str:
    from world import judge

    lang = item.answer_lang
    values = {"lang_name": LANG_NAME[lang], "other_name": LANG_NAME["zh" if lang == "en" else "en"],
              "ratio": len(text) / max(1, best_len), "words": "", "wrong": "", "right": "", "topic": ""}
    values.update(fields)
    if label.startswith("mixed"):
        words = judge.mixing_report(text, lang).wrong_words
        values["words"] = ", ".join(f"'{w}'" for w in dict.fromkeys(words))
    return REASONS[label].format(**values)


def prompt_key(row: dict) -> str:
    """What a row asks: its prompt, or its dialogue so far."""
    return row["prompt"] if "prompt" in row else json.dumps(row["messages"], ensure_ascii=False, sort_keys=True)


def generate(world: World, cfg) -> tuple[list[dict], list[dict], dict]:
    rng = sub_rng(cfg.seed, "preferences")
    n = cfg.counts["preferences"]
    rows = []
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        lang = "en" if (i // len(CATEGORIES)) % 2 == 0 else "zh"
        rows.append(make_row(category, world, rng, lang))
    # a small world repeats prompts: a reward model scored on a prompt it trained on is scored on memory
    train, evl = split(rows, cfg.eval_fraction, sub_rng(cfg.seed, "preferences-split"), key=prompt_key)
    ks = [len(r["responses"]) for r in rows]
    extra = {
        "severity": SEVERITY,
        "ranking": "dense: 1 = best, equal severity shares a rank",
        "k_histogram": {str(k): ks.count(k) for k in range(2, 7)},
        "categories": {c: sum(r["category"] == c for r in rows) for c in CATEGORIES},
    }
    return number_ids(train, "pref-train"), number_ids(evl, "pref-eval"), extra
