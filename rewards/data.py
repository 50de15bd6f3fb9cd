"""Preference data for the reward model: reading, checking, pair expansion, encoding and batching.

Two row formats are read (both JSONL, one object per line, mixed freely in one file):

- **Rankings** (the world's ``preferences`` split, the annotation app's ``export --format rankings``):
  ``prompt`` (one user turn) or ``messages`` (a dialogue ending with a user turn), ``responses`` (2..16
  strings), ``ranking`` (one integer per response, 1 = best, equal ranks are ties); optional ``id``,
  ``lang``, ``category``. A ranking expands to every ordered pair with
  :func:`common.rankings.ranking_pairs` (ties give no pair), the function the annotation app's ``pairs``
  export uses, so the two agree by construction.
- **Pairs** (TRL's preference format, the annotation app's ``export --format pairs``): ``chosen`` and
  ``rejected`` (strings, or message lists whose last message is the assistant's reply), with
  ``prompt`` (string or messages); without ``prompt`` the chosen and rejected conversations must share
  everything but their last message (TRL's implicit prompt). An optional ``margin`` (> 0) is the pair's
  rank gap.

All responses of one prompt form one :class:`EncodedGroup`; a micro-batch is a list of groups, so each
response is encoded once however many pairs it is in (InstructGPT's K-way batching).

**Bad rows.** A row that is not one of the formats above -- no prompt (``no_prompt``), bad messages
(``bad_messages``), responses missing or not a list of strings (``bad_responses``), one response only
(``one_response``), an empty response (``empty_response``), the same response twice
(``duplicate_response``), a ranking of another length than the responses (``ranking_length``), a rank
that is not an integer in 1..K or no rank 1 (``bad_rank``), a bad
margin (``bad_margin``) or too long to fit ``max_length`` (``too_long``) -- raises
:class:`PreferenceDataError` naming the file, row and field with ``bad_rows="error"``, or is dropped and
counted by reason with ``bad_rows="drop"`` (the counts go to the run's ``summary.json``). A line that is
not JSON is always an error (the file is broken, not the row). A ranking that ties every response is
valid annotation ("all equally good") but teaches no preference: it is skipped and counted as
``all_tied`` under either policy.

**Rendering.** Each (prompt, response) is rendered with the tokenizer's chat template
(``apply_chat_template(context + [assistant reply])``, then the tools' observation turn when the reward
model reads evidence: :mod:`rewards.evidence`) followed by the token that ends a reply
(``<|user|>`` for GLM tokenizers, else eos), and the reward is read at that token: it has seen the
whole reply, and it is the same token for every response. ``truncation="left"`` removes prompt tokens
after the template's ``[gMASK]<sop>`` until the row fits; ``"none"`` makes an overlong row a bad row.

**Length balance** (``length_balanced=True``): in the world's data the chosen response is longer in 56%
of the training pairs, and in real preference data longer answers win more often, so a reward model can
score length instead of quality. We reweight: pairs whose chosen response is longer (in tokens) get
weight ``N / (2 N_longer)``, pairs whose chosen response is shorter ``N / (2 N_shorter)``, equal lengths
1; then "chosen is longer" holds for exactly half of the weighted pairs and the total weight stays N.
No pair is dropped, and the loss normaliser is the summed weight.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from common.errors import UserError
from common.jsonl import read_jsonl
from common.rankings import Pair, ranking_pairs

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant", "observation", "tool")
BAD_ROWS = ("error", "drop")
TRUNCATION = ("left", "none")


class PreferenceDataError(UserError):
    """A bad preference row; the message starts with ``path: row N: field 'f'`` and says why."""

    def __init__(self, path: str, line: int, field: str, reason: str, problem: str):
        self.path, self.line, self.field, self.reason = path, line, field, reason
        super().__init__(f"{path}: row {line}: field {field!r}: {problem} [{reason}]")


class _AllTied(Exception):
    """A valid ranking in which every response ties: no pair to learn from."""


class _Bad(Exception):
    def __init__(self, reason: str, field: str, problem: str):
        super().__init__(problem)
        self.reason, self.field, self.problem = reason, field, problem


class RowTooLong(_Bad):
    """A (context, response) that cannot fit ``max_length`` even with the prompt cut (:class:`Renderer`)."""

    def __init__(self, problem: str, response_tokens: int):
        super().__init__("too_long", "responses", problem)
        self.response_tokens = response_tokens


@dataclass
class PreferenceGroup:
    """One prompt with its responses and the ordered pairs between them (indices into ``responses``)."""

    context: list[dict]          # the dialogue so far, ending with the user turn being answered
    responses: list[str]
    pairs: list[Pair]
    ranking: list[int] | None = None
    lang: str = "unknown"
    category: str = "unknown"
    id: Any = None
    where: str = ""              # "path: row N"
    meta: dict = field(default_factory=dict)  # the row as read (rule rewards take their metadata from it)


@dataclass
class EncodedGroup:
    """A group's responses as token ids and its pairs as ``(chosen, rejected, margin, weight)``."""

    input_ids: list[list[int]]
    pairs: list[tuple[int, int, float, float]]
    lang: str = "unknown"
    category: str = "unknown"

    @property
    def weight(self) -> float:
        return sum(p[3] for p in self.pairs)


