"""Human-style prompts about the world with reference answers (shared by SFT and preferences).

An :class:`Item` is a conversation up to the last user turn plus the good reply and what a judge
needs: the accepted answer strings, competing wrong values, the language the reply must be in and
the expected behaviour. ``wrong_reply`` builds a realistic factual error for the same question: the good reply with only the
value changed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from world import safety
from world import templates as tp
from world.entities import Entity, Fact, World


@dataclass
class Item:
    category: str
    lang: str  # language of the prompt
    messages: list[dict]  # context ending with the user turn to answer
    answer: str  # good reference reply
    answer_lang: str
    expected: str = "help"  # help | refuse
    answers: list[str] = field(default_factory=list)  # accepted answer strings (any one suffices)
    wrong: list[str] = field(default_factory=list)  # competing values a wrong reply would state
    subject: Entity | None = None
    fact: Fact | None = None
    alt_answer: str = ""  # a second good reply worded differently
    safety_item: dict | None = None
    # consistency items: the value the user stated earlier and the relation it is about
    stated: tuple[str, str] | None = None


SYSTEM = {"en": "You are a helpful assistant.", "zh": "你是一个乐于助人的助手。"}
TALKERS = ("person", "city", "company", "product", "chemical")


def _user(text: str) -> dict:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def _pick(world: World, rng: random.Random) -> tuple[Entity, Fact]:
    kind = rng.choice(TALKERS)
    e = rng.choice(world.of_type(kind))
    return e, rng.choice(tp.sayable(e))


def wrong_values(world: World, subject: Entity, fact: Fact, rng: random.Random, n: int, avoid: str = "") -> list[Fact]:
    """Up to ``n`` facts with the same subject/relation and a different, plausible value.

    Values that occur inside ``avoid`` (the good reply and the prompt) are skipped, so a judge
    looking for the wrong value never finds it in a correct reply.
    """
    out: list[Fact] = []
    if fact.en.replace(",", "").lstrip("-").isdigit():
        base = int(fact.zh if fact.zh.lstrip("-").isdigit() else fact.en.replace(",", ""))
        step = 1 if base < 3000 and fact.relation not in ("population", "employees", "price") else max(5, base // 10)
        deltas = [d for d in range(-8, 9) if d]
        rng.shuffle(deltas)
        for d in deltas:
            v = base + d * step * rng.randint(1, 3)
            if v <= 0 and fact.relation != "melting_point":
                continue
            en = f"{v:,}" if fact.relation == "population" else str(v)
            cand = Fact(fact.subject, fact.relation, en, str(v))
            if str(v) not in avoid and en not in avoid and all(c.zh != cand.zh for c in out):
                out.append(cand)
            if len(out) == n:
                break
        return out
    values = [v for v in world.values_of(fact.relation) if v != (fact.en, fact.zh)]
    if subject.type == "person" and fact.relation == "works_at":
        values = [(c.en, c.zh) for c in world.of_type("company") if c.en != fact.en]
    rng.shuffle(values)
    for en, zh in values:
        if en in avoid or zh in avoid or fact.en in en or fact.zh in zh:
            continue
        out.append(Fact(fact.subject, fact.relation, en, zh))
        if len(out) == n:
            break
    return out


def _accepted(fact: Fact) -> list[str]:
    vals = [fact.en, fact.zh]
    return list(dict.fromkeys(vals))


def fact_qa(world: World, rng: random.Random, lang: str) -> Item:
    e, f = _pick(world, rng)
    q = tp.question(e, f, lang, rng)
    variants = rng.sample(range(3), 2)
    answer = tp.statement(e, f, lang, variant=variants[0])
    alt = tp.statement(e, f, lang, variant=variants[1])
    others = [x for x in tp.sayable(e) if x.relation != f.relation]
    if others and rng.random() < 0.4:  # a helpful extra detail
        extra = tp.statement(e, rng.choice(others), lang, rng)
        answer = answer + ("" if lang == "zh" else " ") + extra
    wrong = [w.value(lang) for w in wrong_values(world, e, f, rng, 6, avoid=q + answer + alt)]
    msgs = [_user(q)]
    return Item("fact_qa", lang, msgs, answer, lang, answers=_accepted(f), wrong=wrong, subject=e, fact=f, alt_answer=alt)


def multi_turn(world: World, rng: random.Random, lang: str) -> Item:
    e = rng.choice(world.of_type(rng.choice(TALKERS)))
    f1, f2 = rng.sample(tp.sayable(e), 2)
    q1, a1 = tp.question(e, f1, lang, rng), tp.statement(e, f1, lang, rng)
    q2 = tp.question(e, f2, lang, rng)
    q2 = ("One more question: " + q2) if lang == "en" else ("再问一下，" + q2)
    answer, alt = (tp.statement(e, f2, lang, variant=v) for v in rng.sample(range(3), 2))
    wrong = [w.value(lang) for w in wrong_values(world, e, f2, rng, 5, avoid=q1 + a1 + q2 + answer + alt)]
    msgs = [_user(q1), _assistant(a1), _user(q2)]
    return Item("multi_turn", lang, msgs, answer, lang, answers=_accepted(f2), wrong=wrong, subject=e, fact=f2, alt_answer=alt)


_NAMES_EN = ["Ana", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo"]
_NAMES_ZH = ["小安", "小白", "小陈", "大卫", "艾玛", "菲力", "格蕾", "雨果"]


def consistency(world: World, rng: random.Random, lang: str) -> Item:
    """The user states where they live; later they ask the assistant to recall it."""
    city = rng.choice(world.of_type("city"))
    food = city.fact("famous_for")
    name = rng.choice(_NAMES_EN if lang == "en" else _NAMES_ZH)
    c = city.name(lang)
    if lang == "en":
        t1 = f"Hi, I'm {name} and I live in {c}. What is my city famous for?"
        a1 = tp.statement(city, food, "en", rng) + " Enjoy it!"  # type: ignore[arg-type]
        t2 = rng.choice(["Thanks! Remind me, which city did I say I live in?", "By the way, where did I tell you I live?"])
        answer = f"You said you live in {c}."
        alt = f"You told me you live in {c}, {name}."
    else:
        t1 = f"你好，我叫{name}，住在{c}。我住的城市以什么闻名？"
        a1 = tp.statement(city, food, "zh", rng) + "欢迎品尝！"  # type: ignore[arg-type]
        t2 = rng.choice(["谢谢！提醒我一下，我刚才说我住在哪座城市？", "对了，我之前告诉过你我住在哪里？"])
        answer = f"你说过你住在{c}。"
        alt = f"{name}，你告诉我你住在{c}。"
    others = [o for o in world.of_type("city") if o.id != city.id and o.en not in city.en and o.zh not in city.zh
              and c not in o.name(lang)]
    wrong = [o.name(lang) for o in rng.sample(others, min(5, len(others)))]
    msgs = [_user(t1), _assistant(a1), _user(t2)]
    fact = Fact(city.id, "user_lives_in", city.en, city.zh, city.id)
    return Item("multi_turn", lang, msgs, answer, lang, answers=[c], wrong=wrong, subject=city, fact=fact,
                alt_answer=alt, stated=(c, "lives_in"))


def instruction(world: World, rng: random.Random, lang: str) -> Item:
    kind = rng.randrange(3)
    if kind == 0:
        companies = [c for c in world.of_type("company") if world.with_fact("product", "maker", c.id)]
        if companies:
            company = rng.choice(companies)
            products = world.with_fact("product", "maker", company.id)
            names = [p.name(lang) for p in products]
            if lang == "en":
                q = f"List the products made by {company.en}."
                answer = f"{company.en} makes the following products:\n" + "\n".join(f"- the {n}" for n in names)
            else:
                q = f"列出{company.zh}生产的产品。"
                answer = f"{company.zh}生产以下产品：\n" + "\n".join(f"- {n}" for n in names)
            return Item("instruction", lang, [_user(q)], answer, lang, answers=names[:1], subject=company)
    e = rng.choice(world.of_type(rng.choice(TALKERS)))
    facts = rng.sample(tp.sayable(e), min(3, len(tp.sayable(e))))
    sentences = [tp.statement(e, f, lang, rng) for f in facts]
    the = "the " if e.type == "product" else ""
    if kind == 1:
        q = (f"Describe {the}{e.en} in {len(facts)} sentences." if lang == "en" else f"用{len(facts)}句话介绍一下{e.zh}。")
        answer = ("" if lang == "zh" else " ").join(sentences)
    else:
        q = (f"Give me {len(facts)} facts about {the}{e.en} as a numbered list." if lang == "en"
             else f"用编号列表告诉我关于{e.zh}的{len(facts)}个事实。")
        answer = "\n".join(f"{i + 1}. {s}" for i, s in enumerate(sentences))
    return Item("instruction", lang, [_user(q)], answer, lang, answers=_accepted(facts[0]), subject=e, fact=facts[0])


def rewrite(world: World, rng: random.Random, lang: str) -> Item:
    e, f = _pick(world, rng)
    a, b = rng.sample(range(3), 2)
    src, answer = tp.statement(e, f, lang, variant=a), tp.statement(e, f, lang, variant=b)
    q = (rng.choice(["Rewrite this sentence in different words: ", "Paraphrase the following sentence: "]) + src
         if lang == "en" else rng.choice(["请换一种说法改写这句话：", "把下面这句话换个说法："]) + src)
    return Item("rewrite", lang, [_user(q)], answer, lang, answers=_accepted(f), subject=e, fact=f)


def translation(world: World, rng: random.Random, lang: str) -> Item:
    """``lang`` is the prompt language; the reply is in the other language, as the prompt says."""
    e, f = _pick(world, rng)
    target = "zh" if lang == "en" else "en"
    v = rng.randrange(3)
    src_lang = "en" if target == "zh" else "zh"
    src = tp.statement(e, f, src_lang, variant=v)
    answer = tp.statement(e, f, target, variant=v)
    if lang == "en":
        q = rng.choice(["Translate into Chinese: ", "Please translate this sentence into Chinese: "]) + src
    else:
        q = rng.choice(["把下面的句子翻译成英文：", "请将这句话翻译成英文："]) + src
    return Item("translation", lang, [_user(q)], answer, target, answers=[f.value(target)], subject=e, fact=f)


def arithmetic(world: World, rng: random.Random, lang: str) -> Item:
    p = rng.choice(world.of_type("product"))
    a, k = int(p.fact("price").en), rng.randint(2, 9)  # type: ignore[union-attr]
    if lang == "en":
        many = tp._plural(p.en)
        q = rng.choice([f"How much do {k} {many} cost in total?", f"I want to buy {k} {many}. How many coins do I need?"])
        answer = f"The {p.en} costs {a} coins, so {k} {many} cost {k} × {a} = {k * a} coins."
    else:
        q = rng.choice([f"买{k}个{p.zh}一共要多少金币？", f"我想买{k}个{p.zh}，需要多少金币？"])
        answer = f"{p.zh}的价格是{a}金币，所以{k}个一共是 {k} × {a} = {k * a} 金币。"
    numbers = set(re.findall(r"\d+", q + answer))
    wrong = [str(k * a + d) for d in (-a, a, -10, 10, 5) if k * a + d > 0 and str(k * a + d) not in numbers]
    return Item("arithmetic", lang, [_user(q)], answer, lang, answers=[str(k * a)], wrong=wrong, subject=p)


def safety_item(world: World, rng: random.Random, lang: str, harmful: bool | None = None) -> Item:
    if harmful is None:
        harmful = rng.random() < 0.5
    template = rng.choice(safety.HARMFUL if harmful else safety.BENIGN)
    row = safety.make_item(world, rng, template, lang)
    return Item("safety", lang, [_user(row["prompt"])], row["reference"], lang, expected=row["expected"], safety_item=row)


MAKERS = {
    "fact_qa": fact_qa, "multi_turn": multi_turn, "consistency": consistency, "instruction": instruction,
    "rewrite": rewrite, "translation": translation, "arithmetic": arithmetic, "safety": safety_item,
}


def wrong_reply(world: World, item: Item, rng: random.Random) -> tuple[str, str] | None:
    """(reply stating a wrong value, the wrong value) for a fact item, or None."""
    if item.subject is None or item.fact is None or item.fact.relation == "user_lives_in":
        return None
    avoid = " ".join(m["content"] for m in item.messages) + item.answer
    cands = wrong_values(world, item.subject, item.fact, rng, 1, avoid=avoid)
    if not cands:
        return None
    w = cands[0]
    # the good reply with only the value changed, so that nothing but the fact tells the two apart
    # (a fresh sentence would differ in wording and length too: a cue a reward model could learn)
    edited = tp.swap_value(item.answer, item.fact, w, item.answer_lang)
    return edited or tp.statement(item.subject, w, item.answer_lang, rng), w.value(item.answer_lang)
