"""SFT data: chat ``messages`` rows rendered into training examples for GLM-4 and GLM-1 models.

A row is a JSON object with ``messages``: a list of ``{"role", "content"}`` (roles ``system``,
``user``, ``assistant``, ``observation``/``tool``; an assistant message may carry ``tool_calls`` in the
transformers format), ending with an assistant turn. The world's ``sft`` and ``long`` splits are such
rows; any JSONL file with the same field works. A single-turn row may instead give ``prompt`` and its
reply: ``completion`` (TRL's prompt-completion rows) or ``reference`` (the world's ``safety`` split:
harmful prompts with refusals, alarming-but-benign ones with help), trained as a user turn and an
assistant turn.

**GLM-4 variant (causal).** The row is rendered with the tokenizer's chat template
(``[gMASK]<sop><|user|>\\n...<|assistant|>\\n...``) and ``<|user|>`` is appended after the last reply.
The targets are the template's assistant mask (``return_assistant_tokens_mask``): every assistant reply
after its ``<|assistant|>\\n`` header, in every turn, plus the token that ends it -- the ``<|user|>`` or
``<|observation|>`` of the next turn, and the appended ``<|user|>`` after the last reply (GLM-4 stops
on those; its own fine-tuning code appends ``<|user|>`` the same way). System, user and observation
text and all role headers are never targets. ``labels`` follow the transformers convention (the model
shifts them; -100 = no target); ``shift_labels`` are the same targets aligned with the inputs (the
target at position t is predicted from position t). Positions are ``0..L-1``.

**GLM-1 variant (GLM's prefix format).** The conversation up to the last reply is Part A
(bidirectional), ending in ``[gMASK]``; the last reply is Part B after ``<sop>``, laid out by
:func:`glm_base.infilling.build_row` exactly as a document-mode span in pretraining::

    Part A: <|user|>\\n{q1}<|assistant|>\\n{a1}<|user|>\\n{q2}<|assistant|>\\n [gMASK]
    Part B: <sop> {a2 tokens}           targets (shift_labels): {a2 tokens} <eop>

Positions are 2D: Part A ``(0..len_A-1, 0)``; every Part B token has text position = the index of
``[gMASK]`` in Part A and span positions ``1..``. ``part_a_length`` = len(Part A). Only the **last**
assistant turn is trained; earlier replies are context in Part A (turn a multi-turn row into one
row per reply upstream if every turn should be a target). The GLM-4 chat prefix ``[gMASK]<sop>`` is
not written at the start of a GLM-1 row: its ``[gMASK]`` closes Part A and its ``<sop>`` opens Part B,
as in ChatGLM-6B.

**Validation.** A bad row -- ``messages`` missing or not a non-empty list (``no_messages``), a message
that is not an object with a role (``bad_message``), an unknown role (``unknown_role``), content that is
not a string (``bad_content``) or is empty (``empty_content``; an assistant tool call may have empty
content), content containing a special-token string such as ``<|user|>`` (``special_token``), no
assistant turn (``no_assistant``), a last message that is not the assistant's (``last_not_assistant``),
an assistant turn followed by a system or assistant turn (``bad_order``: nothing would end the reply),
malformed ``tool_calls`` (``bad_tool_call``), or anything else the chat template refuses
(``render_error``) -- raises :class:`SFTDataError` naming the file, line and field when ``bad_rows="error"``, or is
dropped and counted by reason when ``bad_rows="drop"``.

**Length.** ``max_length`` bounds an example's tokens (GLM-1: Part A + Part B). ``truncation``:
``error`` raises (reason ``too_long``); ``drop`` drops and counts the row (``too_long``);
``truncate_left`` removes the earliest rounds (a round runs from a user turn to the next one; leading
system turns are kept, the last round never goes) until the example fits, counting the rows and
rounds removed -- a row whose last round alone is too long is then a bad row (``too_long``, by
``bad_rows``).

Loading: :func:`load_sft_examples` reads JSONL files with :func:`common.jsonl.read_jsonl` (a line that
is not JSON is always an error: the file is broken, not the row) and returns the examples with a
report (rows read, examples, dropped by reason, truncated) for the run's ``summary.json``. With no
files it takes the world's ``sft`` (or ``long``) split, built on first use.
"""

from __future__ import annotations

