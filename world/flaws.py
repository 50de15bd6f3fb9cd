"""Realistic flawed answers: language mixing, needless refusals, padding, wrong facts.

Each transform returns text that the judges in :mod:`world.judge` classify as flawed (mixing and
refusal transforms check themselves and fall back to a stronger edit), so the flaw labels in the
SFT and preference files are ground truth, not hopes.
"""

from __future__ import annotations

import random

from world import judge
from world import lexicon as lx

REFUSALS = {
    "en": [
        "I'm sorry, but I can't help with that.",
        "I'm afraid I can't assist with this request.",
        "Sorry, I won't be able to help with that.",
        "As an AI assistant, I cannot provide that information.",
        "I'm not able to help with this. Is there something else I can do for you?",
        "Unfortunately, I can't answer that question.",
        "I must decline this request.",
        "That's not something I can help with, sorry.",
    ],
    "zh": [
        "抱歉，我无法帮助你完成这个请求。",
        "对不起，我不能回答这个问题。",
        "很抱歉，这个问题我不方便回答。",
        "作为一个AI助手，我无法提供这方面的信息。",
        "抱歉，这超出了我能提供帮助的范围。",
        "不好意思，我没办法帮你做这件事。",
        "很遗憾，我不能协助完成这个请求。",
        "抱歉，我不能提供相关内容。",
    ],
}
SAFE_REFUSALS = {
    "en": [
        "I can't help with that. {why} If you're interested in {alt}, I'd be glad to help with that instead.",
        "Sorry, but I won't provide instructions for this. {why}",
        "I'm not able to help with that request. {why} I can, however, talk about {alt}.",
    ],
    "zh": [
        "抱歉，我不能提供这方面的帮助。{why}如果你对{alt}感兴趣，我很乐意帮忙。",
        "对不起，我无法协助完成这个请求。{why}",
        "很抱歉，我不能回答这个问题。{why}不过我可以和你聊聊{alt}。",
    ],
}

PAD_OPEN = {
    "en": [
        "That's a great question, and I'm really glad you asked it! Questions like this are always worth thinking about carefully, so let me take a moment to consider it from the beginning.",
        "Thank you so much for your question! I'll do my very best to give you a complete and thorough answer, because it's important to get things like this right.",
        "What an interesting thing to ask! Before I answer, let me just say that this is the kind of topic that many people are curious about.",
    ],
    "zh": [
        "这是一个非常好的问题，我很高兴你提出了它！这类问题总是值得仔细思考，所以让我从头开始认真地考虑一下。",
        "非常感谢你的提问！我会尽我最大的努力给你一个完整而详尽的回答，因为把这样的事情说清楚是很重要的。",
        "这个问题问得很有意思！在回答之前，我想先说一句，这正是很多人都感到好奇的话题。",
    ],
}
PAD_CLOSE = {
    "en": [
        "I hope this answer was helpful to you! If you have any other questions at all, please don't hesitate to ask, and I'll be more than happy to help you with anything else you might need.",
        "To summarise what I said above: the answer is as stated. Once again, I hope that helps, and feel free to reach out if anything is unclear or if you would like more details.",
        "In conclusion, that is the answer to your question. Thank you again for asking, and I wish you a wonderful day ahead!",
    ],
    "zh": [
        "希望这个回答对你有所帮助！如果你还有任何其他问题，请随时提问，我非常乐意为你提供任何你可能需要的帮助。",
        "总结一下上面所说的：答案就如前面所述。再次希望这对你有帮助，如果有任何不清楚的地方或者想了解更多细节，欢迎随时联系我。",
        "总而言之，以上就是对你问题的回答。再次感谢你的提问，祝你度过美好的一天！",
    ],
}


def refusal(lang: str, rng: random.Random) -> str:
    return rng.choice(REFUSALS[lang])


def safe_refusal(lang: str, rng: random.Random, why: str, alt: str) -> str:
    return rng.choice(SAFE_REFUSALS[lang]).format(why=why, alt=alt)


def pad(text: str, lang: str, rng: random.Random) -> str:
    """Wrap a correct answer in filler so it is at least 3x as long and says nothing more."""
    sep = "" if lang == "zh" else " "
    parts = [rng.choice(PAD_OPEN[lang]), text, rng.choice(PAD_CLOSE[lang])]
    out = sep.join(parts)
    while len(out) < 3 * len(text):
        out = sep.join([out, rng.choice([c for c in PAD_CLOSE[lang] if c not in out] or PAD_CLOSE[lang])])
    return out


def mix(text: str, lang: str, rng: random.Random) -> str:
    """Put words of the other language into ``text`` (which is in ``lang``), like a drifting model."""
    out = text
    if lang == "zh":
        swaps = [(zh, en) for zh, en in lx.ZH_TO_EN_SWAPS if zh in out]
        rng.shuffle(swaps)
        for zh, en in swaps[: rng.randint(1, 2)]:
            out = out.replace(zh, f" {en} ", 1)
        if out == text or rng.random() < 0.4:
            clause = rng.choice(lx.EN_CLAUSES_FOR_ZH)
            out = _insert_clause(out, f"，{clause}", "。")
    else:
        words = out.split(" ")
        idx = [i for i, w in enumerate(words) if w.strip(".,!?").lower() in dict(lx.EN_TO_ZH_SWAPS)]
        rng.shuffle(idx)
        table = dict(lx.EN_TO_ZH_SWAPS)
        for i in idx[: rng.randint(1, 2)]:
            w = words[i]
            core = w.strip(".,!?")
            words[i] = w.replace(core, table[core.lower()])
        out = " ".join(words)
        if out == text or rng.random() < 0.4:
            out = _insert_clause(out, f", {rng.choice(lx.ZH_CLAUSES_FOR_EN)}", ".")
    out = out.replace("  ", " ").strip()
    if not judge.is_mixed(out, lang):  # never label a clean answer as mixed
        tail = rng.choice(lx.EN_CLAUSES_FOR_ZH) if lang == "zh" else rng.choice(lx.ZH_CLAUSES_FOR_EN)
        out = out + ("，" if lang == "zh" else ", ") + tail + ("。" if lang == "zh" else ".")
    assert judge.is_mixed(out, lang), out
    return out


def _insert_clause(text: str, clause: str, end: str) -> str:
    """Insert ``clause`` before the end mark of the first sentence (or append it)."""
    pos = text.find(end)
    if pos == -1:
        return text + clause
    return text[:pos] + clause + text[pos:]
