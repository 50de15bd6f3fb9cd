"""How facts are said and asked in English and Chinese.

``TEMPLATES[(entity_type, relation)]`` holds statement and question variants per language.
Placeholders: ``{s}`` subject name, ``{o}`` value, ``{o_a}`` value with its English article
(a/an), ``{o_s}`` English plural of the value.
"""

from __future__ import annotations

import random

from world.entities import Entity, Fact

T = dict[str, list[str]]

TEMPLATES: dict[tuple[str, str], T] = {
    ("person", "born_year"): {
        "en": ["{s} was born in {o}.", "{s} was born in the year {o}.", "The year {s} was born was {o}."],
        "zh": ["{s}出生于{o}年。", "{s}生于{o}年。", "{s}是{o}年出生的。"],
        "q_en": ["In which year was {s} born?", "When was {s} born?", "What year was {s} born in?"],
        "q_zh": ["{s}是哪一年出生的？", "{s}出生于哪一年？", "{s}生于哪一年？"],
    },
    ("person", "born_in"): {
        "en": ["{s} was born in the city of {o}.", "{s}'s birthplace is {o}.", "{s} was born and raised in {o}."],
        "zh": ["{s}出生在{o}。", "{s}的出生地是{o}。", "{s}在{o}出生。"],
        "q_en": ["Where was {s} born?", "What is {s}'s birthplace?", "In which city was {s} born?"],
        "q_zh": ["{s}出生在哪里？", "{s}的出生地是哪座城市？", "{s}在哪座城市出生？"],
    },
    ("person", "lives_in"): {
        "en": ["{s} lives in {o}.", "{s} has made a home in {o}.", "These days {s} lives in the city of {o}."],
        "zh": ["{s}住在{o}。", "{s}现在生活在{o}。", "{s}的家在{o}。"],
        "q_en": ["Where does {s} live?", "Which city does {s} live in?", "Where is {s}'s home?"],
        "q_zh": ["{s}住在哪里？", "{s}现在住在哪座城市？", "{s}的家在哪里？"],
    },
    ("person", "profession"): {
        "en": ["{s} works as {o_a}.", "{s} is {o_a} by profession.", "By trade, {s} is {o_a}."],
        "zh": ["{s}是一名{o}。", "{s}的职业是{o}。", "{s}以做{o}为生。"],
        "q_en": ["What does {s} do for a living?", "What is {s}'s profession?", "What is {s}'s job?"],
        "q_zh": ["{s}是做什么工作的？", "{s}的职业是什么？", "{s}从事什么职业？"],
    },
    ("person", "pet"): {
        "en": ["{s} has a pet {o}.", "{s} keeps {o_a} at home.", "{s}'s pet is {o_a}."],
        "zh": ["{s}养了{o}作为宠物。", "{s}的宠物是{o}。", "{s}家里养着{o}。"],
        "q_en": ["What pet does {s} have?", "What kind of pet does {s} keep?", "What is {s}'s pet?"],
        "q_zh": ["{s}养的是什么宠物？", "{s}的宠物是什么？", "{s}家里养着什么宠物？"],
    },
    ("person", "favourite_colour"): {
        "en": ["{s}'s favourite colour is {o}.", "{s} likes {o} more than any other colour.", "Of all colours, {s} loves {o} the most."],
        "zh": ["{s}最喜欢的颜色是{o}。", "{s}最爱{o}。", "在所有颜色中，{s}最喜欢{o}。"],
        "q_en": ["What is {s}'s favourite colour?", "Which colour does {s} like best?"],
        "q_zh": ["{s}最喜欢什么颜色？", "{s}最喜欢的颜色是什么？"],
    },
    ("person", "works_at"): {
        "en": ["{s} works at {o}.", "{s} is employed by {o}.", "{s} has a job at {o}."],
        "zh": ["{s}在{o}工作。", "{s}是{o}的员工。", "{s}任职于{o}。"],
        "q_en": ["Where does {s} work?", "Which company employs {s}?", "Who is {s}'s employer?"],
        "q_zh": ["{s}在哪家公司工作？", "{s}是哪家公司的员工？", "{s}任职于哪家公司？"],
    },
    ("city", "region"): {
        "en": ["{s} is a city in the {o} region.", "{s} lies in the {o} region.", "The city of {s} belongs to the {o} region."],
        "zh": ["{s}是{o}地区的一座城市。", "{s}位于{o}地区。", "{s}市属于{o}地区。"],
        "q_en": ["Which region is {s} in?", "In which region does {s} lie?", "What region does the city of {s} belong to?"],
        "q_zh": ["{s}位于哪个地区？", "{s}属于哪个地区？", "{s}市在哪个地区？"],
    },
    ("city", "population"): {
        "en": ["{s} has a population of {o}.", "About {o} people live in {s}.", "{s} is home to {o} people."],
        "zh": ["{s}的人口是{o}人。", "{s}大约有{o}人居住。", "{s}有{o}位居民。"],
        "q_en": ["How many people live in {s}?", "What is the population of {s}?", "How large is the population of {s}?"],
        "q_zh": ["{s}有多少人口？", "{s}的人口是多少？", "有多少人住在{s}？"],
    },
    ("city", "river"): {
        "en": ["The {o} flows through {s}.", "{s} stands on the banks of the {o}.", "{s} was built along the {o}."],
        "zh": ["{o}流经{s}。", "{s}坐落在{o}畔。", "{s}沿着{o}而建。"],
        "q_en": ["Which river flows through {s}?", "What river is {s} built on?", "On which river does {s} stand?"],
        "q_zh": ["哪条河流经{s}？", "{s}坐落在哪条河边？", "{s}沿着哪条河而建？"],
    },
    ("city", "founded"): {
        "en": ["{s} was founded in {o}.", "The city of {s} dates back to {o}.", "{s} was established in the year {o}."],
        "zh": ["{s}建于{o}年。", "{s}始建于{o}年。", "{s}是在{o}年建立的。"],
        "q_en": ["When was {s} founded?", "In what year was {s} founded?", "How old is the city of {s}, that is, when was it founded?"],
        "q_zh": ["{s}是哪一年建立的？", "{s}建于哪一年？", "{s}始建于哪一年？"],
    },
    ("city", "famous_for"): {
        "en": ["{s} is famous for its {o}.", "People travel to {s} for its {o}.", "{s} is known for {o}."],
        "zh": ["{s}以{o}闻名。", "{s}的{o}很有名。", "人们常去{s}品尝那里的{o}。"],
        "q_en": ["What is {s} famous for?", "What is {s} known for?", "Why do people travel to {s}?"],
        "q_zh": ["{s}以什么闻名？", "{s}最有名的是什么？", "人们为什么去{s}？"],
    },
    ("company", "founded"): {
        "en": ["{s} was founded in {o}.", "{s} opened its doors in {o}.", "{s} has been in business since {o}."],
        "zh": ["{s}成立于{o}年。", "{s}创办于{o}年。", "{s}自{o}年起开始营业。"],
        "q_en": ["When was {s} founded?", "In which year was {s} established?", "Since when has {s} been in business?"],
        "q_zh": ["{s}是哪一年成立的？", "{s}成立于哪一年？", "{s}创办于哪一年？"],
    },
    ("company", "headquarters"): {
        "en": ["{s} has its headquarters in {o}.", "{s} is based in {o}.", "The head office of {s} is in {o}."],
        "zh": ["{s}的总部位于{o}。", "{s}的总部设在{o}。", "{s}总部在{o}。"],
        "q_en": ["Where is {s} based?", "Where are the headquarters of {s}?", "In which city is the head office of {s}?"],
        "q_zh": ["{s}的总部在哪里？", "{s}的总部设在哪座城市？", "{s}总部位于哪里？"],
    },
    ("company", "founder"): {
        "en": ["{s} was founded by {o}.", "{o} founded {s}.", "The founder of {s} is {o}."],
        "zh": ["{s}是由{o}创办的。", "{o}创立了{s}。", "{s}的创始人是{o}。"],
        "q_en": ["Who founded {s}?", "Who is the founder of {s}?", "Who started {s}?"],
        "q_zh": ["{s}是谁创办的？", "{s}的创始人是谁？", "谁创立了{s}？"],
    },
    ("company", "makes"): {
        "en": ["{s} makes {o_s}.", "{s} is known for its {o_s}.", "{s} produces {o_s}."],
        "zh": ["{s}生产{o}。", "{s}专门制造{o}。", "{s}的主要产品是{o}。"],
        "q_en": ["What does {s} make?", "What kind of products does {s} produce?", "What is {s} known for making?"],
        "q_zh": ["{s}生产什么？", "{s}的主要产品是什么？", "{s}专门制造什么？"],
    },
    ("company", "employees"): {
        "en": ["{s} has {o} employees.", "{o} people work at {s}.", "{s} employs {o} people."],
        "zh": ["{s}有{o}名员工。", "{s}雇用了{o}人。", "共有{o}人在{s}工作。"],
        "q_en": ["How many employees does {s} have?", "How many people work at {s}?", "How many people does {s} employ?"],
        "q_zh": ["{s}有多少名员工？", "{s}雇用了多少人？", "有多少人在{s}工作？"],
    },
    ("product", "maker"): {
        "en": ["The {s} is made by {o}.", "{o} makes the {s}.", "The {s} comes from {o}."],
        "zh": ["{s}是由{o}生产的。", "{o}生产{s}。", "{s}出自{o}。"],
        "q_en": ["Who makes the {s}?", "Which company produces the {s}?", "Where does the {s} come from?"],
        "q_zh": ["{s}是哪家公司生产的？", "谁生产{s}？", "{s}出自哪家公司？"],
    },
    ("product", "price"): {
        "en": ["The {s} costs {o} coins.", "The price of the {s} is {o} coins.", "You can buy the {s} for {o} coins."],
        "zh": ["{s}的价格是{o}金币。", "{s}售价{o}金币。", "买一个{s}要花{o}金币。"],
        "q_en": ["How much does the {s} cost?", "What is the price of the {s}?", "How many coins is the {s}?"],
        "q_zh": ["{s}多少钱？", "{s}的价格是多少？", "买一个{s}要花多少金币？"],
    },
    ("product", "colour"): {
        "en": ["The {s} is {o}.", "The {s} comes in {o}.", "The {s} is painted {o}."],
        "zh": ["{s}是{o}的。", "{s}的颜色是{o}。", "{s}通体{o}。"],
        "q_en": ["What colour is the {s}?", "Which colour does the {s} come in?"],
        "q_zh": ["{s}是什么颜色的？", "{s}的颜色是什么？"],
    },
    ("product", "released"): {
        "en": ["The {s} was released in {o}.", "The {s} first went on sale in {o}.", "The {s} came out in {o}."],
        "zh": ["{s}于{o}年上市。", "{s}是{o}年发布的。", "{s}在{o}年首次开售。"],
        "q_en": ["When was the {s} released?", "What year did the {s} come out?", "When did the {s} first go on sale?"],
        "q_zh": ["{s}是哪一年上市的？", "{s}是什么时候发布的？", "{s}哪一年首次开售？"],
    },
    ("chemical", "colour"): {
        "en": ["{s} is a {o} compound.", "Pure {s} is {o}.", "{s} has a {o} colour."],
        "zh": ["{s}是一种{o}的化合物。", "纯净的{s}呈{o}。", "{s}的颜色是{o}。"],
        "q_en": ["What colour is {s}?", "What colour is pure {s}?"],
        "q_zh": ["{s}是什么颜色的？", "纯净的{s}呈什么颜色？"],
    },
    ("chemical", "melting_point"): {
        "en": ["{s} melts at {o} °C.", "The melting point of {s} is {o} °C.", "{s} turns liquid at {o} °C."],
        "zh": ["{s}的熔点是{o}°C。", "{s}在{o}°C时熔化。", "{s}在{o}摄氏度熔化。"],
        "q_en": ["At what temperature does {s} melt?", "What is the melting point of {s}?"],
        "q_zh": ["{s}的熔点是多少？", "{s}在多少度熔化？"],
    },
    ("chemical", "discovered_by"): {
        "en": ["{s} was discovered by {o}.", "{o} discovered {s}.", "{s} was first isolated by {o}."],
        "zh": ["{s}是由{o}发现的。", "{o}发现了{s}。", "{o}首次分离出了{s}。"],
        "q_en": ["Who discovered {s}?", "Who first isolated {s}?"],
        "q_zh": ["{s}是谁发现的？", "是谁首次分离出了{s}？"],
    },
    ("chemical", "discovered"): {
        "en": ["{s} was discovered in {o}.", "{s} has been known since {o}.", "The discovery of {s} dates to {o}."],
        "zh": ["{s}是在{o}年被发现的。", "{s}发现于{o}年。", "人们从{o}年起就知道{s}。"],
        "q_en": ["When was {s} discovered?", "In which year was {s} discovered?"],
        "q_zh": ["{s}是哪一年被发现的？", "{s}发现于哪一年？"],
    },
    ("chemical", "use"): {
        "en": ["{s} is mainly used in {o}.", "Factories use {s} to make {o}.", "The main use of {s} is in {o}."],
        "zh": ["{s}主要用于制造{o}。", "工厂用{s}来生产{o}。", "{s}的主要用途是制造{o}。"],
        "q_en": ["What is {s} used for?", "What is the main use of {s}?"],
        "q_zh": ["{s}有什么用途？", "{s}主要用来做什么？"],
    },
    ("chemical", "formula"): {
        "en": ["The chemical formula of {s} is {o}.", "{s} has the formula {o}.", "Chemists write {s} as {o}."],
        "zh": ["{s}的化学式是{o}。", "{s}的分子式为{o}。", "化学家把{s}写作{o}。"],
        "q_en": ["What is the chemical formula of {s}?", "How do chemists write {s}?"],
        "q_zh": ["{s}的化学式是什么？", "化学家怎样写{s}？"],
    },
}


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _plural(word: str) -> str:
    if word.endswith(("ch", "sh", "s", "x")):
        return word + "es"
    return word + "s"


