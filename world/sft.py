"""SFT rows: chat ``messages`` about the world with reference answers, flawed at known rates.

Like real human-written data, the *train* split carries flaws at the rates of
:class:`world.config.FlawRates` (exact counts: ``round(rate * n_train)`` rows each, drawn among the
rows where the flaw makes sense): ``mixed`` (words of the other language in the answer),
``needless_refusal`` (a harmless request refused) and ``padding`` (filler for length's sake).
The flaw is in the last assistant turn and recorded in ``meta.flaw``; the eval split is clean.
Row: ``{"id", "lang", "category", "messages", "meta": {"flaw", "answer_lang", "expected",
"answers", "wrong"}}``.
"""

from __future__ import annotations

import random

from world import flaws
from world.entities import World
from world.io import number_ids, sub_rng
from world.prompts import MAKERS, SYSTEM, Item

# share of rows per category (consistency items are multi-turn rows)
MIX = [
    ("fact_qa", 0.28), ("multi_turn", 0.12), ("consistency", 0.08), ("instruction", 0.12),
    ("rewrite", 0.08), ("translation", 0.10), ("arithmetic", 0.08), ("safety", 0.14),
]
FLAWS = ("mixed", "needless_refusal", "padding")


def _row(item: Item, rng: random.Random, reply: str, flaw: str) -> dict:
    msgs = [dict(m) for m in item.messages]
    if rng.random() < 0.2:
        msgs = [{"role": "system", "content": SYSTEM[item.lang]}] + msgs
    msgs.append({"role": "assistant", "content": reply})
    return {
        "lang": item.lang,
        "category": item.category,
        "messages": msgs,
        "meta": {"flaw": flaw, "answer_lang": item.answer_lang, "expected": item.expected,
                 "answers": list(item.answers), "wrong": list(item.wrong)},
    }


def make_items(world: World, rng: random.Random, n: int) -> list[Item]:
    names = [name for name, _ in MIX]
    weights = [w for _, w in MIX]
    items = []
    for i in range(n):
        lang = "en" if i % 2 == 0 else "zh"
        items.append(MAKERS[rng.choices(names, weights)[0]](world, rng, lang))
    return items


def apply_flaws(items: list[Item], rates, rng: random.Random) -> list[str]:
    """Choose which rows get which flaw: exact counts per flaw, no row gets two."""
    n = len(items)
    assigned = ["none"] * n
    for flaw in FLAWS:
        want = round(getattr(rates, flaw) * n)
        eligible = [i for i, it in enumerate(items) if assigned[i] == "none" and it.expected == "help"]
        chosen = rng.sample(eligible, min(want, len(eligible)))
        for i in chosen:
            assigned[i] = flaw
    return assigned


def flawed_reply(item: Item, flaw: str, rng: random.Random) -> str:
    if flaw == "none":
        return item.answer
    if flaw == "mixed":
        return flaws.mix(item.answer, item.answer_lang, rng)
    if flaw == "needless_refusal":
        return flaws.refusal(item.lang, rng)
    if flaw == "padding":
        return flaws.pad(item.answer, item.answer_lang, rng)
    raise ValueError(f"unknown flaw {flaw!r}")


def generate(world: World, cfg) -> tuple[list[dict], list[dict], dict]:
    rng = sub_rng(cfg.seed, "sft")
    n = cfg.counts["sft"]
    n_eval = max(1, round(n * cfg.eval_fraction))
    items = make_items(world, rng, n)
    train_items, eval_items = items[n_eval:], items[:n_eval]
    assigned = apply_flaws(train_items, cfg.flaws, sub_rng(cfg.seed, "sft-flaws"))
    frng = sub_rng(cfg.seed, "sft-flaw-text")
    train = [_row(it, frng, flawed_reply(it, fl, frng), fl) for it, fl in zip(train_items, assigned)]
    evl = [_row(it, frng, it.answer, "none") for it in eval_items]
    realised = {f: sum(a == f for a in assigned) for f in FLAWS}
    extra = {
        "flaws": {
            "applies_to": "train split only, last assistant turn; eval is clean",
            "configured_rates": {f: getattr(cfg.flaws, f) for f in FLAWS},
            "realised_counts": realised,
            "realised_rates": {f: round(c / max(1, len(train)), 6) for f, c in realised.items()},
        },
        "categories": {name: sum(r["category"] == name for r in train + evl) for name, _ in MIX if name != "consistency"},
    }
    return number_ids(train, "sft-train"), number_ids(evl, "sft-eval"), extra