import itertools
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from common.errors import UserError
from glm_base.infilling import IGNORE_INDEX, build_row
from glm_base.tokenizer import GMASK_TOKEN, SOP_TOKEN, SPECIAL_TOKENS, USER_TOKEN, special_token_ids

logger = logging.getLogger(__name__)

ARCHITECTURES = ("glm4", "glm1")
ROLES = ("system", "user", "assistant", "observation", "tool")
TRUNCATION_POLICIES = ("error", "drop", "truncate_left")
BAD_ROW_POLICIES = ("error", "drop")
# (a file's (line, row) pairs, its path) -> (the pairs to keep, how many were left out on purpose)
RowFilter = Callable[[list[tuple[int, Any]], str], tuple[list[tuple[int, Any]], int]]
#: Appended after the last reply of a GLM-4 example and trained as its end (GLM-4's chat stop token).
REPLY_END_TOKEN = USER_TOKEN
_CHAT_PREFIX = GMASK_TOKEN + SOP_TOKEN


class SFTDataError(UserError):
    """A row cannot be used; ``path``, ``line``, ``field`` and ``reason`` (a short key) say why."""

    def __init__(self, path: str, line: int, field: str, reason: str, problem: str):
        self.path, self.line, self.field, self.reason, self.problem = path, line, field, reason, problem
        where = f"{path}:{line}"
        text = f"field '{field}': {problem}" if field else problem
        super().__init__(f"{where}: {text} [{reason}]")


class BadRow(Exception):
    """Raised by the pure checks; turned into :class:`SFTDataError` (or a drop) with the file and line."""

    def __init__(self, reason: str, field: str, problem: str):
        super().__init__(problem)
        self.reason, self.field, self.problem = reason, field, problem


@dataclass
class SFTExample:
    """One training example, before padding or packing (see the module docstring for the layout).

    ``position_ids`` is ``L`` long for GLM-4 and ``(2, L)`` for GLM-1; ``part_a_length`` is None for
    GLM-4. ``source`` is ``path:line`` of the row it came from.
    """

    input_ids: list[int]
    shift_labels: list[int]
    position_ids: list[int] | list[list[int]]
    part_a_length: int | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def architecture(self) -> str:
        return "glm4" if self.part_a_length is None else "glm1"

    @property
    def labels(self) -> list[int]:
        """Targets in the transformers convention (shifted by the model): ``labels[t+1] = shift_labels[t]``."""
        return [IGNORE_INDEX] + self.shift_labels[:-1]

    @property
    def num_targets(self) -> int:
        """``N_i``: the tokens this example is trained on."""
        return sum(1 for t in self.shift_labels if t != IGNORE_INDEX)

    def to_dict(self) -> dict[str, Any]:
        out = {"input_ids": self.input_ids, "shift_labels": self.shift_labels, "position_ids": self.position_ids}
        if self.part_a_length is None:
            out["labels"] = self.labels
        else:
            out["part_a_length"] = self.part_a_length
        return out


@dataclass
class SFTDataArgs:
    """What the SFT trainer's config says about its data (a nested section of its config)."""

    train_files: list[str] = field(default_factory=list, metadata={
        "help": "JSONL files of chat rows (field 'messages'); empty = the world's split named by world_kind"})
    eval_files: list[str] = field(default_factory=list, metadata={
        "help": "JSONL files for evaluation; empty with empty train_files = the world's eval split"})
    world_kind: Literal["sft", "long"] = field(default="sft", metadata={"help": "world split used by default"})
    world_safety: bool = field(default=False, metadata={
        "help": "with no train_files: also train on the world's safety split (harmful prompts answered with "
                "refusals, alarming-but-benign ones with help)"})
    world_scale: Literal["tiny", "small", "medium"] = field(default="tiny", metadata={"help": "size of the default world"})
    world_seed: int = field(default=0, metadata={"help": "seed of the default world (kept apart from the training seed)"})
    world_dir: str = field(default="", metadata={
        "help": "a built world (python -m world.build --out DIR) to take the default splits from; "
                "empty = the world of world_scale and world_seed, built and cached on first use"})
    max_length: int = field(default=1024, metadata={"help": "most tokens of one example (GLM-1: Part A + Part B)"})
    truncation: Literal["error", "drop", "truncate_left"] = field(default="error", metadata={
        "help": "an example longer than max_length: error | drop the row | truncate_left (drop earliest rounds)"})
    bad_rows: Literal["error", "drop"] = field(default="error", metadata={
        "help": "a malformed row: error (names file, line, field) | drop and count by reason"})
    packing: bool = field(default=False, metadata={
        "help": "pack several examples per row up to max_length (attention stays within an example)"})
    packing_strategy: Literal["ffd", "greedy"] = field(default="ffd", metadata={
        "help": "ffd = first-fit decreasing (fewest rows) | greedy = in data order"})
    loss_weighting: Literal["example", "token"] = field(default="example", metadata={
        "help": "example = LongAlign (each example counts equally: 1/N_i per token, / examples in the "
                "global batch) | token = mean over the global batch's target tokens"})
    batching: Literal["sorted", "random"] = field(default="sorted", metadata={
        "help": "sorted = rows of similar length batched together, batches shuffled | random = shuffled rows"})


