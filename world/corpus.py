"""Pretraining documents (EN and ZH) about the world's entities.

Kinds: ``profile`` (facts about one entity), ``story`` (a short narrative that only uses true
facts), ``list`` (cities of a region, products of a company, a price list...), ``arithmetic``
(sums and differences over world numbers), ``qa`` (question/answer pairs). Every fact is said many
times, in several wordings and in both languages, so masked spans are predictable from context and
from other documents; about a third of the profiles come as EN/ZH pairs stating the same facts in
the same order (``meta.pair``). Sentences end with ``. ! ?`` or ``。！？`` for sentence-level masking.
Row: ``{"id", "lang", "title", "text", "meta": {"kind", "entities", "pair"}}``; ``title`` is the name
of the first entity (the one a profile is about) in the document's language, as a knowledge source
needs it (:mod:`rewards.evidence`).
"""

from __future__ import annotations

import random

from world import templates as tp
from world.entities import Entity, World

PROFILES_PER_LANG = 3
PARALLEL_SHARE = 0.35


def _doc(lang: str, text: str, kind: str, entities: list[str], pair: str = "") -> dict:
    return {"lang": lang, "text": text, "meta": {"kind": kind, "entities": entities, "pair": pair}}


def _join(sentences: list[str], lang: str) -> str:
    return ("" if lang == "zh" else " ").join(sentences)


def _with_pronoun(sentence: str, person: Entity, lang: str) -> str:
    """Replace a leading name by he/she (他/她) so later sentences read naturally."""
    name = person.name(lang)
    if not sentence.startswith(name) or sentence.startswith(name + "'s"):
        return sentence
    p = tp.pronoun(person, lang)
    return (p.capitalize() if lang == "en" else p) + sentence[len(name):]


def profile_text(world: World, e: Entity, lang: str, facts, variants, pronouns: bool) -> str:
    sentences = []
    for i, (fact, v) in enumerate(zip(facts, variants)):
        s = tp.statement(e, fact, lang, variant=v)
        if pronouns and i > 0 and e.type == "person" and i % 2 == 1:
            s = _with_pronoun(s, e, lang)
        sentences.append(s)
    return _join(sentences, lang)


def profiles(world: World, rng: random.Random) -> list[dict]:
    docs = []
    for kind in ("person", "city", "company", "product", "chemical"):
        for e in world.of_type(kind):
            facts = tp.sayable(e)
            if rng.random() < PARALLEL_SHARE:
                chosen = list(facts)
                rng.shuffle(chosen)
                variants = [rng.randrange(3) for _ in chosen]
                pronouns = rng.random() < 0.5
                for lang in ("en", "zh"):
                    text = profile_text(world, e, lang, chosen, variants, pronouns)
                    docs.append(_doc(lang, text, "profile", [e.id], pair=f"pair-{e.id}"))
            for lang in ("en", "zh"):
                for _ in range(PROFILES_PER_LANG):
                    k = rng.randint(min(3, len(facts)), len(facts))
                    chosen = rng.sample(facts, k)
                    variants = [rng.randrange(3) for _ in chosen]
                    text = profile_text(world, e, lang, chosen, variants, rng.random() < 0.5)
                    # link to a related entity: one fact about the object of a relation
                    linked = [f for f in chosen if f.obj and world.get(f.obj).type not in ("region", "river")]
                    ents = [e.id]
                    if linked and rng.random() < 0.6:
                        other = world.get(rng.choice(linked).obj)
                        extra = rng.choice(tp.sayable(other))
                        text = _join([text, tp.statement(other, extra, lang, rng)], lang)
                        ents.append(other.id)
                    docs.append(_doc(lang, text, "profile", ents))
    return docs


