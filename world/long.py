"""Long-context SFT rows: needle retrieval, multi-document QA and long-list summary.

Lengths run from ``cfg.long_min_tokens`` to ``cfg.long_max_tokens`` approximate tokens
(:func:`world.textstats.approx_tokens`, no tokenizer) and are strongly skewed towards short, like
real long-context data: ``length = min * (max/min) ** (u**2)`` with ``u`` uniform (median about
2.4k for 1k..32k). The eval split is a grid of lengths (doubling from min to max) x needle
depths, for a retrieval eval by length and depth.

Row: ``{"id", "lang", "task", "messages": [user, assistant], "meta": {...}}`` where ``meta`` has
``approx_tokens``, ``chars``, ``answer``, ``answers``, and per task ``needle``/``needle_start``/
``needle_end``/``depth`` (character offsets into the user message, depth = start / length),
``gold_doc``/``n_docs`` (1-based) or ``n_items``. Unused fields are ``""``, ``-1`` or ``-1.0`` so every
row has the same columns.
"""

from __future__ import annotations

import random

from world import corpus as cp
from world import templates as tp
from world.entities import World
from world.io import number_ids, sub_rng
from world.textstats import approx_tokens

TASKS = ("needle", "multidoc_qa", "list_summary")
INTRO = {
    "en": "Read the following text and answer the question at the end.\n\n",
    "zh": "阅读下面的文字，然后回答最后的问题。\n\n",
}
QUESTION = {"en": "\n\nQuestion: ", "zh": "\n\n问题："}


def skewed_length(rng: random.Random, lo: int, hi: int) -> int:
    return int(lo * (hi / lo) ** (rng.random() ** 2))


def _filler_sentences(world: World, rng: random.Random, lang: str, tokens: int, avoid: str = "") -> list[str]:
    talkers = [e for k in ("person", "city", "company", "product", "chemical") for e in world.of_type(k)
               if not avoid or e.name(lang) != avoid]
    out, total = [], 0
    while total < tokens:
        e = rng.choice(talkers)
        s = tp.statement(e, rng.choice(tp.sayable(e)), lang, rng)
        if avoid and avoid in s:
            continue
        out.append(s)
        total += approx_tokens(s)
    return out


def _meta(**kw) -> dict:
    base = {"approx_tokens": -1, "chars": -1, "target_tokens": -1, "answer": "", "answers": [], "needle": "",
            "needle_start": -1, "needle_end": -1, "depth": -1.0, "gold_doc": -1, "n_docs": -1, "n_items": -1}
    base.update(kw)
    return base


def needle(world: World, rng: random.Random, lang: str, target: int, depth: float) -> dict:
    person = rng.choice(world.of_type("person"))
    code = str(rng.randint(100000, 999999))
    name = person.name(lang)
    if lang == "en":
        needle_text = f"The code of {name}'s locker is {code}."
        q = f"What is the code of {name}'s locker?"
        answer = f"The code of {name}'s locker is {code}."
    else:
        needle_text = f"{name}的储物柜密码是{code}。"
        q = f"{name}的储物柜密码是多少？"
        answer = f"{name}的储物柜密码是{code}。"
    budget = target - approx_tokens(INTRO[lang] + QUESTION[lang] + q + needle_text)
    sentences = _filler_sentences(world, rng, lang, max(budget, 50), avoid=name)
    sep = " " if lang == "en" else ""
    at = round(depth * len(sentences))
    before, after = sep.join(sentences[:at]), sep.join(sentences[at:])
    head = INTRO[lang] + before + (sep if before else "")
    content = head + needle_text + (sep if after else "") + after + QUESTION[lang] + q
    start = len(head)
    body_len = len(content) - len(INTRO[lang]) - len(QUESTION[lang] + q)
    return _row(lang, "needle", content, answer, _meta(
        answer=code, answers=[code], needle=needle_text, needle_start=start, needle_end=start + len(needle_text),
        depth=round((start - len(INTRO[lang])) / max(1, body_len), 4), target_tokens=target))


def multidoc(world: World, rng: random.Random, lang: str, target: int, depth: float) -> dict:
    talkers = [e for k in ("person", "city", "company", "product", "chemical") for e in world.of_type(k)]
    gold = rng.choice(talkers)
    fact = rng.choice(tp.sayable(gold))
    docs, total = [], 0
    others = [e for e in talkers if e.id != gold.id]
    rng.shuffle(others)
    budget = target - 60
    while total < budget and others:
        e = others.pop()
        facts = tp.sayable(e)
        text = cp.profile_text(world, e, lang, facts, [rng.randrange(3) for _ in facts], False)
        if gold.name(lang) in text:
            continue
        docs.append(text)
        total += approx_tokens(text) + 4
    facts = tp.sayable(gold)
    gold_text = cp.profile_text(world, gold, lang, facts, [rng.randrange(3) for _ in facts], False)
    pos = min(len(docs), round(depth * len(docs)))
    docs.insert(pos, gold_text)
    label = "Document" if lang == "en" else "文档"
    body = "\n\n".join(f"{label} {i + 1}:\n{d}" for i, d in enumerate(docs))
    q = tp.question(gold, fact, lang, rng)
    if lang == "en":
        q = q + " Also say which document answers it."
        answer = f"{tp.statement(gold, fact, lang, rng)} (Document {pos + 1})"
    else:
        q = q + "并说明答案出自哪篇文档。"
        answer = f"{tp.statement(gold, fact, lang, rng)}（文档 {pos + 1}）"
    content = INTRO[lang] + body + QUESTION[lang] + q
    return _row(lang, "multidoc_qa", content, answer, _meta(
        answer=fact.value(lang), answers=[fact.value(lang), str(pos + 1)], gold_doc=pos + 1, n_docs=len(docs),
        depth=round(pos / max(1, len(docs) - 1), 4), target_tokens=target))