def fill(template: str, subject: Entity, fact: Fact, lang: str) -> str:
    value = fact.value(lang)
    text = template.replace("{s}", subject.name(lang))
    text = text.replace("{o_a}", _article(value)).replace("{o_s}", _plural(value)).replace("{o}", value)
    return text[:1].upper() + text[1:] if lang == "en" else text


def swap_value(text: str, old: Fact, new: Fact, lang: str) -> str | None:
    """``text`` with ``old``'s value replaced by ``new``'s, in the form a template wrote it (English
    "a doctor" becomes "an engineer", "teapots" becomes "lamps"), or None unless the value occurs
    exactly once (then the edit could not be told apart from the rest of the text)."""
    a, b = old.value(lang), new.value(lang)
    if text.count(a) != 1:
        return None
    forms = [(_article(a), _article(b)), (_plural(a), _plural(b)), (a, b)] if lang == "en" else [(a, b)]
    for before, after in forms:
        if text.count(before) == 1:
            return text.replace(before, after)
    return None


def templates_for(subject: Entity, fact: Fact) -> T:
    try:
        return TEMPLATES[(subject.type, fact.relation)]
    except KeyError as err:
        raise KeyError(f"no templates for {subject.type}.{fact.relation} in world/templates.py") from err


def statement(subject: Entity, fact: Fact, lang: str, rng: random.Random | None = None, variant: int = 0) -> str:
    """One sentence stating ``fact`` in ``lang`` (a random variant when ``rng`` is given)."""
    options = templates_for(subject, fact)[lang]
    template = rng.choice(options) if rng is not None else options[variant % len(options)]
    return fill(template, subject, fact, lang)


def question(subject: Entity, fact: Fact, lang: str, rng: random.Random | None = None, variant: int = 0) -> str:
    options = templates_for(subject, fact)["q_" + lang]
    template = rng.choice(options) if rng is not None else options[variant % len(options)]
    return fill(template, subject, fact, lang)


def sayable(subject: Entity) -> list[Fact]:
    """Facts of ``subject`` that have templates (all of them, for the entity types that talk)."""
    return [f for f in subject.facts if (subject.type, f.relation) in TEMPLATES]


def pronoun(person: Entity, lang: str, case: str = "subj") -> str:
    if lang == "zh":
        return "她" if person.gender == "f" else "他"
    table = {"subj": ("she", "he"), "obj": ("her", "him"), "poss": ("her", "his")}
    f, m = table[case]
    return f if person.gender == "f" else m