# --- checks -------------------------------------------------------------------------------------
REPLY_FIELDS = ("completion", "reference")  # the reply of a single-turn row: TRL's name, the world safety split's
def single_turn_messages(row: dict) -> list[dict] | None:
    """A single-turn row as chat messages: TRL's prompt-completion rows (``prompt`` + ``completion``)
    and the world's ``safety`` rows (``prompt`` + ``reference``, the reply with the expected
    behaviour); None when the row has no ``prompt`` (or has ``messages``). A ``prompt`` without its
    reply raises :class:`BadRow` naming the missing field."""
    if row.get("messages") is not None or "prompt" not in row:
        return None
    reply_field = next((key for key in REPLY_FIELDS if key in row), None)
    if reply_field is None:
        raise BadRow("no_messages", REPLY_FIELDS[0],
                     f"a 'prompt' row needs its reply in {' or '.join(repr(k) for k in REPLY_FIELDS)} (or give 'messages')")
    for key in ("prompt", reply_field):
        if not isinstance(row[key], str):
            raise BadRow("bad_content", key, f"expected a string, got {type(row[key]).__name__}")
        if not row[key].strip():
            raise BadRow("empty_content", key, "expected non-empty text")
    return [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[reply_field]}]


def trainable_messages(row: Any) -> list[dict] | None:
    """The row as the chat messages SFT would train on (:func:`check_messages`), or None for a bad row."""
    try:
        return check_messages(row)
    except BadRow:
        return None


def check_messages(row: Any) -> list[dict]:
    """The row's ``messages`` (or its prompt and reply, :func:`single_turn_messages`) if they can be
    trained on; raises :class:`BadRow` otherwise."""
    if not isinstance(row, dict):
        raise BadRow("no_messages", "", f"expected a JSON object, got {type(row).__name__}")
    messages = single_turn_messages(row) or row.get("messages")
    if not isinstance(messages, list) or not messages:
        got = "nothing" if messages is None else repr(messages)[:40]
        raise BadRow("no_messages", "messages", f"expected a non-empty list of messages, got {got}")
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or "role" not in msg:
            raise BadRow("bad_message", where, "expected an object with 'role' and 'content'")
        role = msg["role"]
        if role not in ROLES:
            raise BadRow("unknown_role", f"{where}.role", f"unknown role {role!r}; expected one of {list(ROLES)}")
        content = msg.get("content")
        tool_call = role == "assistant" and bool(msg.get("tool_calls"))
        if tool_call:
            _check_tool_calls(msg["tool_calls"], f"{where}.tool_calls")
        if content is None and tool_call:
            content = ""
        if not isinstance(content, str):
            raise BadRow("bad_content", f"{where}.content", f"expected a string, got {type(content).__name__}")
        if not content.strip() and not tool_call:
            raise BadRow("empty_content", f"{where}.content", "expected non-empty text")
        for token in SPECIAL_TOKENS:
            if token in content:
                raise BadRow("special_token", f"{where}.content",
                             f"contains the special token {token!r}, which would be read as chat structure")
    for i, (msg, nxt) in enumerate(zip(messages, messages[1:])):
        if msg["role"] == "assistant" and nxt["role"] in ("system", "assistant"):
            raise BadRow("bad_order", f"messages[{i + 1}].role",
                         f"an assistant turn must be followed by a user or observation turn (or end the "
                         f"conversation), got {nxt['role']!r}")
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRow("no_assistant", "messages", "no assistant turn: nothing to train on")
    if messages[-1]["role"] != "assistant":
        raise BadRow("last_not_assistant", f"messages[{len(messages) - 1}].role",
                     f"expected the conversation to end with an assistant turn, got {messages[-1]['role']!r}")
    return messages


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise BadRow("bad_tool_call", where, f"expected a list of tool calls, got {type(calls).__name__}")
    for j, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"].strip():
            raise BadRow("bad_tool_call", f"{where}[{j}]", "expected {'function': {'name': ..., 'arguments': ...}}")
        if not isinstance(fn.get("arguments"), (str, dict)):
            raise BadRow("bad_tool_call", f"{where}[{j}].function.arguments",
                         f"expected a JSON string or an object, got {type(fn.get('arguments')).__name__}")
        text = fn["name"] + (fn["arguments"] if isinstance(fn["arguments"], str) else "")
        for token in SPECIAL_TOKENS:
            if token in text:
                raise BadRow("special_token", f"{where}[{j}]", f"contains the special token {token!r}")