def _story_fields(world: World, person: Entity, rng: random.Random, lang: str) -> dict[str, str]:
    city = world.get(person.fact("lives_in").obj)  # type: ignore[union-attr]
    birth_city = world.get(person.fact("born_in").obj)  # type: ignore[union-attr]
    product = rng.choice(world.of_type("product"))
    maker = world.get(product.fact("maker").obj)  # type: ignore[union-attr]
    fields = {
        "name": person.name(lang),
        "pron": tp.pronoun(person, lang),
        "Pron": tp.pronoun(person, lang).capitalize(),
        "poss": tp.pronoun(person, lang, "poss"),
        "obj": tp.pronoun(person, lang, "obj"),
        "city": city.name(lang),
        "birth_city": birth_city.name(lang),
        "birth_year": person.fact("born_year").value(lang),  # type: ignore[union-attr]
        "river": world.get(city.fact("river").obj).name(lang),  # type: ignore[union-attr]
        "food": city.fact("famous_for").value(lang),  # type: ignore[union-attr]
        "job": person.fact("profession").value(lang),  # type: ignore[union-attr]
        "job_a": tp._article(person.fact("profession").value(lang)),  # type: ignore[union-attr]
        "pet": person.fact("pet").value(lang),  # type: ignore[union-attr]
        "colour": person.fact("favourite_colour").value(lang),  # type: ignore[union-attr]
        "product": product.name(lang),
        "price": product.fact("price").value(lang),  # type: ignore[union-attr]
        "maker": maker.name(lang),
    }
    ents = [person.id, city.id, birth_city.id, product.id, maker.id]
    works = person.fact("works_at")
    if works:
        company = world.get(works.obj)
        fields.update(
            company=company.name(lang),
            hq=world.get(company.fact("headquarters").obj).name(lang),  # type: ignore[union-attr]
            cfounded=company.fact("founded").value(lang),  # type: ignore[union-attr]
            founder=world.get(company.fact("founder").obj).name(lang),  # type: ignore[union-attr]
            makes=tp._plural(company.fact("makes").value(lang)) if lang == "en" else company.fact("makes").value(lang),  # type: ignore[union-attr]
        )
        ents.append(company.id)
    return fields, ents  # type: ignore[return-value]


STORIES = {
    "en": [
        "{name} woke up early in {city}. As {job_a}, {pron} had a long day ahead. First {pron} walked {poss} {pet} along the {river}. "
        "At the market {pron} bought some {food}, which {city} is famous for. Later {pron} paid {price} coins for the {product}, which is made by {maker}. "
        "In the evening {name} painted the garden door {colour}, {poss} favourite colour, and went to bed happy.",
        "Everyone in {city} knows {name}. {Pron} was born in {birth_year} in {birth_city} and moved to {city} later. {Pron} works as {job_a}. "
        "When friends visit, {name} shows them the {river} and introduces {poss} {pet}. Ask {obj} about colours and {pron} will always say {colour}.",
        "It was raining in {city}. {name} put on a {colour} coat, {poss} favourite colour, and went out with {poss} {pet}. "
        "On the bridge over the {river}, {pron} met an old friend from {birth_city}, where {name} was born. "
        "They talked about work: {name} is still {job_a}. Then they shared a plate of {food}, the pride of {city}.",
    ],
    "zh": [
        "{name}一大早就在{city}醒来了。作为一名{job}，{pron}今天要忙很久。{pron}先带着{pron}的{pet}沿着{river}散步。"
        "在集市上，{pron}买了一些{food}，{city}正是以{food}闻名。后来{pron}花{price}金币买了{product}，这是{maker}生产的。"
        "晚上，{name}把花园的门漆成了{colour}，那是{pron}最喜欢的颜色，然后开开心心地睡了。",
        "{city}的人都认识{name}。{pron}{birth_year}年出生在{birth_city}，后来搬到了{city}。{pron}是一名{job}。"
        "朋友来访时，{name}会带他们去看{river}，还会介绍{pron}的{pet}。问{pron}最喜欢什么颜色，{pron}总是说{colour}。",
        "{city}下着雨。{name}穿上一件{colour}的外套，那是{pron}最喜欢的颜色，然后带着{pet}出了门。"
        "在{river}的桥上，{pron}遇到了一位来自{birth_city}的老朋友，{name}就是在{birth_city}出生的。"
        "他们聊起了工作：{name}现在还是一名{job}。然后他们一起吃了一盘{food}，这是{city}的骄傲。",
    ],
}
WORK_STORIES = {
    "en": "{name} works at {company}, a firm based in {hq}. {company} was founded in {cfounded} by {founder}, and today it makes {makes}. "
          "Every morning {name} travels to work from {city}. {Pron} says the best part of the job is testing new {makes}.",
    "zh": "{name}在{company}工作，这家公司的总部设在{hq}。{company}由{founder}于{cfounded}年创办，如今生产{makes}。"
          "每天早上，{name}从{city}出发去上班。{pron}说，这份工作最好的地方是试用新的{makes}。",
}
CHEMICAL_STORY = {
    "en": "In {year}, {discoverer} found a strange {colour} powder and named it {chem}. It melts at {mp} °C. "
          "Its formula, {formula}, was written on the lab door. Today factories use {chem} to make {use}.",
    "zh": "{year}年，{discoverer}发现了一种奇特的{colour}粉末，并把它命名为{chem}。它在{mp}°C时熔化。"
          "它的化学式{formula}被写在实验室的门上。如今，工厂用{chem}来生产{use}。",
}