@dataclass
class DataReport:
    """Counts for ``summary.json``: rows read, groups and pairs kept, rows dropped by reason."""

    rows: int = 0
    groups: int = 0
    pairs: int = 0
    dropped: Counter = field(default_factory=Counter)
    truncated: int = 0
    all_tied: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "groups": self.groups, "pairs": self.pairs,
                "dropped": dict(sorted(self.dropped.items())), "dropped_total": sum(self.dropped.values()),
                "truncated": self.truncated, "all_tied": self.all_tied}


# --- reading and checking ----------------------------------------------------------------------

def _text(value: Any, field_name: str, reason: str) -> str:
    if not isinstance(value, str):
        raise _Bad(reason, field_name, f"expected a string, got {type(value).__name__}")
    if not value.strip():
        raise _Bad("empty_response" if reason == "bad_responses" else reason, field_name, "expected a non-empty string")
    return value


def _messages(value: Any, field_name: str, last_role: str | None) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise _Bad("bad_messages", field_name, "expected a non-empty list of {role, content} messages")
    out = []
    for i, msg in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict) or msg.get("role") not in ROLES:
            raise _Bad("bad_messages", f"{where}.role", f"expected an object with a role in {list(ROLES)}")
        if not isinstance(msg.get("content"), str) or not msg["content"].strip():
            raise _Bad("bad_messages", f"{where}.content", "expected a non-empty string")
        out.append({"role": msg["role"], "content": msg["content"]})
    if last_role and out[-1]["role"] != last_role:
        raise _Bad("bad_messages", f"{field_name}[{len(out) - 1}].role",
                   f"expected the last message to be '{last_role}', got {out[-1]['role']!r}")
    return out


def _context(row: dict) -> list[dict]:
    if row.get("messages") is not None:
        return _messages(row["messages"], "messages", "user")
    prompt = row.get("prompt")
    if prompt is None:
        raise _Bad("no_prompt", "prompt", "missing (required: 'prompt' or 'messages')")
    if isinstance(prompt, list):
        return _messages(prompt, "prompt", "user")
    return [{"role": "user", "content": _text(prompt, "prompt", "no_prompt")}]


def _check_distinct(responses: list[str], field_name: str) -> None:
    seen: dict[str, int] = {}
    for i, text in enumerate(responses):
        key = text.strip()
        if key in seen:
            raise _Bad("duplicate_response", f"{field_name}[{i}]", f"the same text as {field_name}[{seen[key]}]")
        seen[key] = i


def _ranking_group(row: dict) -> PreferenceGroup:
    context = _context(row)
    responses = row.get("responses")
    if not isinstance(responses, list):
        raise _Bad("bad_responses", "responses", "expected a list of 2..16 strings")
    if len(responses) < 2:
        raise _Bad("one_response", "responses", f"expected at least 2 responses to compare, got {len(responses)}")
    responses = [_text(r, f"responses[{i}]", "bad_responses") for i, r in enumerate(responses)]
    _check_distinct(responses, "responses")
    ranking = row.get("ranking")
    if not isinstance(ranking, list):
        raise _Bad("bad_rank", "ranking", "expected a list of integer ranks (1 = best)")
    if len(ranking) != len(responses):
        raise _Bad("ranking_length", "ranking", f"expected {len(responses)} ranks (one per response), got {len(ranking)}")
    for i, rank in enumerate(ranking):
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(responses):
            raise _Bad("bad_rank", f"ranking[{i}]", f"expected an integer rank in 1..{len(responses)}, got {rank!r}")
    if min(ranking) != 1:
        raise _Bad("bad_rank", "ranking", "expected the best response to have rank 1")
    pairs = ranking_pairs(ranking)
    if not pairs:
        raise _AllTied()
    return PreferenceGroup(context, responses, pairs, ranking=list(ranking))


def _reply(value: Any, field_name: str) -> tuple[list[dict] | None, str]:
    """A chosen/rejected value: a string, or messages ending with the assistant's reply."""
    if isinstance(value, list):
        messages = _messages(value, field_name, "assistant")
        return messages[:-1], messages[-1]["content"]
    return None, _text(value, field_name, "bad_responses")


