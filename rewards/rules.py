"""Rule rewards for GLM's alignment targets, scored with the world's judges (``world.judge``).

Each rule is a small class with one method::

    rule.score(prompts, responses, metadata) -> RuleScores   # .scores: list[float], .reasons: list[str]

- ``prompts``: one per sample, a string (the user turn) or a list of ``{"role", "content"}``
  messages (the dialogue so far, ending with the user turn being answered);
- ``responses``: the generated replies (strings);
- ``metadata``: one mapping per sample, or ``None``. Keys are looked up in the mapping and then in
  its nested ``"meta"`` mapping, so a world row (``safety``, ``preferences``, ``sft``) can be
  passed as it is.

Rules (names usable as ``"mixing"`` or ``"rules:mixing"``):

- ``mixing`` (:class:`MixingRule`): ``-mixing_rate(response, lang)``, the share of wrong-language
  units (code, numbers, formulas, names excepted). ``lang``: metadata ``answer_lang`` (translation
  replies), else ``lang``, else the language of the last user turn.
- ``refusal`` (:class:`RefusalRule`): ``-1`` for refusing a benign request, ``+1`` for refusing a
  harmful one, ``0`` otherwise. Metadata ``label`` (harmful | benign) or ``expected`` (refuse | help).
- ``safety`` (:class:`SafetyRule`): ``-1`` for a non-empty reply to a harmful request that is not
  a refusal, ``0`` otherwise.
- ``consistency`` (:class:`ConsistencyRule`): ``-1`` when the reply contradicts a fact stated
  earlier in the dialogue, ``0`` otherwise (three checks, see the class).
- ``format`` (:class:`FormatRule`): ``-1`` for a truncated reply (metadata ``truncated: true`` or
  ``finish_reason: "length"``, or, when end tokens are configured, a reply not ending with one).

:class:`RuleRewards` combines rules with weights (``{"mixing": 0.5, "refusal": 1.0}``) and returns
the weighted sum per sample and every rule's :class:`RuleScores` (PPO logs each rule's mean).
Every rule is pure and deterministic; bad input (lengths that differ, an unknown label) raises
``ValueError`` naming the sample and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from world import judge
from world.config import SIZES
from world.entities import Entity, World, make_world
from world.io import sub_rng

__all__ = [
    "RuleScores", "CombinedScores", "Rule", "MixingRule", "RefusalRule", "SafetyRule",
    "ConsistencyRule", "FormatRule", "RuleRewards", "RULES", "get_rule", "build_rules",
    "world_from_dir", "stated_slots",
]

# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleScores:
    """One rule's score and reason per sample (same length)."""

    scores: list[float]
    reasons: list[str]

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.reasons):
            raise ValueError(f"RuleScores: {len(self.scores)} scores but {len(self.reasons)} reasons")

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0


@dataclass(frozen=True)
class CombinedScores:
    """``total[i] = sum(weights[name] * per_rule[name].scores[i])``."""

    total: list[float]
    per_rule: dict[str, RuleScores]
    weights: dict[str, float]

    def means(self, prefix: str = "rules/") -> dict[str, float]:
        """Each rule's mean score, keyed ``prefix + name`` (what PPO logs), plus ``prefix + "total"``."""
        out = {f"{prefix}{name}": scores.mean for name, scores in self.per_rule.items()}
        out[f"{prefix}total"] = sum(self.total) / len(self.total) if self.total else 0.0
        return out


# ---------------------------------------------------------------------------------------------
# Input helpers
# ---------------------------------------------------------------------------------------------
def _check_batch(prompts: Sequence, responses: Sequence, metadata: Sequence | None) -> list[Mapping]:
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    if metadata is None:
        return [{} for _ in responses]
    if len(metadata) != len(responses):
        raise ValueError(f"got {len(metadata)} metadata entries but {len(responses)} responses")
    for i, meta in enumerate(metadata):
        if meta is not None and not isinstance(meta, Mapping):
            raise ValueError(f"metadata[{i}]: expected a mapping or None, got {type(meta).__name__}")
    for i, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"responses[{i}]: expected a string, got {type(response).__name__}")
    return [meta or {} for meta in metadata]


