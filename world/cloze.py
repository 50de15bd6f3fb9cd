"""A small EN/ZH sentiment task (product reviews) for PET-style cloze fine-tuning.

Row: ``{"id", "lang", "text", "label", "label_id", "meta": {"product", "contrast"}}``. The label
set, the natural-language verbalizers and the cloze patterns are in :data:`LABELS`,
:data:`VERBALIZERS` and :data:`PATTERNS` (and in the manifest). About a quarter of the reviews
contrast two clauses ("nice colour, but it broke"), where the second clause decides the label.
"""

from __future__ import annotations

from world.entities import World
from world.io import number_ids, split, sub_rng

LABELS = ["negative", "positive"]
VERBALIZERS = {"en": {"negative": "bad", "positive": "good"}, "zh": {"negative": "差", "positive": "好"}}
PATTERNS = {"en": "{text} All in all, it was [MASK].", "zh": "{text}总之，很[MASK]。"}

PHRASES = {
    ("en", "positive"): ["It works perfectly.", "It is really well made.", "I love it.", "It was worth every coin.",
                         "It exceeded my expectations.", "It still looks new after a year.", "My whole family enjoys it.",
                         "Honestly, it is not bad at all."],
    ("en", "negative"): ["It broke after a week.", "It is badly made.", "I regret buying it.", "It was a waste of coins.",
                         "It stopped working within a month.", "It feels cheap.", "It arrived scratched and dirty.",
                         "It is not worth the price."],
    ("zh", "positive"): ["非常好用。", "做工很精细。", "我很喜欢。", "物超所值。", "用了一年还像新的一样。", "全家人都很满意。",
                         "说实话，一点也不差。"],
    ("zh", "negative"): ["用了一周就坏了。", "做工很差。", "买了就后悔。", "纯属浪费钱。", "一个月就不能用了。", "手感很廉价。",
                         "收到时就有划痕，还很脏。", "根本不值这个价。"],
}
CONTRAST = {
    ("en", "positive"): "Delivery was slow, but ",
    ("en", "negative"): "The colour is nice, but ",
    ("zh", "positive"): "虽然送货有点慢，但是",
    ("zh", "negative"): "颜色挺好看，但是",
}


def generate(world: World, cfg) -> tuple[list[dict], list[dict], dict]:
    rng = sub_rng(cfg.seed, "cloze")
    products = world.of_type("product")
    rows = []
    for i in range(cfg.counts["cloze"]):
        lang = "en" if i % 2 == 0 else "zh"
        label = LABELS[(i // 2) % 2]
        p = rng.choice(products)
        price = p.fact("price").value(lang)  # type: ignore[union-attr]
        phrase = rng.choice(PHRASES[(lang, label)])
        contrast = rng.random() < 0.25
        if contrast:
            lead = CONTRAST[(lang, label)]
            phrase = lead + (phrase[0].lower() + phrase[1:] if lang == "en" else phrase)
        opener = (f"I bought the {p.en} for {price} coins." if lang == "en" else f"我花{price}金币买了{p.zh}。")
        text = opener + (" " if lang == "en" else "") + phrase
        rows.append({"lang": lang, "text": text, "label": label, "label_id": LABELS.index(label),
                     "meta": {"product": p.id, "contrast": contrast}})
    train, evl = split(rows, max(cfg.eval_fraction, 0.2), sub_rng(cfg.seed, "cloze-split"))
    extra = {"labels": LABELS, "verbalizers": VERBALIZERS, "patterns": PATTERNS}
    return number_ids(train, "cloze-train"), number_ids(evl, "cloze-eval"), extra
