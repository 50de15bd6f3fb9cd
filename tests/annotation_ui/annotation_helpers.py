"""Helpers shared by the annotation tests (imported by name: tests/annotation_ui has no __init__)."""
from __future__ import annotations

import json
from pathlib import Path


def make_items(n: int, n_responses: int = 4, prefix: str = "p", lang: str = "en") -> list[dict]:
    items = []
    for i in range(n):
        row = {"id": f"{prefix}{i}", "lang": lang, "category": ["qa", "code", "chat"][i % 3],
               "responses": [f"response {k} to prompt {i}" for k in range(n_responses)]}
        if i % 2:
            row["messages"] = [{"role": "user", "content": f"first turn {i}"},
                               {"role": "assistant", "content": "ok"},
                               {"role": "user", "content": f"question {i}?"}]
        else:
            row["prompt"] = f"question {i}?"
        items.append(row)
    return items


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def rank_all(item: dict, order: list[int] | None = None) -> dict:
    """Ranks for a next_item payload: by position in `order` (default: as listed, 1..n)."""
    ids = [r["id"] for r in item["responses"]]
    ranks = order or list(range(1, len(ids) + 1))
    return {str(i): r for i, r in zip(ids, ranks)}