def _meta(meta: Mapping, key: str, default: Any = None) -> Any:
    """``meta[key]``, else ``meta["meta"][key]``, else ``default``."""
    if key in meta and meta[key] is not None:
        return meta[key]
    inner = meta.get("meta")
    if isinstance(inner, Mapping) and inner.get(key) is not None:
        return inner[key]
    return default


def _messages(prompt: Any, index: int) -> list[dict]:
    """The dialogue of a prompt as messages; a string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Sequence):
        out = []
        for j, msg in enumerate(prompt):
            if not isinstance(msg, Mapping) or not isinstance(msg.get("content"), str):
                raise ValueError(f"prompts[{index}][{j}]: expected {{'role', 'content'}} with string content")
            out.append({"role": msg.get("role", "user"), "content": msg["content"]})
        return out
    raise ValueError(f"prompts[{index}]: expected a string or a list of messages, got {type(prompt).__name__}")


def _history(prompt: Any, meta: Mapping, index: int) -> list[dict]:
    """Earlier turns: metadata ``history`` (messages or strings, oldest first) then the prompt's messages."""
    extra = _meta(meta, "history", [])
    if isinstance(extra, str):
        extra = [extra]
    turns = []
    for j, turn in enumerate(extra):
        if isinstance(turn, str):
            turns.append({"role": "user", "content": turn})
        elif isinstance(turn, Mapping) and isinstance(turn.get("content"), str):
            turns.append({"role": turn.get("role", "user"), "content": turn["content"]})
        else:
            raise ValueError(f"metadata[{index}].history[{j}]: expected a string or {{'role', 'content'}}")
    return turns + _messages(prompt, index)


def _last_user(messages: list[dict]) -> str:
    for msg in reversed(messages):
        if msg["role"] == "user":
            return msg["content"]
    return messages[-1]["content"] if messages else ""


def _harmful(meta: Mapping, index: int) -> bool | None:
    """True/False from ``label`` (harmful | benign) or ``expected`` (refuse | help); None when absent."""
    label = _meta(meta, "label")
    if label is not None:
        if label not in ("harmful", "benign"):
            raise ValueError(f"metadata[{index}].label: expected 'harmful' or 'benign', got {label!r}")
        return label == "harmful"
    expected = _meta(meta, "expected")
    if expected is not None:
        if expected not in ("refuse", "help"):
            raise ValueError(f"metadata[{index}].expected: expected 'refuse' or 'help', got {expected!r}")
        return expected == "refuse"
    return None


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------
class Rule:
    """Base of the rule rewards: ``score(prompts, responses, metadata) -> RuleScores``."""

    name = "rule"

    def score(self, prompts: Sequence, responses: Sequence[str], metadata: Sequence[Mapping] | None = None) -> RuleScores:
        metas = _check_batch(prompts, responses, metadata)
        scores, reasons = [], []
        for i, (prompt, response, meta) in enumerate(zip(prompts, responses, metas)):
            value, reason = self.score_one(prompt, response, meta, i)
            scores.append(float(value))
            reasons.append(reason)
        return RuleScores(scores, reasons)

    def score_one(self, prompt: Any, response: str, meta: Mapping, index: int) -> tuple[float, str]:
        raise NotImplementedError


@dataclass
class MixingRule(Rule):
    """``-scale * mixing_rate(response, lang)``: the share of wrong-language units, through the judge."""

    scale: float = 1.0
    name = "mixing"

    def score_one(self, prompt, response, meta, index):
        lang = _meta(meta, "answer_lang") or _meta(meta, "lang")
        source = "metadata"
        if lang is None:
            lang, source = judge.language_of(_last_user(_messages(prompt, index))), "prompt"
        if lang not in ("en", "zh"):
            raise ValueError(f"metadata[{index}].lang: expected 'en' or 'zh', got {lang!r}")
        report = judge.mixing_report(response, lang)
        if not report.wrong:
            return 0.0, f"no wrong-language text (lang {lang} from {source})"
        words = ", ".join(report.wrong_words[:8]) + (", ..." if len(report.wrong_words) > 8 else "")
        return (-self.scale * report.rate,
                f"{report.wrong}/{report.units} units not in {lang} (from {source}): {words}")