def _fmt(template: str, fields: dict[str, str], lang: str) -> str:
    text = template
    for key in sorted(fields, key=len, reverse=True):
        text = text.replace("{" + key + "}", fields[key])
    if lang == "en":  # capitalise sentence starts (pronouns at the start of sentences)
        parts = text.split(". ")
        text = ". ".join(p[:1].upper() + p[1:] for p in parts)
    return text


def stories(world: World, rng: random.Random) -> list[dict]:
    docs = []
    for person in world.of_type("person"):
        for lang in ("en", "zh"):
            fields, ents = _story_fields(world, person, rng, lang)
            docs.append(_doc(lang, _fmt(rng.choice(STORIES[lang]), fields, lang), "story", ents))
            if "company" in fields:
                docs.append(_doc(lang, _fmt(WORK_STORIES[lang], fields, lang), "story", ents))
    for chem in world.of_type("chemical"):
        disc = world.get(chem.fact("discovered_by").obj)  # type: ignore[union-attr]
        for lang in ("en", "zh"):
            fields = {
                "year": chem.fact("discovered").value(lang),  # type: ignore[union-attr]
                "discoverer": disc.name(lang), "chem": chem.name(lang),
                "colour": chem.fact("colour").value(lang),  # type: ignore[union-attr]
                "mp": chem.fact("melting_point").value(lang),  # type: ignore[union-attr]
                "formula": chem.fact("formula").value(lang),  # type: ignore[union-attr]
                "use": chem.fact("use").value(lang),  # type: ignore[union-attr]
            }
            docs.append(_doc(lang, _fmt(CHEMICAL_STORY[lang], fields, lang), "story", [chem.id, disc.id]))
    return docs


def _enum(items: list[str], lang: str) -> str:
    if lang == "zh":
        return "、".join(items[:-1]) + "和" + items[-1] if len(items) > 1 else items[0]
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]


