"""Prompts for PPO: chat messages ending with the user turn to answer, with the metadata the rule
rewards and the evaluation read (language, category, harmful/benign label, accepted answers).

Sources:

- the world's ``sft`` rows (the conversation without its last assistant reply; ``meta`` carries
  ``answer_lang``, ``expected``, ``answers``, ``wrong``) and ``safety`` rows (one user turn;
  ``label`` harmful | benign, ``expected`` refuse | help), train split for rollouts and eval split
  for the held-out evaluation;
- a user's JSONL file, one prompt per line: ``{"prompt": "..."}`` or ``{"messages": [...]}`` (ending
  with a user turn), and optionally ``lang`` (en | zh), ``category``, ``label`` (harmful | benign),
  ``expected`` (refuse | help), ``meta`` (an object). A bad row raises :class:`PromptDataError`
  naming the file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from common.errors import UserError
from common.jsonl import JsonlError, read_jsonl

ROLES = ("system", "user", "assistant", "observation", "tool")


class PromptDataError(UserError):
    """A prompt row that cannot be used; the message names the file, line and field."""

    def __init__(self, path: str, line: int, field_name: str, problem: str):
        super().__init__(f"{path}:{line}: field {field_name!r}: {problem}")
        self.path, self.line, self.field = path, line, field_name


@dataclass
class PromptRow:
    """One prompt: ``messages`` end with the user turn to answer; ``meta`` is what the rules and the
    judges read (``lang``, ``category``, ``label``, ``expected``, ``answer_lang``, ``answers``, ``wrong``)."""

    messages: list[dict]
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def lang(self) -> str | None:
        return self.meta.get("answer_lang") or self.meta.get("lang")

    @property
    def harmful(self) -> bool | None:
        """True/False from ``label`` or ``expected``; None when the row says nothing."""
        if self.meta.get("label") in ("harmful", "benign"):
            return self.meta["label"] == "harmful"
        if self.meta.get("expected") in ("refuse", "help"):
            return self.meta["expected"] == "refuse"
        return None

    @property
    def answers(self) -> list[str]:
        return [str(a) for a in self.meta.get("answers") or []]


def _messages(value: Any, path: str, line: int, field_name: str = "messages") -> list[dict]:
    if not isinstance(value, list) or not value:
        raise PromptDataError(path, line, field_name, "expected a non-empty list of {'role', 'content'} objects")
    out = []
    for i, msg in enumerate(value):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict):
            raise PromptDataError(path, line, where, f"expected an object, got {type(msg).__name__}")
        if msg.get("role") not in ROLES:
            raise PromptDataError(path, line, f"{where}.role", f"expected one of {list(ROLES)}, got {msg.get('role')!r}")
        if not isinstance(msg.get("content"), str) or not msg["content"].strip():
            raise PromptDataError(path, line, f"{where}.content", "expected a non-empty string")
        out.append({"role": msg["role"], "content": msg["content"]})
    if out[-1]["role"] != "user":
        raise PromptDataError(path, line, f"{field_name}[{len(out) - 1}].role",
                              f"the last message must be the user turn to answer, got {out[-1]['role']!r}")
    return out


def prompt_row(row: Any, path: str = "<rows>", line: int = 0) -> PromptRow:
    """A :class:`PromptRow` of a user's prompt row, or of a world ``sft`` row (its last assistant
    reply dropped) or ``safety`` row. Raises :class:`PromptDataError` naming the field."""
    if not isinstance(row, dict):
        raise PromptDataError(path, line, "", f"expected a JSON object, got {type(row).__name__}")
    if row.get("messages") is not None:
        messages = row["messages"]
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant":
            messages = messages[:-1]  # an SFT row: answer its last user turn afresh
        messages = _messages(messages, path, line)
    elif row.get("prompt") is not None:
        if not isinstance(row["prompt"], str) or not row["prompt"].strip():
            raise PromptDataError(path, line, "prompt", "expected a non-empty string")
        messages = [{"role": "user", "content": row["prompt"]}]
    else:
        raise PromptDataError(path, line, "prompt", "missing (required: 'prompt' or 'messages')")
    meta = dict(row.get("meta") or {}) if isinstance(row.get("meta"), dict) else {}
    if row.get("meta") is not None and not isinstance(row["meta"], dict):
        raise PromptDataError(path, line, "meta", f"expected an object, got {type(row['meta']).__name__}")
    for key, allowed in (("lang", ("en", "zh")), ("label", ("harmful", "benign")), ("expected", ("refuse", "help"))):
        value = row.get(key)
        if value is None:
            continue
        if value not in allowed:
            raise PromptDataError(path, line, key, f"expected one of {list(allowed)}, got {value!r}")
        meta[key] = value
    if row.get("category") is not None:
        if not isinstance(row["category"], str):
            raise PromptDataError(path, line, "category", "expected a string")
        meta["category"] = row["category"]
    for key in ("answer_lang",):
        if meta.get(key) is not None and meta[key] not in ("en", "zh"):
            raise PromptDataError(path, line, f"meta.{key}", f"expected 'en' or 'zh', got {meta[key]!r}")
    return PromptRow(messages, meta, f"{path}:{line}")


def read_prompts(path: str | Path) -> list[PromptRow]:
    """Every row of a JSONL prompt file (see the module docstring); raises on the first bad row."""
    path = str(path)
    try:
        rows = [prompt_row(row, path, line) for line, row in read_jsonl(path)]
    except JsonlError as err:  # a line that is not JSON: the file is broken
        raise UserError(str(err)) from None
    if not rows:
        raise PromptDataError(path, 0, "", "the file has no prompt rows")
    return rows


def world_repeats_problem(repeats: Mapping[str, Any], kinds: Sequence[str]) -> str | None:
    """What is wrong with ``data.world_repeats`` for ``data.world_kinds`` (a split not among them, a
    count that is not an integer >= 1), or None."""
    for kind, n in repeats.items():
        if kind not in kinds:
            return f"data.world_repeats: {kind!r} is not among data.world_kinds {list(kinds)}"
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            return f"data.world_repeats.{kind}: expected an integer >= 1, got {n!r}"
    return None


def world_prompts(split: str, kinds: Sequence[str] = ("sft", "safety"), size: str = "tiny", seed: int = 0,
                  repeats: Mapping[str, int] | None = None) -> list[PromptRow]:
    """The world's prompts of ``split`` (train | eval) for each of ``kinds``, built on first use;
    ``repeats`` (kind -> n >= 1) lists a kind's rows n times (oversampling)."""
    repeats = dict(repeats or {})
    problem = world_repeats_problem(repeats, kinds)
    if problem:
        raise UserError(problem)
    from world.default import world_files

    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rows: list[PromptRow] = []
    for kind in kinds:
        if kind not in ("sft", "safety"):
            raise UserError(f"data.world_kinds: {kind!r} is not a prompt source; use sft and/or safety")
        train, evaluation = world_files(kind, size=size, seed=seed)
        rows.extend(read_prompts(train if split == "train" else evaluation) * repeats.get(kind, 1))
    return rows