def _pair_group(row: dict) -> PreferenceGroup:
    chosen_context, chosen = _reply(row.get("chosen"), "chosen")
    rejected_context, rejected = _reply(row.get("rejected"), "rejected")
    if row.get("prompt") is not None or row.get("messages") is not None:
        context = _context(row) + (chosen_context or [])
    else:  # TRL's implicit prompt: both conversations share everything but the last message
        if not chosen_context or chosen_context != rejected_context:
            raise _Bad("no_prompt", "prompt", "missing, and chosen/rejected do not share a dialogue prefix")
        context = chosen_context
    if chosen.strip() == rejected.strip():
        raise _Bad("duplicate_response", "rejected", "the same text as chosen")
    margin = row.get("margin", 1.0)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin > 0:
        raise _Bad("bad_margin", "margin", f"expected a number > 0 (the rank gap), got {margin!r}")
    return PreferenceGroup(context, [chosen, rejected], [Pair(0, 1, float(margin))])


def parse_row(row: dict) -> PreferenceGroup:
    """One JSON object as a :class:`PreferenceGroup`; raises ``_Bad`` (reason, field, problem)."""
    group = _pair_group(row) if "chosen" in row or "rejected" in row else _ranking_group(row)
    group.lang = str(row.get("lang") or "unknown")
    group.category = str(row.get("category") or "unknown")
    group.id = row.get("id")
    group.meta = row
    return group


def read_preferences(paths: str | Path | Sequence[str | Path], bad_rows: str = "error",
                     report: DataReport | None = None) -> tuple[list[PreferenceGroup], DataReport]:
    """Read preference files (rankings and/or pairs) into groups, checking every row.

    Raises :class:`PreferenceDataError` (file, row, field) for a bad row when ``bad_rows="error"``; with
    ``"drop"`` it is left out and counted by reason in the returned :class:`DataReport`. Raises
    ``FileNotFoundError`` for a missing file and :class:`UserError` when no usable row is left.
    """
    if bad_rows not in BAD_ROWS:
        raise UserError(f"bad_rows must be one of {list(BAD_ROWS)}, got {bad_rows!r}")
    report = report or DataReport()
    groups: list[PreferenceGroup] = []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        for line, row in read_jsonl(path):
            report.rows += 1
            try:
                group = parse_row(row)
            except _AllTied:
                report.all_tied += 1
                continue
            except _Bad as bad:
                if bad_rows == "error":
                    raise PreferenceDataError(str(path), line, bad.field, bad.reason, bad.problem) from None
                report.dropped[bad.reason] += 1
                continue
            group.where = f"{path}: row {line}"
            groups.append(group)
    if not groups:
        raise UserError(f"no usable preference rows in {paths} (dropped: {dict(report.dropped)})")
    return groups, report


# --- encoding ------------------------------------------------------------------------------------

class Renderer:
    """Token ids of (context, response) through the tokenizer's chat template plus the reply's end token.
    With ``evidence`` (:class:`rewards.evidence.Evidence`) the tools' observation turn follows the reply."""

    def __init__(self, tokenizer, max_length: int, truncation: str = "left", evidence=None):
        if truncation not in TRUNCATION:
            raise UserError(f"truncation must be one of {list(TRUNCATION)}, got {truncation!r}")
        if not getattr(tokenizer, "chat_template", None):
            raise UserError("the tokenizer has no chat_template: set tokenizer.chat_template "
                            "(glm_base.tokenizer.CHAT_TEMPLATE for GLM tokenizers)")
        self.tokenizer, self.max_length, self.truncation, self.evidence = tokenizer, max_length, truncation, evidence
        vocab = tokenizer.get_vocab()
        self.end_id = vocab.get("<|user|>", tokenizer.eos_token_id)
        self.head = [vocab[t] for t in ("[gMASK]", "<sop>") if t in vocab]

    def __call__(self, context: list[dict], response: str) -> tuple[list[int], bool]:
        """``(ids, truncated)``; raises :class:`RowTooLong` when the row cannot fit ``max_length``."""
        conversation = (self.evidence.conversation(context, response) if self.evidence is not None
                        else context + [{"role": "assistant", "content": response}])
        out = self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)
        ids = list(out["input_ids"]) + ([self.end_id] if self.end_id is not None else [])
        if len(ids) <= self.max_length:
            return ids, False
        prompt_len = len(self.tokenizer.apply_chat_template(context, tokenize=True, add_generation_prompt=True,
                                                            return_dict=True)["input_ids"])
        head = len(self.head) if ids[: len(self.head)] == self.head else 0
        excess = len(ids) - self.max_length
        if self.truncation == "none" or prompt_len - head < excess:
            raise RowTooLong(f"{len(ids)} tokens exceed max_length={self.max_length}"
                             + ("" if self.truncation == "none" else " even with the prompt cut"), len(ids) - prompt_len)
        return ids[:head] + ids[head + excess:], True


