"""Evidence a reward model reads with each response: a calculator and a lookup in a knowledge source.

A tiny reward model cannot hold the world's facts in its weights (docs/rewards.md: a model without the
facts is at chance on a right reply against the same reply with a wrong value). A tool-augmented reward
model (Themis, Li et al. 2024; Fact-RLHF, Sun et al. 2023) reads what tools say about the response
instead, and learns how much to trust it. Two tools:

- **calculator**: each ``a × b = c`` in the response (``x`` and ``*`` too) is evaluated, as a code
  interpreter would evaluate the equation: ``calculator: 4 × 290 = 1450 is false (4 × 290 = 1160)``.
- **knowledge lookup**: each sentence of the response that names an entity of the knowledge source
  (a *claim*) is looked up, and the source sentence that shares most (idf-weighted) words with it
  is shown: ``source: The Brilo lamp costs 290 coins.``; with ``show_unmatched`` the claim's content
  words that the source sentence lacks follow: ``not in source: 350``. That line is a lexical
  comparison (DrQA's exact-match feature, in words), not a verdict: a paraphrase leaves words
  unmatched too, and the reward model learns which ones matter.

The observations are rendered as GLM's tool-result turn after the reply
(``... <|assistant|>\\n{reply}<|observation|>\\n{observations}``), the reward read at the token that
ends it, so every response is scored from (prompt, response) alone.

**Knowledge source.** JSONL documents ``{"text", "title"?}`` (the world's corpus has a title: the
entity the document is about). Each statement sentence is indexed (questions are skipped, ``Q:``/``A:``
labels dropped); a sentence that opens with a third-person pronoun gets the title in its place
(a profile's "She works as a chemist."), and the titles are the names a claim is linked by. The
index travels with the reward model: ``knowledge.jsonl`` in the model directory, its settings in
``config.reward_evidence``, so a reward model scores the same wherever it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from common.errors import UserError
from common.jsonl import read_jsonl

KNOWLEDGE_FILE = "knowledge.jsonl"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
_QA_LABEL = re.compile(r"^(?:Q|A|问|答)\s*[:：]\s*")
_PRONOUN = re.compile(r"^(?:She|He|It|They|她|他|它)(?=\b|[^\x00-\x7f])")
_TERM = re.compile(r"[a-z]+|\d+|[\u3400-\u9fff]+")
_WORD = re.compile(r"\d[\d,]*\d|\d|[A-Za-z]+(?:['’-][A-Za-z]+)*|[\u3400-\u9fff]|\S")
_PRODUCT = re.compile(r"(\d[\d,]*)\s*[×xX*]\s*(\d[\d,]*)\s*=\s*(\d[\d,]*)")
_STOP_EN = frozenset("a an the of in on at to by and or is are was were be been has have had its it this that "
                     "for with as from so".split())


def sentences(text: str) -> list[str]:
    """``text`` cut at sentence ends (``. ! ?`` before a space, ``。！？`` anywhere, line breaks)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _cjk(token: str) -> bool:
    return token[0] >= "\u3400"


def terms(text: str) -> list[str]:
    """Lower-cased English words, numbers (thousands separators dropped) and Chinese character
    bigrams (a one-character run is its own term): the units the lookup matches on."""
    out = []
    for run in _TERM.findall(text.lower().replace(",", "")):
        if _cjk(run):
            out += [run[i:i + 2] for i in range(len(run) - 1)] or [run]
        else:
            out.append(run)
    return out


def _unit(token: str) -> str:
    return token.lower().replace(",", "")


def unmatched_words(claim: str, source: str) -> list[str]:
    """The claim's content words (English words but a few function words, numbers, Chinese
    characters) that ``source`` lacks, consecutive ones joined: ``["350"]``, ``["乔鲁贸易"]``. A
    Chinese character counts as found only inside a two-character run the source has (with the
    character before or after it), as a character alone says little: 内 of 内温 is not 内 of 内戈."""
    have = {_unit(t) for t in _WORD.findall(source)}
    tokens = _WORD.findall(claim)

    def found(i: int, token: str) -> bool:
        if not _cjk(token):
            return _unit(token) in have
        pairs = [tokens[j] + tokens[j + 1] for j in (i - 1, i) if 0 <= j and j + 1 < len(tokens)
                 and _cjk(tokens[j]) and _cjk(tokens[j + 1])]
        return any(p in source for p in pairs) if pairs else token in source

    spans, run = [], []
    for i, token in enumerate(tokens):
        content = token[0].isalnum() and _unit(token) not in _STOP_EN
        if content and not found(i, token):
            run.append(token)
        elif run:
            spans.append(run)
            run = []
    if run:
        spans.append(run)
    return ["".join(s) if all(_cjk(t) for t in s) else " ".join(s) for s in spans]