@dataclass
class RefusalRule(Rule):
    """``-penalty`` for refusing a benign request, ``+reward`` for refusing a harmful one, else 0."""

    reward: float = 1.0
    penalty: float = 1.0
    name = "refusal"

    def score_one(self, prompt, response, meta, index):
        harmful = _harmful(meta, index)
        if harmful is None:
            return 0.0, "no harmful/benign label"
        refused = judge.is_refusal(response)
        if harmful and refused:
            return self.reward, "refused a harmful request"
        if not harmful and refused:
            return -self.penalty, "refused a benign request"
        return 0.0, "helped with a benign request" if not harmful else "did not refuse a harmful request"


@dataclass
class SafetyRule(Rule):
    """``-penalty`` for complying with a harmful request: a non-empty reply that is not a refusal."""

    penalty: float = 1.0
    name = "safety"

    def score_one(self, prompt, response, meta, index):
        harmful = _harmful(meta, index)
        if harmful is None:
            return 0.0, "no harmful/benign label"
        if not harmful:
            return 0.0, "benign request"
        if not response.strip():
            return 0.0, "empty reply to a harmful request"
        if judge.is_refusal(response):
            return 0.0, "refused a harmful request"
        return -self.penalty, "complied with a harmful request"


@dataclass
class FormatRule(Rule):
    """``-penalty`` for a truncated reply.

    Truncated: metadata ``truncated: true``, or ``finish_reason == "length"``; without either, and
    when ``end_tokens`` are given, a reply whose text does not end with one of them. With no
    information at all the score is 0 and the reason says so.
    """

    penalty: float = 1.0
    end_tokens: tuple[str, ...] = ()
    name = "format"

    def score_one(self, prompt, response, meta, index):
        truncated = _meta(meta, "truncated")
        if truncated is not None:
            if not isinstance(truncated, bool):
                raise ValueError(f"metadata[{index}].truncated: expected true or false, got {truncated!r}")
            return (-self.penalty, "truncated (metadata)") if truncated else (0.0, "complete (metadata)")
        finish = _meta(meta, "finish_reason")
        if finish is not None:
            return (-self.penalty, "truncated (finish_reason length)") if finish == "length" else (0.0, f"finish_reason {finish}")
        if self.end_tokens:
            if response.rstrip().endswith(tuple(self.end_tokens)):
                return 0.0, "ends with an end token"
            return -self.penalty, "no end token"
        return 0.0, "no truncation information"


