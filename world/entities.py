"""The generated entities of the world and their facts (the ground truth every file is built on).

A :class:`World` holds people, cities, companies, products and invented chemicals, each with an
English and a Chinese name, and a list of :class:`Fact` (subject, relation, value). Values are
(en, zh) surface pairs; an entity-valued fact also records the object's id. Nothing here is random
after :func:`make_world` returns, so every other module reads the same truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from world import lexicon as lx


@dataclass(frozen=True)
class Fact:
    subject: str  # entity id
    relation: str
    en: str  # value as written in English text
    zh: str  # value as written in Chinese text
    obj: str = ""  # entity id when the value is an entity

    def value(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass
class Entity:
    id: str
    type: str  # person | city | company | product | chemical | region | river
    en: str
    zh: str
    gender: str = ""  # people only: "f" | "m"
    facts: list[Fact] = field(default_factory=list)

    def name(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh

    def fact(self, relation: str) -> Fact | None:
        for f in self.facts:
            if f.relation == relation:
                return f
        return None


@dataclass
class World:
    entities: dict[str, Entity]
    by_type: dict[str, list[str]]
    _cache: dict = field(default_factory=dict, repr=False)

    def of_type(self, kind: str) -> list[Entity]:
        """Entities of one type, in creation order (cached; do not mutate the list)."""
        key = ("type", kind)
        if key not in self._cache:
            self._cache[key] = [self.entities[i] for i in self.by_type.get(kind, [])]
        return self._cache[key]

    def with_fact(self, kind: str, relation: str, obj: str) -> list[Entity]:
        """Entities of ``kind`` whose ``relation`` points at entity ``obj`` (e.g. a company's products)."""
        key = ("index", kind, relation)
        if key not in self._cache:
            index: dict[str, list[Entity]] = {}
            for e in self.of_type(kind):
                f = e.fact(relation)
                if f is not None and f.obj:
                    index.setdefault(f.obj, []).append(e)
            self._cache[key] = index
        return self._cache[key].get(obj, [])

    def get(self, entity_id: str) -> Entity:
        return self.entities[entity_id]

    def all_facts(self) -> list[Fact]:
        return [f for e in self.entities.values() for f in e.facts]

    def values_of(self, relation: str) -> list[tuple[str, str]]:
        """Distinct (en, zh) values of a relation across the world, in first-seen order (cached)."""
        key = ("values", relation)
        if key not in self._cache:
            seen: dict[tuple[str, str], None] = {}
            for f in self.all_facts():
                if f.relation == relation:
                    seen.setdefault((f.en, f.zh), None)
            self._cache[key] = list(seen)
        return list(self._cache[key])


class _Namer:
    """Unique invented names; the Chinese form is the syllable-wise transliteration."""

    MAX_STREAK = 200  # consecutive collisions before names get one syllable longer

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used_en: set[str] = set()
        self.used_zh: set[str] = set()
        self.widen = 0  # extra syllables allowed once short names run out (large worlds)

    def word(self, n_min: int = 2, n_max: int = 3) -> tuple[str, str]:
        streak = 0
        for _ in range(100_000):
            n = self.rng.randint(n_min, n_max + self.widen)
            parts = [self.rng.choice(lx.SYLLABLES) for _ in range(n)]
            en = "".join(p[0] for p in parts).capitalize()
            zh = "".join(p[1] for p in parts)
            if en not in self.used_en and zh not in self.used_zh and len(en) >= 4:
                self.used_en.add(en)
                self.used_zh.add(zh)
                return en, zh
            streak += 1
            if streak >= self.MAX_STREAK:
                self.widen, streak = self.widen + 1, 0
        raise RuntimeError("ran out of unique names; add syllables to world/lexicon.py")


def _format_population(n: int) -> str:
    return f"{n:,}"


def make_world(counts: dict[str, int], rng: random.Random) -> World:
    """Generate entities and facts; ``counts`` gives people/cities/companies/products/chemicals."""
    namer = _Namer(rng)
    entities: dict[str, Entity] = {}
    by_type: dict[str, list[str]] = {}

    def add(e: Entity) -> Entity:
        entities[e.id] = e
        by_type.setdefault(e.type, []).append(e.id)
        return e

    n_regions = max(4, counts["cities"] // 8)
    for i in range(n_regions):
        en, zh = namer.word(2, 2)
        add(Entity(f"region{i}", "region", en, zh))
    n_rivers = max(6, counts["cities"] // 2)
    for i in range(n_rivers):
        en, zh = namer.word(2, 2)
        add(Entity(f"river{i}", "river", f"{en} River", f"{zh}河"))
    for i in range(counts["cities"]):
        en, zh = namer.word(2, 3)
        add(Entity(f"city{i}", "city", en, zh))
    for i in range(counts["people"]):
        g_en, g_zh = namer.word(2, 2)
        f_en, f_zh = namer.word(2, 3)
        add(Entity(f"person{i}", "person", f"{g_en} {f_en}", f"{g_zh}·{f_zh}", gender=rng.choice("fm")))
    for i in range(counts["companies"]):
        en, zh = namer.word(2, 2)
        s_en, s_zh = rng.choice(lx.COMPANY_SUFFIXES)
        add(Entity(f"company{i}", "company", f"{en} {s_en}", f"{zh}{s_zh}"))
    for i in range(counts["chemicals"]):
        en, zh = namer.word(2, 2)
        s_en, s_zh = rng.choice(lx.CHEMICAL_SUFFIXES)
        add(Entity(f"chemical{i}", "chemical", en + s_en, zh + s_zh))

    by_type.setdefault("product", [])
    world = World(entities, by_type)
    regions = world.of_type("region")
    rivers = world.of_type("river")
    cities = world.of_type("city")
    people = world.of_type("person")
    companies = world.of_type("company")

    def ref(relation: str, e: Entity) -> tuple[str, str, str, str]:
        return relation, e.en, e.zh, e.id

    for city in cities:
        region = rng.choice(regions)
        river = rng.choice(rivers)
        food = rng.choice(lx.FOODS)
        population = rng.randrange(8, 2000) * 1000
        founded = str(rng.randint(1200, 1890))
        city.facts += [
            Fact(city.id, *ref("region", region)),
            Fact(city.id, "population", _format_population(population), str(population)),
            Fact(city.id, *ref("river", river)),
            Fact(city.id, "founded", founded, founded),
            Fact(city.id, "famous_for", *food),
        ]

    for person in people:
        born = rng.randint(1930, 2004)
        home = rng.choice(cities)
        birth_city = rng.choice(cities)
        person.facts += [
            Fact(person.id, "born_year", str(born), str(born)),
            Fact(person.id, *ref("born_in", birth_city)),
            Fact(person.id, *ref("lives_in", home)),
            Fact(person.id, "profession", *rng.choice(lx.PROFESSIONS)),
            Fact(person.id, "pet", *rng.choice(lx.PETS)),
            Fact(person.id, "favourite_colour", *rng.choice(lx.COLOURS)),
        ]

    for company in companies:
        hq = rng.choice(cities)
        founder = rng.choice(people)
        kind = rng.choice(lx.PRODUCT_KINDS)
        company.facts += [
            Fact(company.id, "founded", *(str(rng.randint(1850, 2015)),) * 2),
            Fact(company.id, *ref("headquarters", hq)),
            Fact(company.id, *ref("founder", founder)),
            Fact(company.id, "makes", *kind),
            Fact(company.id, "employees", *(str(rng.randrange(2, 400) * 10),) * 2),
        ]
    # Some people work at a company (the company's founder always does).
    for company in companies:
        founder_id = company.fact("founder").obj  # type: ignore[union-attr]
        founder = entities[founder_id]
        if founder.fact("works_at") is None:
            founder.facts.append(Fact(founder.id, *ref("works_at", company)))
    for person in people:
        if person.fact("works_at") is None and rng.random() < 0.5:
            person.facts.append(Fact(person.id, *ref("works_at", rng.choice(companies))))

    for i in range(counts["products"]):
        maker = rng.choice(companies)
        kind = maker.fact("makes")
        en, zh = namer.word(2, 2)
        product = add(Entity(f"product{i}", "product", f"{en} {kind.en}", f"{zh}{kind.zh}"))  # type: ignore[union-attr]
        product.facts += [
            Fact(product.id, *ref("maker", maker)),
            Fact(product.id, "price", *(str(rng.randrange(3, 120) * 5),) * 2),
            Fact(product.id, "colour", *rng.choice(lx.COLOURS)),
            Fact(product.id, "released", *(str(rng.randint(1950, 2023)),) * 2),
        ]

    chemists = [p for p in people if p.fact("profession").en == "chemist"] or people  # type: ignore[union-attr]
    for chem in world.of_type("chemical"):
        discoverer = rng.choice(chemists)
        formula = rng.choice(lx.FORMULA_LETTERS) + str(rng.randint(2, 4)) + rng.choice(["O", "N", "S", "Cl"]) + str(rng.randint(2, 5))
        chem.facts += [
            Fact(chem.id, "colour", *rng.choice(lx.COLOURS)),
            Fact(chem.id, "melting_point", *(str(rng.randrange(-40, 900)),) * 2),
            Fact(chem.id, *ref("discovered_by", discoverer)),
            Fact(chem.id, "discovered", *(str(rng.randint(1800, 2010)),) * 2),
            Fact(chem.id, "use", *rng.choice(lx.USES)),
            Fact(chem.id, "formula", formula, formula),
        ]
    return world