def rounds(messages: Sequence[dict]) -> tuple[list[dict], list[list[dict]]]:
    """Split a conversation into its leading system turns and rounds (a round starts at a user turn)."""
    head = list(itertools.takewhile(lambda m: m["role"] == "system", messages))
    out: list[list[dict]] = []
    for msg in messages[len(head):]:
        if msg["role"] == "user" or not out:
            out.append([])
        out[-1].append(msg)
    return head, out


# --- rendering ----------------------------------------------------------------------------------
class ChatRenderer:
    """Renders checked ``messages`` into :class:`SFTExample` s for one tokenizer and architecture."""

    def __init__(self, tokenizer, architecture: str = "glm4"):
        if architecture not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {architecture!r}; expected one of {list(ARCHITECTURES)}")
        template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
        if not template or not re.search(r"\{%-?\s*generation\s*-?%\}", template):
            raise ValueError("the tokenizer's chat template has no {% generation %} markers, so it cannot say "
                             "which tokens are the assistant's (a tokenizer saved before they were added?); "
                             "set tokenizer.chat_template = glm_base.tokenizer.CHAT_TEMPLATE")
        self.tokenizer = tokenizer
        self.architecture = architecture
        self.ids = special_token_ids(tokenizer)
        self.end_id = tokenizer.convert_tokens_to_ids(REPLY_END_TOKEN)

    def render(self, messages: Sequence[dict], source: str = "") -> SFTExample:
        return self._glm4(messages, source) if self.architecture == "glm4" else self._glm1(messages, source)

    def _glm4(self, messages: Sequence[dict], source: str) -> SFTExample:
        out = self.tokenizer.apply_chat_template(
            list(messages), tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        input_ids = list(out["input_ids"]) + [self.end_id]
        mask = list(out["assistant_masks"]) + [1]
        labels = [t if m else IGNORE_INDEX for t, m in zip(input_ids, mask)]
        return SFTExample(input_ids=input_ids, shift_labels=labels[1:] + [IGNORE_INDEX],
                          position_ids=list(range(len(input_ids))), source=source)

    def prompt_and_reply(self, messages: Sequence[dict]) -> tuple[str, str]:
        """The GLM-1 split of a rendered conversation: text before the last reply (without the GLM-4
        prefix ``[gMASK]<sop>``) and the last reply (the template's last ``{% generation %}`` block)."""
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, spans = render_jinja_template(
            [list(messages)], chat_template=self.tokenizer.chat_template, return_assistant_tokens_mask=True,
            **self.tokenizer.special_tokens_map)
        text, spans = rendered[0], spans[0]
        if not text.startswith(_CHAT_PREFIX) or not spans:
            raise ValueError("the tokenizer's chat template does not write GLM-4's [gMASK]<sop> prefix and "
                             "{% generation %} blocks; re-save the tokenizer with glm_base.tokenizer's template")
        start, end = spans[-1]
        return text[len(_CHAT_PREFIX):start], text[start:end]

    def _glm1(self, messages: Sequence[dict], source: str) -> SFTExample:
        prompt, reply = self.prompt_and_reply(messages)
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reply_ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"]
        n = len(prompt_ids)
        row = build_row(prompt_ids + reply_ids, [(n, n + len(reply_ids))], self.ids.gmask, self.ids.sop, self.ids.eop)
        return SFTExample(input_ids=row.input_ids.tolist(), shift_labels=row.shift_labels.tolist(),
                          position_ids=row.position_ids.tolist(), part_a_length=int(row.part_a_length),
                          source=source)


def render_messages(messages: Sequence[dict], tokenizer, architecture: str = "glm4") -> SFTExample:
    """One conversation (checked with :func:`check_messages`) as an example; raises :class:`BadRow`."""
    return ChatRenderer(tokenizer, architecture).render(check_messages({"messages": list(messages)}))


def show_example(example: SFTExample, tokenizer) -> str:
    """Readable text of an example: targets in « », Part B after `` ‖ `` (GLM-1).

    GLM-4: the input text with the tokens that are targets (``labels``) wrapped in « ».
    GLM-1: Part A, then `` ‖ ``, then Part B's *targets* in « » (Part B's inputs are ``<sop>`` + the
    same tokens shifted by one)."""
    if example.part_a_length is None:
        pairs = list(zip(example.input_ids, (lab != IGNORE_INDEX for lab in example.labels)))
        return _marked(pairs, tokenizer)
    a = example.part_a_length
    part_a = tokenizer.decode(example.input_ids[:a])
    targets = [(t, True) for t in example.shift_labels[a:] if t != IGNORE_INDEX]
    return part_a + " ‖ " + _marked(targets, tokenizer)


def _marked(pairs: Iterable[tuple[int, bool]], tokenizer) -> str:
    pieces = []
    for marked, run in itertools.groupby(pairs, key=lambda p: p[1]):
        text = tokenizer.decode([t for t, _ in run])
        pieces.append(f"«{text}»" if marked else text)
    return "".join(pieces)


# --- building a data set ------------------------------------------------------------------------
@dataclass
class SFTDataReport:
    """Counts for the run's ``summary.json``."""

    rows: int = 0
    examples: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    truncated_rows: int = 0
    rounds_removed: int = 0
    target_tokens: int = 0
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "examples": self.examples, "dropped": dict(sorted(self.dropped.items())),
                "truncated_rows": self.truncated_rows, "rounds_removed": self.rounds_removed,
                "tokens": self.tokens, "target_tokens": self.target_tokens}