# ---------------------------------------------------------------------------------------------
# Consistency
# ---------------------------------------------------------------------------------------------
_EN_VALUE = r"(?:the (?:city|town|village) of\s+|the\s+)?(?P<v>[^\s,.;!?]+(?:\s+(?!and\b|but\b|so\b|too\b|now\b|with\b|because\b)[^\s,.;!?]+){0,2})"
_ZH_VALUE = r"(?P<v>[^\s，。！？、；：,.!?;:和但]{1,12})"
# slot -> (pattern in the user's earlier turns, pattern in the reply)
_EN_SLOTS: dict[str, tuple[str, str]] = {
    "lives_in": (r"\bi (?:live|am living|'m living) in\s+", r"\byou (?:live|are living|'re living) in\s+"),
    "from": (r"\bi(?: am|'m| come) from\s+", r"\byou(?: are|'re| come) from\s+"),
    "name": (r"\b(?:my name is|call me)\s+", r"\byour name is\s+"),
    "works_at": (r"\bi work (?:at|for)\s+", r"\byou work (?:at|for)\s+"),
    "age": (r"\bi(?: am|'m) (?=\d+ years? old)", r"\byou(?: are|'re) (?=\d+ years? old)"),
}
_ZH_SLOTS: dict[str, tuple[str, str]] = {
    "lives_in": (r"我(?:叫[^，。,\s]{1,8}[，,]\s*)?(?:现在)?(?:住在|生活在|家在)", r"你(?:现在)?(?:住在|生活在|家在)"),
    "from": (r"我来自", r"你来自"),
    "name": (r"我(?:叫|的名字是)", r"你(?:叫|的名字是)"),
    "works_at": (r"我(?:现在)?在(?=[^，。！？,.!?]{1,12}工作)", r"你(?:现在)?在(?=[^，。！？,.!?]{1,12}工作)"),
    "age": (r"我(?:今年)?(?=\d+岁)", r"你(?:今年)?(?=\d+岁)"),
}
# "my <thing> is X" for a favourite thing or a personal attribute (not "my question is ...").
_EN_ATTRIBUTES = (
    r"(?:favou?rite [a-z]+|birthday|job|profession|pet|dog|cat|hometown|email|phone number|address|"
    r"major|school|team|car|wife|husband|son|daughter|brother|sister|boss|partner)"
)
_ZH_ATTRIBUTES = r"(?:最喜欢的[\u4e00-\u9fff]{1,3}|的(?:生日|职业|工作|宠物|家乡|邮箱|电话|地址|专业|学校|名字|狗|猫|车|老板|妻子|丈夫|儿子|女儿))"
_EN_GENERIC = (rf"\bmy (?P<k>{_EN_ATTRIBUTES}) is\s+", rf"\byour (?P<k>{_EN_ATTRIBUTES}) is\s+")
_ZH_GENERIC = (rf"我(?P<k>{_ZH_ATTRIBUTES})是", rf"你(?P<k>{_ZH_ATTRIBUTES})是")
_STOP = frozenset("the a an of city town my your in at with".split())


def _tokens_of(value: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9]+", value.lower()) if w not in _STOP)


def _find_slots(text: str, person: int) -> dict[str, str]:
    """Slot -> value stated in ``text`` (person 0: the user about themselves; 1: the reply about the user)."""
    found: dict[str, str] = {}
    low = text.replace("’", "'")
    for slot, pats in _EN_SLOTS.items():
        for m in re.finditer(pats[person] + _EN_VALUE, low, re.I):
            found[slot] = m.group("v").split()[0] if slot == "age" else m.group("v")
    for m in re.finditer(_EN_GENERIC[person] + _EN_VALUE, low, re.I):
        found["my " + m.group("k").lower()] = m.group("v")
    for slot, pats in _ZH_SLOTS.items():
        for m in re.finditer(pats[person] + _ZH_VALUE, text):
            value = m.group("v")
            if slot == "works_at":
                value = value.split("工作")[0]
            if slot == "age":
                value = value.split("岁")[0]
            found[slot] = value
    for m in re.finditer(_ZH_GENERIC[person] + _ZH_VALUE, text):
        found["my " + m.group("k").lstrip("的")] = m.group("v")
    return found


_CLAUSES = re.compile(r"[^。！？.!?\n]+[。！？.!?]*")


def stated_slots(messages: list[dict]) -> dict[str, str]:
    """What the user said about themselves in ``messages`` (later statements win; questions skipped)."""
    out: dict[str, str] = {}
    for msg in messages:
        if msg["role"] != "user":
            continue
        for sentence in _CLAUSES.findall(msg["content"]):
            if not sentence.rstrip().endswith(("?", "？")):
                out.update(_find_slots(sentence, 0))
    return out


def _values_differ(earlier: str, said: str) -> bool:
    """True when two slot values clearly differ: no shared word (EN) and neither contains the other."""
    a, b = earlier.strip().lower(), said.strip().lower()
    if not a or not b or a in b or b in a:
        return False
    ta, tb = _tokens_of(a), _tokens_of(b)
    if ta and tb:
        return not (ta & tb)
    return judge.count_cjk(a) > 0 and judge.count_cjk(b) > 0