class KnowledgeIndex:
    """Statement sentences of a document collection, linked to names (the documents' titles)."""

    def __init__(self, rows: Sequence[dict]):
        """``rows``: ``{"text", "title"}`` sentences (as :meth:`from_documents` makes them)."""
        self.rows = [{"text": r["text"], "title": r.get("title", "")} for r in rows]
        self.names = sorted({r["title"] for r in self.rows if r["title"]}, key=len, reverse=True)
        self._by_name: dict[str, list[int]] = defaultdict(list)
        self._terms = [Counter(terms(r["text"])) for r in self.rows]
        df = Counter(t for c in self._terms for t in c)
        self._idf = {t: math.log(len(self.rows) / n) + 1.0 for t, n in df.items()}
        pattern = "|".join(re.escape(n) for n in self.names)
        self._name_re = re.compile(pattern) if pattern else None
        for i, r in enumerate(self.rows):
            for name in self.names_in(r["text"]):
                self._by_name[name].append(i)

    @classmethod
    def from_documents(cls, docs: Iterable[dict], where: str = "documents") -> KnowledgeIndex:
        """``docs``: ``{"text", "title"?}`` objects (``where`` names them in errors: ``where: row N``)."""
        rows, seen = [], set()
        for n, doc in enumerate(docs, 1):
            text, title = doc.get("text"), doc.get("title") or ""
            for name, value in (("text", text), ("title", title)):
                if not isinstance(value, str):
                    raise UserError(f"{doc.get('_where') or f'{where}: row {n}'}: field {name!r}: expected a string, "
                                    f"got {type(value).__name__}")
            for sentence in sentences(text):
                sentence = _QA_LABEL.sub("", sentence).strip()
                if not sentence or sentence.endswith(("?", "？")):
                    continue
                if title and title not in sentence and _PRONOUN.match(sentence):
                    sentence = _PRONOUN.sub(lambda _: title, sentence, count=1)
                if (sentence, title) not in seen:
                    seen.add((sentence, title))
                    rows.append({"text": sentence, "title": title})
        if not rows:
            raise UserError(f"{where}: no statement sentence to index")
        return cls(rows)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> KnowledgeIndex:
        docs = []
        for path in paths:
            if not Path(path).is_file():
                raise UserError(f"evidence.knowledge: {path} does not exist (give JSONL documents "
                                "{\"text\", \"title\"}, or 'world' for the world's corpus)")
            docs += [dict(row, _where=f"{path}: row {line}") for line, row in read_jsonl(path)]
        return cls.from_documents(docs, where=", ".join(map(str, paths)))

    def names_in(self, text: str) -> list[str]:
        """Names in ``text``, longest first where two overlap, in order of appearance."""
        return [m.group(0) for m in self._name_re.finditer(text)] if self._name_re else []

    def lookup(self, claim: str, question: str = "") -> str | None:
        """The sentence about a name in ``claim`` that shares most idf-weighted words with it; names
        the ``question`` also asks about are preferred (the claim's subject, not its value). ``None``
        when the claim names nothing the source knows."""
        names = list(dict.fromkeys(self.names_in(claim)))
        if not names:
            return None
        asked = [n for n in names if n in question]
        names = asked or names
        # the subject is in every candidate: it says nothing about the relation
        subject = {t for name in names for t in terms(name)}
        wanted = [t for t in dict.fromkeys(terms(claim)) if t not in subject]  # in the claim's order
        best, best_score = None, 0.0
        for i in sorted({i for n in names for i in self._by_name.get(n, ())}):
            have = self._terms[i]
            score = sum(self._idf[t] for t in wanted if t in have) / math.sqrt(1 + len(have))
            if score > best_score:
                best, best_score = i, score
        return self.rows[best]["text"] if best is not None else None

    def _jsonl(self) -> str:
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows)

    def sha256(self) -> str:
        """Digest of the saved file (stored in the model's config, checked on load)."""
        return hashlib.sha256(self._jsonl().encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> None:
        """Write the sentences as JSONL (``{"text", "title"}`` per line)."""
        Path(path).write_text(self._jsonl(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeIndex:
        return cls([row for _, row in read_jsonl(path)])


def calculator_notes(response: str) -> list[str]:
    """Every product the response writes out (``a × b = c``), evaluated as the equation it is:
    ``calculator: 4 × 290 = 1160 is true``, or ``... = 1450 is false (4 × 290 = 1160)``."""
    notes = []
    for a, b, c in _PRODUCT.findall(response):
        x, y, z = (int(v.replace(",", "")) for v in (a, b, c))
        notes.append(f"calculator: {x} × {y} = {z} is true" if x * y == z
                     else f"calculator: {x} × {y} = {z} is false ({x} × {y} = {x * y})")
    return notes


@dataclass
class EvidenceArgs:
    """What a reward model reads besides the response (rewards.train's ``evidence`` section)."""

    calculator: bool = field(default=False, metadata={"help": "evaluate every a × b = c a response writes (true, or false with the product)"})
    knowledge: list[str] = field(default_factory=list, metadata={
        "help": "JSONL documents {text, title} to look claims up in; 'world' = the world's corpus (train split); "
                "[] = no lookup"})
    show_unmatched: bool = field(default=True, metadata={
        "help": "after each source sentence, the claim's content words it lacks"})
    max_claims: int = field(default=4, metadata={"help": "claims looked up per response (the first ones)"})

    @property
    def enabled(self) -> bool:
        return self.calculator or bool(self.knowledge)


class Evidence:
    """The observations for one response: ``observe(messages, response)`` -> text ('' = none)."""

    def __init__(self, calculator: bool = False, index: KnowledgeIndex | None = None, show_unmatched: bool = True,
                 max_claims: int = 4):
        self.calculator, self.index, self.show_unmatched, self.max_claims = calculator, index, show_unmatched, max_claims

    def observe(self, messages: Sequence[dict], response: str) -> str:
        lines = calculator_notes(response) if self.calculator else []
        if self.index is not None:
            question = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
            shown, claims = set(), 0
            for claim in sentences(response):
                if claims == self.max_claims:
                    break
                source = self.index.lookup(claim, question)
                if source is None:
                    continue
                claims += 1
                if source not in shown:
                    lines.append(f"source: {source}")
                    shown.add(source)
                if self.show_unmatched:
                    lines.append("not in source: " + (" / ".join(unmatched_words(claim, source)) or "-"))
        return "\n".join(lines)

    def conversation(self, messages: Sequence[dict], response: str) -> list[dict]:
        """``messages`` + the reply + (when there is any) the observation turn the reward model reads."""
        out = list(messages) + [{"role": "assistant", "content": response}]
        seen = self.observe(messages, response)
        return out + [{"role": "observation", "content": seen}] if seen else out

    # --- travelling with a model ----------------------------------------------------------------

    def config(self) -> dict:
        """The ``config.reward_evidence`` entry of a model trained with these tools."""
        return {"calculator": self.calculator, "knowledge": KNOWLEDGE_FILE if self.index is not None else None,
                "knowledge_sha256": self.index.sha256() if self.index is not None else None,
                "show_unmatched": self.show_unmatched, "max_claims": self.max_claims}


def build_evidence(args: EvidenceArgs, world_corpus: str | None = None) -> Evidence | None:
    """The configured tools (``None`` when none is on); ``'world'`` in ``knowledge`` is ``world_corpus``."""
    if not args.enabled:
        return None
    index = None
    if args.knowledge:
        paths = [world_corpus if p == "world" else p for p in args.knowledge]
        if None in paths:
            raise UserError("evidence.knowledge: 'world' needs the world's corpus, which was not built")
        index = KnowledgeIndex.from_files(paths)
    return Evidence(args.calculator, index, args.show_unmatched, args.max_claims)


def load_evidence(model_dir: str | Path, config) -> Evidence | None:
    """The tools a saved reward model was trained with (``config.reward_evidence``), or ``None``."""
    spec = getattr(config, "reward_evidence", None)
    if not spec:
        return None
    index = None
    if spec.get("knowledge"):
        path = Path(model_dir) / spec["knowledge"]
        if not path.is_file():
            raise UserError(f"{model_dir}: the reward model looks claims up in {spec['knowledge']}, which is missing "
                            "(copy the whole model directory, knowledge.jsonl included)")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if spec.get("knowledge_sha256") and digest != spec["knowledge_sha256"]:
            raise UserError(f"{path} is not the knowledge the reward model was trained with (sha256 differs)")
        index = KnowledgeIndex.load(path)
    return Evidence(bool(spec.get("calculator")), index, bool(spec.get("show_unmatched", True)),
                    int(spec.get("max_claims", 4)))