class SFTExampleBuilder:
    """Check, render and fit rows to ``max_length`` under the ``truncation`` and ``bad_rows`` policies."""

    def __init__(self, tokenizer, architecture: str = "glm4", max_length: int = 1024,
                 truncation: str = "error", bad_rows: str = "error"):
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"unknown truncation {truncation!r}; expected one of {list(TRUNCATION_POLICIES)}")
        if bad_rows not in BAD_ROW_POLICIES:
            raise ValueError(f"unknown bad_rows {bad_rows!r}; expected one of {list(BAD_ROW_POLICIES)}")
        if max_length < 4:
            raise ValueError(f"max_length={max_length} is too small for a chat example")
        self.renderer = ChatRenderer(tokenizer, architecture)
        self.max_length = int(max_length)
        self.truncation = truncation
        self.bad_rows = bad_rows
        self.report = SFTDataReport()

    def add(self, row: Any, path: str = "<rows>", line: int = 0) -> SFTExample | None:
        """The example of one row, or None if it was dropped (counted in :attr:`report`)."""
        self.report.rows += 1
        source = f"{path}:{line}"
        try:
            messages = check_messages(row)
            try:
                example = self._fit(messages, source)
            except BadRow:
                raise
            except Exception as err:  # the template refused something the checks let through
                raise BadRow("render_error", "messages", f"the chat template could not render it: {err}") from err
        except BadRow as bad:
            if self.bad_rows == "drop" or (bad.reason == "too_long" and self.truncation == "drop"):
                self.report.dropped[bad.reason] = self.report.dropped.get(bad.reason, 0) + 1
                return None
            raise SFTDataError(path, line, bad.field, bad.reason, bad.problem) from None
        self.report.examples += 1
        self.report.tokens += len(example)
        self.report.target_tokens += example.num_targets
        return example

    def _fit(self, messages: list[dict], source: str) -> SFTExample:
        example = self.renderer.render(messages, source)
        if len(example) <= self.max_length:
            return example
        if self.truncation == "truncate_left":
            head, parts = rounds(messages)
            for removed in range(1, len(parts)):
                example = self.renderer.render(head + [m for r in parts[removed:] for m in r], source)
                if len(example) <= self.max_length:
                    self.report.truncated_rows += 1
                    self.report.rounds_removed += removed
                    return example
            raise BadRow("too_long", "messages",
                         f"{len(example)} tokens with only the last round left; max_length is {self.max_length}")
        raise BadRow("too_long", "messages", f"{len(example)} tokens; max_length is {self.max_length} "
                                             f"(set truncation: drop or truncate_left, or raise max_length)")