def _mentions(text: str, value: str) -> bool:
    """Whole-value match: numbers and Latin words at word boundaries, Chinese as a substring."""
    if not value:
        return False
    if value[0].isdigit():
        return re.search(rf"(?<![\d.,]){re.escape(value)}(?!\d|[.,]\d)", text) is not None
    if value[0].isascii() and value[0].isalpha():
        return re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", text, re.I) is not None
    return value in text


_SENTENCES = re.compile(r"(?:[^。！？.!?\n]|\.(?=\d))+[。！？.!?]*")


@dataclass
class ConsistencyRule(Rule):
    """``-penalty`` when the reply contradicts a fact stated earlier in the dialogue, else 0.

    Three checks, the first that applies decides:

    1. **Metadata** (the world's rows): an accepted answer (``answers``) that occurs in the earlier
       turns is a stated fact; the reply contradicts it when it states one of the competing values
       (``wrong``) and not the stated one.
    2. **World facts** (when built with a :class:`~world.entities.World`): a world fact is stated
       earlier when its subject's name and its value both occur in the earlier turns; the reply
       contradicts it when a sentence naming the subject (or any sentence, if the last user turn
       names it) states another value the world has for that relation, and the reply never states
       the earlier value.
    3. **User statements** (any text): what the user said about themselves ("I live in X", "my name
       is X", "I work at X", "I'm N years old", "my <thing> is X"; 我住在X, 我叫X, 我在X工作, 我N岁,
       我的<thing>是X) against the reply's restatement ("you live in Y", 你住在Y, ...): the values
       contradict when they share no word and neither contains the other.
    """

    penalty: float = 1.0
    world: World | None = field(default=None, repr=False)
    name = "consistency"
    _index: list[tuple[Entity, re.Pattern | None]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.world is not None:
            for entity in self.world.entities.values():
                en = re.compile(rf"(?<![A-Za-z]){re.escape(entity.en)}(?![A-Za-z])") if entity.en else None
                self._index.append((entity, en))

    def score_one(self, prompt, response, meta, index):
        turns = _history(prompt, meta, index)
        earlier = "\n".join(m["content"] for m in turns)
        found = self._by_metadata(earlier, response, meta)
        if found is None and self.world is not None:
            found = self._by_world(earlier, _last_user(turns), response)
        if found is None:
            found = self._by_user_statements(turns, response)
        if found is None:
            return 0.0, "no contradiction found"
        said, stated, source = found
        return -self.penalty, f"says {said!r} but the dialogue stated {stated!r} ({source})"

    @staticmethod
    def _by_metadata(earlier: str, response: str, meta: Mapping):
        answers = _meta(meta, "answers") or []
        wrong = _meta(meta, "wrong") or []
        stated = [a for a in answers if _mentions(earlier, str(a))]
        if not stated or any(_mentions(response, str(a)) for a in stated):
            return None
        for w in wrong:
            w = str(w)
            if any(w in a or a in w for a in stated):
                continue
            if _mentions(response, w):
                return w, stated[0], "metadata"
        return None

    def _subjects(self, text: str) -> list[Entity]:
        out = []
        for entity, en in self._index:
            if (entity.zh and entity.zh in text) or (en is not None and entity.en in text and en.search(text)):
                out.append(entity)
        return out

    def _by_world(self, earlier: str, last_user: str, response: str):
        assert self.world is not None
        topical = {e.id for e in self._subjects(last_user)}
        sentences = [s for s in _SENTENCES.findall(response) if s.strip()]
        for entity in self._subjects(earlier):
            names = [n for n in (entity.en, entity.zh) if n]
            about = [s for s in sentences if entity.id in topical or any(_mentions(s, n) for n in names)]
            if not about:
                continue
            for fact in entity.facts:
                values = [v for v in dict.fromkeys((fact.en, fact.zh)) if v]
                if not any(_mentions(earlier, v) for v in values) or any(_mentions(response, v) for v in values):
                    continue
                for en, zh in self.world.values_of(fact.relation):
                    for other in dict.fromkeys((en, zh)):
                        if other in values or any(other in v or v in other for v in values):
                            continue
                        if any(_mentions(s, other) for s in about):
                            return other, values[0], f"world fact {entity.id}.{fact.relation}"
        return None

    @staticmethod
    def _by_user_statements(turns: list[dict], response: str):
        stated = stated_slots(turns)
        if not stated:
            return None
        said = _find_slots(response, 1)
        for slot, value in said.items():
            if slot in stated and _values_differ(stated[slot], value):
                return value, stated[slot], f"user statement ({slot})"
        return None


# ---------------------------------------------------------------------------------------------
# World loading, registry and combination
# ---------------------------------------------------------------------------------------------
def world_from_dir(path: str | Path) -> World:
    """Rebuild the entities of a world built by ``python -m world.build`` from its ``manifest.json``.

    Raises ``ValueError`` naming the file when the manifest is missing or lacks size/seed.
    """
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise ValueError(f"{manifest_path}: not found (expected a world built by python -m world.build)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    size, seed = manifest.get("size"), manifest.get("seed")
    if size not in SIZES or not isinstance(seed, int):
        raise ValueError(f"{manifest_path}: expected 'size' in {sorted(SIZES)} and an integer 'seed', got {size!r}, {seed!r}")
    return make_world(SIZES[size], sub_rng(seed, "entities"))


RULES: dict[str, Callable[..., Rule]] = {
    "mixing": MixingRule,
    "refusal": RefusalRule,
    "safety": SafetyRule,
    "consistency": ConsistencyRule,
    "format": FormatRule,
}


def _rule_name(name: str) -> str:
    key = name[len("rules:"):] if name.startswith("rules:") else name
    if key not in RULES:
        raise ValueError(f"unknown rule {name!r}; known: {', '.join('rules:' + k for k in RULES)}")
    return key


def get_rule(name: str, **options: Any) -> Rule:
    """The rule called ``name`` (``"mixing"`` or ``"rules:mixing"``), built with ``options``."""
    return RULES[_rule_name(name)](**options)


class RuleRewards:
    """Weighted sum of rules: ``total[i] = sum_name weights[name] * rule_name.scores[i]``."""

    def __init__(self, weights: Mapping[str, float], rules: Mapping[str, Rule] | None = None):
        self.weights: dict[str, float] = {}
        self.rules: dict[str, Rule] = {}
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"weight of rule {name!r}: expected a number, got {weight!r}")
            key = _rule_name(name)
            self.weights[key] = float(weight)
            self.rules[key] = (rules or {}).get(key) or get_rule(key)

    def score(self, prompts: Sequence, responses: Sequence[str], metadata: Sequence[Mapping] | None = None) -> CombinedScores:
        per_rule = {name: rule.score(prompts, responses, metadata) for name, rule in self.rules.items()}
        total = [0.0] * len(responses)
        for name, scores in per_rule.items():
            w = self.weights[name]
            total = [t + w * s for t, s in zip(total, scores.scores)]
        return CombinedScores(total, per_rule, dict(self.weights))


def build_rules(weights: Mapping[str, float], world: World | None = None,
                options: Mapping[str, Mapping[str, Any]] | None = None) -> RuleRewards:
    """:class:`RuleRewards` for ``weights`` (names with or without ``rules:``).

    ``world`` goes to the consistency rule; ``options`` maps a rule name to its constructor
    arguments (``{"format": {"end_tokens": ["<|endoftext|>"]}}``).
    """
    options = {_rule_name(k): dict(v) for k, v in (options or {}).items()}
    rules = {}
    for name in weights:
        key = _rule_name(name)
        kwargs = options.get(key, {})
        if key == "consistency" and world is not None:
            kwargs.setdefault("world", world)
        rules[key] = get_rule(key, **kwargs)
    return RuleRewards(weights, rules)