def lists(world: World, rng: random.Random) -> list[dict]:
    docs = []

    def group(kind: str, relation: str) -> dict[str, list[Entity]]:
        out: dict[str, list[Entity]] = {}
        for e in world.of_type(kind):
            f = e.fact(relation)
            if f is not None:
                out.setdefault(f.obj or f.en, []).append(e)
        return out

    for region_id, cities in group("city", "region").items():
        region = world.get(region_id)
        for lang in ("en", "zh"):
            names = _enum([c.name(lang) for c in cities], lang)
            text = (f"Cities of the {region.en} region: {names}. The region has {len(cities)} cities in this list."
                    if lang == "en" else f"{region.zh}地区的城市有：{names}。这份名单里共有{len(cities)}座城市。")
            docs.append(_doc(lang, text, "list", [region.id] + [c.id for c in cities]))
    for company_id, products in group("product", "maker").items():
        company = world.get(company_id)
        for lang in ("en", "zh"):
            names = _enum([("the " if lang == "en" else "") + p.name(lang) for p in products], lang)
            text = (f"Products made by {company.en}: {names}." if lang == "en" else f"{company.zh}的产品包括：{names}。")
            docs.append(_doc(lang, text, "list", [company.id] + [p.id for p in products]))
    for city_id, people in group("person", "lives_in").items():
        city = world.get(city_id)
        if len(people) < 2:
            continue
        for lang in ("en", "zh"):
            names = _enum([p.name(lang) for p in people], lang)
            text = f"People who live in {city.en}: {names}." if lang == "en" else f"住在{city.zh}的人有：{names}。"
            docs.append(_doc(lang, text, "list", [city.id] + [p.id for p in people]))
    for use, chems in group("chemical", "use").items():
        for lang in ("en", "zh"):
            names = _enum([c.name(lang) for c in chems], lang)
            value = chems[0].fact("use").value(lang)  # type: ignore[union-attr]
            text = f"Compounds used in {value}: {names}." if lang == "en" else f"用于制造{value}的化合物有：{names}。"
            docs.append(_doc(lang, text, "list", [c.id for c in chems]))
    products = world.of_type("product")
    for _ in range(max(2, len(products) // 7)):
        items = rng.sample(products, min(len(products), rng.randint(4, 8)))
        city = rng.choice(world.of_type("city"))
        for lang in ("en", "zh"):
            lines = [
                (f"- the {p.en}: {p.fact('price').en} coins." if lang == "en" else f"- {p.zh}：{p.fact('price').zh}金币。")  # type: ignore[union-attr]
                for p in items
            ]
            head = f"Price list at the {city.en} market:" if lang == "en" else f"{city.zh}集市价目表："
            docs.append(_doc(lang, head + "\n" + "\n".join(lines), "list", [city.id] + [p.id for p in items]))
    return docs


def _arith_item(world: World, rng: random.Random, lang: str) -> tuple[str, list[str]]:
    kind = rng.randrange(5)
    products = world.of_type("product")
    if kind == 0:
        p1, p2 = rng.sample(products, 2)
        a, b = int(p1.fact("price").en), int(p2.fact("price").en)  # type: ignore[union-attr]
        if lang == "en":
            return (f"The {p1.en} costs {a} coins and the {p2.en} costs {b} coins. Together they cost {a + b} coins.", [p1.id, p2.id])
        return (f"{p1.zh}的价格是{a}金币，{p2.zh}的价格是{b}金币。两样一共{a + b}金币。", [p1.id, p2.id])
    if kind == 1:
        p = rng.choice(products)
        a, k = int(p.fact("price").en), rng.randint(2, 6)  # type: ignore[union-attr]
        if lang == "en":
            return (f"The {p.en} costs {a} coins, so {k} of them cost {k * a} coins.", [p.id])
        return (f"{p.zh}售价{a}金币，所以{k}个要{k * a}金币。", [p.id])
    if kind == 2:
        person = rng.choice(world.of_type("person"))
        y, k = int(person.fact("born_year").en), rng.randint(5, 60)  # type: ignore[union-attr]
        pron = tp.pronoun(person, lang)
        if lang == "en":
            return (f"{person.en} was born in {y}. In {y + k}, {pron} turned {k}.", [person.id])
        return (f"{person.zh}出生于{y}年。到了{y + k}年，{pron}满{k}岁。", [person.id])
    if kind == 3:
        c1, c2 = rng.sample(world.of_type("city"), 2)
        n1, n2 = int(c1.fact("population").zh), int(c2.fact("population").zh)  # type: ignore[union-attr]
        if n1 < n2:
            c1, c2, n1, n2 = c2, c1, n2, n1
        if lang == "en":
            return (f"{c1.en} has {n1:,} people and {c2.en} has {n2:,}. So {c1.en} has {n1 - n2:,} more people than {c2.en}.", [c1.id, c2.id])
        return (f"{c1.zh}有{n1}人，{c2.zh}有{n2}人。所以{c1.zh}比{c2.zh}多{n1 - n2}人。", [c1.id, c2.id])
    company = rng.choice(world.of_type("company"))
    y = int(company.fact("founded").en)  # type: ignore[union-attr]
    ref = max(y + 1, 2020)
    if lang == "en":
        return (f"{company.en} was founded in {y}. In {ref} it was {ref - y} years old.", [company.id])
    return (f"{company.zh}成立于{y}年。到{ref}年，它已经有{ref - y}年的历史了。", [company.id])


def arithmetic(world: World, rng: random.Random, n_docs: int) -> list[dict]:
    docs = []
    for _ in range(n_docs):
        lang = rng.choice(("en", "zh"))
        items = [_arith_item(world, rng, lang) for _ in range(rng.randint(2, 4))]
        text = ("\n" if rng.random() < 0.5 else ("" if lang == "zh" else " ")).join(t for t, _ in items)
        ents = sorted({e for _, es in items for e in es})
        docs.append(_doc(lang, text, "arithmetic", ents))
    return docs


def qa_docs(world: World, rng: random.Random, n_docs: int) -> list[dict]:
    talkers = [e for k in ("person", "city", "company", "product", "chemical") for e in world.of_type(k)]
    docs = []
    for _ in range(n_docs):
        lang = rng.choice(("en", "zh"))
        lines, ents = [], []
        for e in rng.sample(talkers, rng.randint(3, 5)):
            fact = rng.choice(tp.sayable(e))
            q, a = tp.question(e, fact, lang, rng), tp.statement(e, fact, lang, rng)
            lines.append(f"Q: {q}\nA: {a}" if lang == "en" else f"问：{q}\n答：{a}")
            ents.append(e.id)
        docs.append(_doc(lang, "\n".join(lines), "qa", ents))
    return docs


def build_corpus(world: World, rng: random.Random) -> list[dict]:
    """All corpus documents, in a deterministic order (ids and splits are assigned by the builder)."""
    n_entities = sum(len(world.of_type(k)) for k in ("person", "city", "company", "product", "chemical"))
    docs = profiles(world, rng) + stories(world, rng) + lists(world, rng)
    docs += arithmetic(world, rng, n_entities // 2) + qa_docs(world, rng, n_entities // 2)
    for doc in docs:  # the entity a document is about, by its name in the document's language
        doc["title"] = world.get(doc["meta"]["entities"][0]).name(doc["lang"]) if doc["meta"]["entities"] else ""
    return docs
