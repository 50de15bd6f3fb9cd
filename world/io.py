"""Deterministic JSONL writing, splitting and seeding shared by every generator."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Callable, Iterable


def sub_rng(seed: int, name: str) -> random.Random:
    """An independent, reproducible RNG per component (string seeds hash with SHA-512, not hash())."""
    return random.Random(f"glm-align-world:{seed}:{name}")


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Write rows (one JSON object per line, UTF-8, ``\\n`` endings); return rows/bytes/sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(dumps(r) + "\n" for r in rows).encode("utf-8")
    path.write_bytes(data)
    return {
        "path": path.as_posix(),
        "rows": data.count(b"\n"),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def split(rows: list[dict[str, Any]], eval_fraction: float, rng: random.Random,
          key: Callable[[dict[str, Any]], Any] | None = None) -> tuple[list, list]:
    """Shuffle once, then put the first ``round(n * eval_fraction)`` rows (at least 1) in eval.

    With ``key``, the rows that share a key stay on one side: groups are shuffled and eval takes
    whole groups until it holds that many rows (a held-out row never asks what a training row asked)."""
    groups: list[list[dict[str, Any]]]
    if key is None:
        groups = [[row] for row in rows]
    else:
        by_key: dict[Any, list[dict[str, Any]]] = {}
        for row in rows:
            by_key.setdefault(key(row), []).append(row)
        groups = list(by_key.values())
    rng.shuffle(groups)
    n_eval = max(1, round(len(rows) * eval_fraction)) if rows else 0
    train: list = []
    evl: list = []
    for group in groups:
        (evl if len(evl) < n_eval else train).extend(group)
    return train, evl


def number_ids(rows: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Give rows ids ``{prefix}-{index:06d}`` as the first key, in order."""
    out = []
    for i, row in enumerate(rows):
        row = {k: v for k, v in row.items() if k != "id"}
        out.append({"id": f"{prefix}-{i:06d}", **row})
    return out