def interleave(rows: Iterable[PromptRow], key: str = "category") -> list[PromptRow]:
    """``rows`` reordered round-robin over ``meta[key]`` (first-seen order of the groups), so the first
    N rows of a held-out set cover every category instead of the first file's."""
    groups: dict[Any, list[PromptRow]] = {}
    for row in rows:
        groups.setdefault(row.meta.get(key), []).append(row)
    out, lists = [], list(groups.values())
    for i in range(max((len(g) for g in lists), default=0)):
        out.extend(g[i] for g in lists if i < len(g))
    return out


def rule_metadata(row: PromptRow, truncated: bool) -> dict[str, Any]:
    """What :class:`rewards.rules.RuleRewards` reads for one sample: the row's metadata and whether
    the response was cut by ``max_new_tokens``."""
    return {**row.meta, "truncated": bool(truncated)}


def rule_passing_rows(rows: Iterable[tuple[int, Any]], rules, path: str = "<rows>",
                      conversation: Callable[[Any], list[dict] | None] | None = None) -> tuple[list[tuple[int, Any]], int]:
    """The ``(line, row)`` pairs of SFT rows whose final assistant reply no rule of ``rules``
    (:class:`rewards.rules.RuleRewards`) penalises, and how many were left out. PPO-ptx trains on
    these: the SFT data keeps the policy near what it knew, but its rows with the flaws PPO is removing
    (a reply in the wrong language, a refusal of a harmless request) would teach them back.
    ``conversation(row)`` is the row as chat messages ending with the reply, or None (default: the SFT
    loader's own reading, :func:`align.sft_data.trainable_messages`, which also takes single-turn
    ``prompt``/``completion`` rows). Rows without a final reply, or that are not prompt rows, are kept
    (the SFT loader counts or rejects them)."""
    if conversation is None:
        from align.sft_data import trainable_messages as conversation
    kept, candidates = [], []
    for line, row in rows:
        try:
            prompt = prompt_row(row, path, line)
        except PromptDataError:
            kept.append((line, row))
            continue
        messages = conversation(row)
        if isinstance(messages, list) and messages and isinstance(messages[-1], dict) \
                and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            candidates.append((line, row, prompt, messages[-1]["content"]))
        else:
            kept.append((line, row))
    if not candidates:
        return kept, 0
    scored = rules.score([c[2].messages for c in candidates], [c[3] for c in candidates],
                         [rule_metadata(c[2], False) for c in candidates])
    passing = [(line, row) for i, (line, row, _, _) in enumerate(candidates)
               if all(scored.weights[name] * scores.scores[i] >= 0 for name, scores in scored.per_rule.items())]
    ordered = sorted(kept + passing, key=lambda pair: pair[0])
    return ordered, len(candidates) - len(passing)