def encode_groups(groups: Iterable[PreferenceGroup], tokenizer, max_length: int, truncation: str = "left",
                  margin: str = "none", margin_scale: float = 1.0, bad_rows: str = "error",
                  report: DataReport | None = None, evidence=None) -> tuple[list[EncodedGroup], DataReport]:
    """Render every group's responses (each once). ``margin="rank_gap"`` gives each pair the margin
    ``margin_scale * rank gap``; ``"none"`` gives 0. Overlong rows follow ``truncation``/``bad_rows``.
    ``evidence`` adds the tools' observation after each response (:class:`Renderer`)."""
    if margin not in ("none", "rank_gap"):
        raise UserError(f"margin must be 'none' or 'rank_gap', got {margin!r}")
    report = report or DataReport()
    render = Renderer(tokenizer, max_length, truncation, evidence)
    encoded = []
    for group in groups:
        try:
            rendered = [render(group.context, text) for text in group.responses]
        except _Bad as bad:
            if bad_rows == "error":
                path, _, line = group.where.partition(": row ")
                raise PreferenceDataError(path, int(line or 0), bad.field, bad.reason, bad.problem) from None
            report.dropped[bad.reason] += 1
            continue
        report.truncated += any(t for _, t in rendered)
        pairs = [(p.chosen, p.rejected, margin_scale * p.margin if margin == "rank_gap" else 0.0, 1.0)
                 for p in group.pairs]
        encoded.append(EncodedGroup([ids for ids, _ in rendered], pairs, group.lang, group.category))
    report.groups, report.pairs = len(encoded), sum(len(g.pairs) for g in encoded)
    if not encoded:
        raise UserError(f"no preference rows fit max_length={max_length} (dropped: {dict(report.dropped)})")
    return encoded, report


def balance_lengths(groups: list[EncodedGroup]) -> dict[str, float]:
    """Reweight pairs in place so the chosen response is longer in exactly half of the weighted pairs
    (see the module docstring). Returns the share of pairs with the longer response chosen, before and
    after, and the two weights. A data set where chosen is always longer (or always shorter) cannot be
    balanced by weights: it is left as it is, with a warning."""
    sign = lambda g, p: (len(g.input_ids[p[0]]) > len(g.input_ids[p[1]])) - (len(g.input_ids[p[0]]) < len(g.input_ids[p[1]]))
    counts = Counter(sign(g, p) for g in groups for p in g.pairs)
    total, longer, shorter = sum(counts.values()), counts[1], counts[-1]
    before = longer / max(longer + shorter, 1)
    if not longer or not shorter:
        logger.warning("length balance: chosen is %s longer: reweighting cannot balance it",
                       "always" if longer else "never")
        return {"chosen_longer_before": before, "chosen_longer_after": before, "weight_longer": 1.0, "weight_shorter": 1.0}
    w_long, w_short = (longer + shorter) / (2 * longer), (longer + shorter) / (2 * shorter)
    for g in groups:
        g.pairs = [(c, r, m, {1: w_long, -1: w_short, 0: 1.0}[sign(g, (c, r))]) for c, r, m, _ in g.pairs]
    return {"chosen_longer_before": before, "chosen_longer_after": 0.5, "weight_longer": w_long,
            "weight_shorter": w_short, "pairs": total}


# --- batching -----------------------------------------------------------------------------------

def collate_groups(groups: Sequence[EncodedGroup], pad_id: int) -> dict[str, torch.Tensor]:
    """A micro-batch of groups: every response one right-padded row, and the pairs as row indices.

    Keys: ``input_ids``/``attention_mask`` (R, L); ``chosen``/``rejected`` (P,) rows of each pair;
    ``margin``/``weight`` (P,). A process with no group gets zero rows and zero pairs.
    """
    rows = [ids for g in groups for ids in g.input_ids]
    length = max((len(r) for r in rows), default=1)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
    chosen, rejected, margin, weight = [], [], [], []
    offset = 0
    for g in groups:
        for c, r, m, w in g.pairs:
            chosen.append(offset + c), rejected.append(offset + r), margin.append(m), weight.append(w)
        offset += len(g.input_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "chosen": torch.tensor(chosen, dtype=torch.long), "rejected": torch.tensor(rejected, dtype=torch.long),
            "margin": torch.tensor(margin, dtype=torch.float32), "weight": torch.tensor(weight, dtype=torch.float32)}


def default_files(size: str = "tiny", seed: int = 0) -> tuple[str, str]:
    """The world's ``preferences`` split (train, eval), built on first use."""
    from world.default import world_files

    return world_files("preferences", size=size, seed=seed)