def build_examples(rows: Iterable[tuple[int, Any]], tokenizer, path: str = "<rows>", architecture: str = "glm4",
                   max_length: int = 1024, truncation: str = "error",
                   bad_rows: str = "error") -> tuple[list[SFTExample], SFTDataReport]:
    """Examples of ``(line, row)`` pairs from one source named ``path``, with the report."""
    builder = SFTExampleBuilder(tokenizer, architecture, max_length, truncation, bad_rows)
    examples = [ex for line, row in rows if (ex := builder.add(row, path, line)) is not None]
    return examples, builder.report


def default_files(kind: str = "sft", size: str = "tiny", seed: int = 0) -> tuple[str, str]:
    """``(train, eval)`` JSONL paths of the world's ``kind`` split (built on first use)."""
    from world.default import world_files

    return world_files(kind, size=size, seed=seed)


def load_sft_examples(paths: Sequence[str | Path], tokenizer, architecture: str = "glm4", max_length: int = 1024,
                      truncation: str = "error", bad_rows: str = "error",
                      row_filter: RowFilter | None = None) -> tuple[list[SFTExample], dict[str, Any]]:
    """Examples from JSONL files, in file order, and the report as a dict (summed over the files).

    ``row_filter(rows, path)``, given a file's ``(line, row)`` pairs, returns the pairs to keep and how
    many it left out on purpose (counted as ``filtered`` in the report, apart from bad rows).

    Raises ``FileNotFoundError`` for a missing file, :class:`common.jsonl.JsonlError` for a line that is
    not a JSON object and :class:`SFTDataError` for a bad row under ``bad_rows="error"``.
    """
    from common.jsonl import read_jsonl

    if not paths:
        raise ValueError("no data files given")
    builder = SFTExampleBuilder(tokenizer, architecture, max_length, truncation, bad_rows)
    examples: list[SFTExample] = []
    filtered = 0
    for path in map(str, paths):
        rows: Iterable[tuple[int, Any]] = read_jsonl(path)
        if row_filter is not None:
            rows, left_out = row_filter(list(rows), path)
            filtered += left_out
        for line, row in rows:
            example = builder.add(row, path, line)
            if example is not None:
                examples.append(example)
    report = builder.report.to_dict()
    report["files"] = [str(p) for p in paths]
    if row_filter is not None:
        report["filtered"] = filtered
    if report["dropped"]:
        logger.warning("dropped %d of %d rows: %s", sum(report["dropped"].values()), report["rows"], report["dropped"])
    if not examples:
        raise UserError(f"no usable example in {list(map(str, paths))} (report: {report})")
    return examples, report


def world_split_files(args: SFTDataArgs, kind: str) -> tuple[str, str]:
    """``(train, eval)`` of the world split ``kind``: from ``args.world_dir`` when set (each file must
    be there), else the cached world of ``args.world_scale`` and ``args.world_seed``."""
    from world.default import split_files

    return split_files(kind, args.world_scale, args.world_seed, args.world_dir)


def load_from_args(args: SFTDataArgs, tokenizer, architecture: str, split: str = "train"):
    """:func:`load_sft_examples` for ``split`` (``train``/``eval``) of an :class:`SFTDataArgs`; the world
    when no files are named. Returns ``(examples, report)``; ``([], {})`` for an eval split with no files."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    files = args.train_files if split == "train" else args.eval_files
    if not files:
        if args.train_files:  # the user's own training data and no eval files: no eval set
            return [], {}
        train, eval_ = world_split_files(args, args.world_kind)
        files = [train if split == "train" else eval_]
        if split == "train" and args.world_safety:
            files.append(world_split_files(args, "safety")[0])
    return load_sft_examples(files, tokenizer, architecture, args.max_length, args.truncation, args.bad_rows)