def list_summary(world: World, rng: random.Random, lang: str, target: int, depth: float) -> dict:
    products = world.of_type("product")
    colour = rng.choice(products).fact("colour")
    lines, total, n_colour, price_sum = [], 0, 0, 0
    while total < target - 80:
        p = rng.choice(products)
        price = int(p.fact("price").en)  # type: ignore[union-attr]
        c = p.fact("colour")
        n_colour += c.en == colour.en  # type: ignore[union-attr]
        price_sum += price
        i = len(lines) + 1
        line = (f"- order {i}: the {p.en}, {price} coins, {c.en}" if lang == "en"  # type: ignore[union-attr]
                else f"- 订单{i}：{p.zh}，{price}金币，{c.zh}")  # type: ignore[union-attr]
        lines.append(line)
        total += approx_tokens(line)
    if lang == "en":
        head = "Here is the order list of the market for one month:\n"
        q = f"How many orders are for {colour.en} items, and what is the total price of all orders?"  # type: ignore[union-attr]
        answer = f"There are {n_colour} orders for {colour.en} items, and all {len(lines)} orders cost {price_sum} coins in total."  # type: ignore[union-attr]
    else:
        head = "下面是集市一个月的订单列表：\n"
        q = f"有多少个订单是{colour.zh}的商品？所有订单的总价是多少？"  # type: ignore[union-attr]
        answer = f"共有{n_colour}个订单是{colour.zh}的商品，全部{len(lines)}个订单的总价是{price_sum}金币。"  # type: ignore[union-attr]
    content = INTRO[lang] + head + "\n".join(lines) + QUESTION[lang] + q
    return _row(lang, "list_summary", content, answer, _meta(
        answer=f"{n_colour}; {price_sum}", answers=[str(n_colour), str(price_sum)], n_items=len(lines), target_tokens=target))


def _row(lang: str, task: str, content: str, answer: str, meta: dict) -> dict:
    meta["approx_tokens"] = approx_tokens(content)
    meta["chars"] = len(content)
    return {"lang": lang, "task": task,
            "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}],
            "meta": meta}


MAKERS = {"needle": needle, "multidoc_qa": multidoc, "list_summary": list_summary}


def eval_grid(lo: int, hi: int, n_depths: int) -> list[tuple[int, float]]:
    lengths = []
    length = lo
    while length < hi:
        lengths.append(length)
        length *= 2
    lengths.append(hi)
    depths = [round(i / (n_depths - 1), 4) for i in range(n_depths)]
    return [(L, d) for L in lengths for d in depths]


def generate(world: World, cfg) -> tuple[list[dict], list[dict], dict]:
    rng = sub_rng(cfg.seed, "long")
    lo, hi = cfg.long_min_tokens, cfg.long_max_tokens
    n = cfg.counts["long"]
    grid = eval_grid(lo, hi, 3 if n < 100 else 5)
    evl = []
    for i, (length, depth) in enumerate(grid):
        lang = "en" if i % 2 == 0 else "zh"
        evl.append(needle(world, rng, lang, length, depth))
    train = []
    for i in range(max(1, n - len(evl))):
        lang = "en" if i % 2 == 0 else "zh"
        task = TASKS[i % len(TASKS)]
        train.append(MAKERS[task](world, rng, lang, skewed_length(rng, lo, hi), rng.random()))
    lengths = sorted(r["meta"]["approx_tokens"] for r in train)
    extra = {
        "length_unit": "approx tokens: 1 per CJK character + 1 per 4 other non-space characters (world.textstats.approx_tokens)",
        "length_distribution": "min * (max/min) ** (u**2), u ~ U(0,1)",
        "train_length_quantiles": {q: lengths[min(len(lengths) - 1, int(q * len(lengths)))] for q in (0.0, 0.5, 0.9)}
        | {"max": lengths[-1]},
        "eval_grid": {"lengths": sorted({L for L, _ in grid}), "depths": sorted({d for _, d in grid})},
    }
    extra["train_length_quantiles"] = {str(k): v for k, v in extra["train_length_quantiles"].items()}
    return number_ids(train, "long-train"), number_ids(evl, "long-eval"), extra
