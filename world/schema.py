"""Row schemas of the world's files, validation of any JSONL file against them, and loading.

The same schemas describe the world's own files and a user's data for the same stage, so a stage
can take either. Validation reads every line and raises :class:`SchemaError` naming the file, the
line (1-based) and the field, with what was expected::

    data/mine.jsonl:17: field 'messages[2].content': expected a string, got int

Kinds and their fields (``*`` = required; others are checked when present):

- ``corpus``:      text*, id, lang, title, meta
- ``cloze``:       text*, label*, label_id, id, lang, meta
- ``sft``:         messages* (ends with an assistant turn), id, lang, category, meta
- ``preferences``: responses* (2..16 strings), ranking* (ints, 1 = best, ties share a rank),
                   prompt* or messages* (context ending with a user turn), id, lang, category,
                   reasons (one per response), meta
- ``safety``:      prompt*, expected* (refuse | help), label (harmful | benign), id, lang,
                   category, reference, meta
- ``long``:        messages* (ends with an assistant turn), id, lang, task, meta
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

KINDS = ("corpus", "cloze", "sft", "preferences", "safety", "long")
LANGS = ("en", "zh")
ROLES = ("system", "user", "assistant")
PREFERENCE_CATEGORIES = (
    "helpfulness", "factuality", "language-mixing", "needless-refusal", "unsafe-compliance", "consistency",
)


class SchemaError(ValueError):
    """A row does not match its schema; ``path``, ``line`` and ``field`` say where."""

    def __init__(self, path: str, line: int, field: str, problem: str):
        self.path, self.line, self.field, self.problem = path, line, field, problem
        where = f"{path}:{line}"
        super().__init__(f"{where}: field '{field}': {problem}" if field else f"{where}: {problem}")


class _Bad(Exception):
    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem


def _type_name(value: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _need(row: dict, name: str) -> Any:
    if name not in row or row[name] is None:
        raise _Bad(name, "missing (required)")
    return row[name]


def _str(value: Any, field: str, nonempty: bool = True) -> str:
    if not isinstance(value, str):
        raise _Bad(field, f"expected a string, got {_type_name(value)}")
    if nonempty and not value.strip():
        raise _Bad(field, "expected a non-empty string")
    return value


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(field, f"expected an integer, got {_type_name(value)}")
    return value


def _one_of(value: Any, field: str, options: Iterable[str]) -> str:
    options = tuple(options)
    _str(value, field)
    if value not in options:
        raise _Bad(field, f"expected one of {list(options)}, got {value!r}")
    return value


def _messages(value: Any, field: str, last_role: str) -> list:
    if not isinstance(value, list):
        raise _Bad(field, f"expected a list of messages, got {_type_name(value)}")
    if not value:
        raise _Bad(field, "expected at least one message, got an empty list")
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise _Bad(where, f"expected an object with role and content, got {_type_name(msg)}")
        if "role" not in msg:
            raise _Bad(f"{where}.role", "missing (required)")
        _one_of(msg["role"], f"{where}.role", ROLES)
        if "content" not in msg:
            raise _Bad(f"{where}.content", "missing (required)")
        _str(msg["content"], f"{where}.content")
    if not any(m["role"] == "user" for m in value):
        raise _Bad(field, "expected at least one user message")
    if value[-1]["role"] != last_role:
        raise _Bad(f"{field}[{len(value) - 1}].role", f"expected the last message to be '{last_role}', got {value[-1]['role']!r}")
    return value


def _common(row: dict) -> None:
    if "id" in row and row["id"] is not None and not isinstance(row["id"], (str, int)):
        raise _Bad("id", f"expected a string or integer, got {_type_name(row['id'])}")
    if "lang" in row and row["lang"] is not None:
        _one_of(row["lang"], "lang", LANGS)
    if "meta" in row and row["meta"] is not None and not isinstance(row["meta"], dict):
        raise _Bad("meta", f"expected an object, got {_type_name(row['meta'])}")
    if "category" in row and row["category"] is not None:
        _str(row["category"], "category")


def _check_corpus(row: dict) -> None:
    _str(_need(row, "text"), "text")
    if row.get("title") is not None:
        _str(row["title"], "title")


def _check_cloze(row: dict) -> None:
    _str(_need(row, "text"), "text")
    _str(_need(row, "label"), "label")
    if row.get("label_id") is not None:
        _int(row["label_id"], "label_id")


def _check_sft(row: dict) -> None:
    _messages(_need(row, "messages"), "messages", "assistant")


def _check_long(row: dict) -> None:
    _messages(_need(row, "messages"), "messages", "assistant")
    if row.get("task") is not None:
        _str(row["task"], "task")


def _check_safety(row: dict) -> None:
    _str(_need(row, "prompt"), "prompt")
    _one_of(_need(row, "expected"), "expected", ("refuse", "help"))
    if row.get("label") is not None:
        _one_of(row["label"], "label", ("harmful", "benign"))
    if row.get("reference") is not None:
        _str(row["reference"], "reference")


def check_ranking(ranking: Any, n: int, field: str = "ranking") -> list[int]:
    """Ranks are integers in 1..n, one per response, the best is 1 (ties share a rank)."""
    if not isinstance(ranking, list):
        raise _Bad(field, f"expected a list of integers, got {_type_name(ranking)}")
    if len(ranking) != n:
        raise _Bad(field, f"expected {n} ranks (one per response), got {len(ranking)}")
    for i, r in enumerate(ranking):
        _int(r, f"{field}[{i}]")
        if not 1 <= r <= n:
            raise _Bad(f"{field}[{i}]", f"expected a rank in 1..{n}, got {r}")
    if min(ranking) != 1:
        raise _Bad(field, "expected the best response to have rank 1")
    return ranking


def _check_preferences(row: dict) -> None:
    has_prompt = row.get("prompt") is not None
    has_messages = row.get("messages") is not None
    if not has_prompt and not has_messages:
        raise _Bad("prompt", "missing (required: 'prompt' or 'messages')")
    if has_prompt:
        _str(row["prompt"], "prompt")
    if has_messages:
        _messages(row["messages"], "messages", "user")
    responses = _need(row, "responses")
    if not isinstance(responses, list):
        raise _Bad("responses", f"expected a list of strings, got {_type_name(responses)}")
    if not 2 <= len(responses) <= 16:
        raise _Bad("responses", f"expected 2..16 responses, got {len(responses)}")
    for i, r in enumerate(responses):
        _str(r, f"responses[{i}]")
    check_ranking(_need(row, "ranking"), len(responses))
    if row.get("reasons") is not None:
        reasons = row["reasons"]
        if not isinstance(reasons, list) or len(reasons) != len(responses):
            raise _Bad("reasons", f"expected a list of {len(responses)} strings (one per response)")
        for i, r in enumerate(reasons):
            _str(r, f"reasons[{i}]")


CHECKS: dict[str, Callable[[dict], None]] = {
    "corpus": _check_corpus, "cloze": _check_cloze, "sft": _check_sft,
    "preferences": _check_preferences, "safety": _check_safety, "long": _check_long,
}


def validate_row(row: Any, kind: str, path: str = "<row>", line: int = 1) -> dict:
    """Check one parsed row; raise :class:`SchemaError` naming ``path``, ``line`` and the field."""
    if kind not in CHECKS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {list(KINDS)}")
    if not isinstance(row, dict):
        raise SchemaError(path, line, "", f"expected a JSON object, got {_type_name(row)}")
    try:
        _common(row)
        CHECKS[kind](row)
    except _Bad as bad:
        raise SchemaError(path, line, bad.field, bad.problem) from None
    return row


def read_jsonl(path: str | Path, kind: str) -> list[dict]:
    """Read and validate every row of a JSONL file (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as err:
                raise SchemaError(str(path), lineno, "", f"not valid JSON: {err.msg} (column {err.colno})") from None
            rows.append(validate_row(row, kind, str(path), lineno))
    if not rows:
        raise SchemaError(str(path), 0, "", "the file has no rows")
    return rows


def validate_file(path: str | Path, kind: str) -> int:
    """Validate a JSONL file; return its number of rows."""
    return len(read_jsonl(path, kind))


def world_files(world_dir: str | Path, kind: str) -> dict[str, str]:
    """``{"train": path, "eval": path}`` for one kind of a built world directory."""
    base = Path(world_dir) / kind
    files = {split: str(base / f"{split}.jsonl") for split in ("train", "eval")}
    missing = [p for p in files.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: missing; build the world with python -m world.build --out {world_dir}")
    return files


def load(data_files: str | Path | list | dict, kind: str, validate: bool = True):
    """Validate then load with ``datasets.load_dataset("json", data_files=...)``.

    ``data_files`` is a file, a list of files, a ``{split: file(s)}`` mapping, or a world directory
    (then its ``train``/``eval`` files of ``kind``). Returns a ``DatasetDict``.
    """
    import datasets

    if isinstance(data_files, (str, Path)) and Path(data_files).is_dir():
        data_files = world_files(data_files, kind)
    if isinstance(data_files, (str, Path)):
        data_files = {"train": str(data_files)}
    elif isinstance(data_files, list):
        data_files = {"train": [str(p) for p in data_files]}
    if validate:
        for files in data_files.values():
            for p in [files] if isinstance(files, (str, Path)) else files:
                validate_file(p, kind)
    return datasets.load_dataset("json", data_files={k: v for k, v in data_files.items()})
