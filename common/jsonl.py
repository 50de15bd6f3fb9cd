"""JSON Lines: reading with the file and line in every error, and atomic writing.

``read_jsonl`` yields ``(line_number, row)``; a line that is not a JSON object raises
:class:`JsonlError` naming ``path:line``. ``tolerate_torn_tail=True`` accepts (and drops) an
unterminated, undecodable *last* line, which is what a crash in the middle of an append leaves;
a bad line anywhere else is still an error. ``write_jsonl`` writes to a temporary file and renames
it, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator


class JsonlError(ValueError):
    """A JSONL line is not a JSON object; the message starts with ``path:line``."""


def dumps(row: dict[str, Any]) -> str:
    """One JSONL line (UTF-8 text kept readable, no trailing newline)."""
    return json.dumps(row, ensure_ascii=False)


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(1-based line number, row)`` for each non-blank line of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    torn_candidate = len(lines) - 1 if not text.endswith("\n") else None  # index of an unterminated last line
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if tolerate_torn_tail and index == torn_candidate:
                return
            raise JsonlError(f"{path}:{index + 1}: not valid JSON ({err.msg}); expected one JSON object per line") from None
        if not isinstance(row, dict):
            raise JsonlError(f"{path}:{index + 1}: expected a JSON object, got {type(row).__name__}")
        yield index + 1, row


def load_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False) -> list[dict[str, Any]]:
    return [row for _, row in read_jsonl(path, tolerate_torn_tail=tolerate_torn_tail)]


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` atomically (temporary file, then rename); return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
            count += 1
    tmp.replace(path)
    return count


def append_jsonl(path: str | Path, row: dict[str, Any]) -> None:
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(dumps(row) + "\n")
