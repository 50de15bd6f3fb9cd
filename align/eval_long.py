"""Needle retrieval by context length and needle depth (the world's ``long`` eval split).

    python -m align.eval_long --model runs/sft-tiny-long/model [--out DIR] [--max-tokens 8192]

Each eval row of the world's ``long`` split (:mod:`world.long`) hides one sentence -- "The code of
X's locker is 123456." -- at a known depth of a long filler text and asks for the code; the rows
form a grid of lengths (1k, 2k, 4k, ... approx tokens: ``meta.target_tokens``) x depths (0 = start,
1 = end). The model answers greedily (:func:`align.sft.generate_reply`, both architectures) and an
answer is correct when it states the code (:func:`world.judge.answer_is_correct` with
``meta.answers``). A row's depth cell is its rank among the rows of its length (the grid has every
depth at every length), labelled with the cell's mean ``meta.depth``.

Rows longer than the model's positions (or ``--max-tokens``) are skipped and counted, not failed.
Writes ``eval_long.json`` (accuracy per cell, per length, overall; tokens per cell; skipped rows)
and ``eval_long.png`` (a length x depth heatmap of accuracy, skipped cells blank) to ``--out``
(default: the model directory's parent).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from common.cli import run_main
from common.errors import UserError
from common.jsonl import JsonlError, read_jsonl


def needle_rows(path: str | Path) -> list[dict]:
    """The needle rows of a ``long`` eval file; an error naming the file and line for a row without
    ``messages`` or ``meta.answers``/``target_tokens``/``depth``."""
    rows = []
    try:
        for line, row in read_jsonl(path):
            if row.get("task", "needle") != "needle":
                continue
            meta = row.get("meta")
            if not isinstance(row.get("messages"), list) or not isinstance(meta, dict) or \
                    not all(k in meta for k in ("answers", "target_tokens", "depth")):
                raise UserError(f"{path}:{line}: expected a needle row with 'messages' and meta.answers, "
                                f"meta.target_tokens and meta.depth (world.long's eval rows)")
            rows.append(row)
    except JsonlError as err:
        raise UserError(str(err)) from None
    if not rows:
        raise UserError(f"{path}: no needle rows")
    return rows


def depth_cells(rows: list[dict]) -> list[int]:
    """Each row's depth cell: its rank by ``meta.depth`` among the rows of its length."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_length[int(row["meta"]["target_tokens"])].append(i)
    cells = [0] * len(rows)
    for indices in by_length.values():
        for rank, i in enumerate(sorted(indices, key=lambda i: (rows[i]["meta"]["depth"], i))):
            cells[i] = rank
    return cells


def evaluate_needles(model, tokenizer, rows: list[dict], max_tokens: int | None = None,
                     max_new_tokens: int = 32, progress: bool = True) -> dict[str, Any]:
    """Accuracy per (length, depth cell), per length and overall; rows whose prompt exceeds the
    model's positions (less ``max_new_tokens``) or ``max_tokens`` are skipped and counted."""
    from tqdm.auto import tqdm

    from world.judge import answer_is_correct

    from .sft import generate_reply

    architecture = getattr(model.config, "architecture", "glm4")
    limit = model.config.max_position_embeddings - max_new_tokens - 2
    if max_tokens:
        limit = min(limit, max_tokens)
    cells = depth_cells(rows)
    table: dict[tuple[int, int], dict[str, Any]] = {}
    skipped = []
    model.eval()
    for row, cell in tqdm(list(zip(rows, cells)), desc="needles", disable=not progress):
        length = int(row["meta"]["target_tokens"])
        prompt = row["messages"][:-1] if row["messages"][-1]["role"] == "assistant" else row["messages"]
        tokens = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True)["input_ids"])
        entry = table.setdefault((length, cell), {"length": length, "depth_cell": cell, "depths": [], "tokens": [],
                                                  "n": 0, "correct": 0})
        entry["depths"].append(float(row["meta"]["depth"]))
        entry["tokens"].append(tokens)
        if tokens > limit:
            skipped.append(row.get("id", f"row {len(skipped)}"))
            continue
        reply = generate_reply(model, tokenizer, row["messages"], architecture, max_new_tokens)
        entry["n"] += 1
        entry["correct"] += int(answer_is_correct(reply, row["meta"]["answers"]))
    return summarise(table, skipped, limit)


def summarise(table: dict, skipped: list, limit: int) -> dict[str, Any]:
    cells = []
    for (length, cell), e in sorted(table.items()):
        cells.append({"length": length, "depth_cell": cell, "depth": round(sum(e["depths"]) / len(e["depths"]), 3),
                      "tokens": round(sum(e["tokens"]) / len(e["tokens"])), "n": e["n"], "correct": e["correct"],
                      "accuracy": e["correct"] / e["n"] if e["n"] else None})
    by_length = {}
    for length in sorted({c["length"] for c in cells}):
        n = sum(c["n"] for c in cells if c["length"] == length)
        correct = sum(c["correct"] for c in cells if c["length"] == length)
        by_length[str(length)] = {"n": n, "accuracy": correct / n if n else None}
    n = sum(c["n"] for c in cells)
    return {"accuracy": sum(c["correct"] for c in cells) / n if n else None, "n": n, "skipped": len(skipped),
            "skipped_ids": skipped, "token_limit": limit, "lengths": sorted({c["length"] for c in cells}),
            "depth_cells": sorted({c["depth_cell"] for c in cells}), "by_length": by_length, "cells": cells}


def plot_heatmap(result: dict[str, Any], out_png: str | Path, title: str = "") -> Path:
    """Accuracy heatmap: depth cells (rows, 0 = needle at the start) x lengths (columns); skipped
    cells blank, each cell labelled with its accuracy and count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lengths, depths = result["lengths"], result["depth_cells"]
    grid = np.full((len(depths), len(lengths)), np.nan)
    labels = {}
    for c in result["cells"]:
        r, k = depths.index(c["depth_cell"]), lengths.index(c["length"])
        if c["accuracy"] is not None:
            grid[r, k] = c["accuracy"]
        labels[(r, k)] = (f"{c['accuracy']:.2f}\n(n={c['n']})" if c["accuracy"] is not None else "skipped", c["depth"])
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2, 0.8 * len(depths) + 1.6))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    for (r, k), (text, _) in labels.items():
        ax.text(k, r, text, ha="center", va="center", fontsize=8)
    depth_of = {c["depth_cell"]: c["depth"] for c in result["cells"]}
    ax.set_xticks(range(len(lengths)), [f"{n // 1000}k" if n >= 1000 else str(n) for n in lengths])
    ax.set_yticks(range(len(depths)), [f"{depth_of[d]:.2f}" for d in depths])
    ax.set_xlabel("context length (approx tokens)")
    ax.set_ylabel("needle depth")
    ax.set_title(title or "needle retrieval accuracy")
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)


def evaluate(args) -> dict[str, Any]:
    from glm_base.loading import load_model_and_tokenizer

    from .sft_data import default_files

    model, tokenizer = load_model_and_tokenizer(args.model, what="--model", eval_mode=True)
    data = args.data or default_files("long", args.world_scale, args.world_seed)[1]
    rows = needle_rows(data)
    result = evaluate_needles(model, tokenizer, rows, args.max_tokens, args.max_new_tokens)
    result = {"model": str(args.model), "data": str(data), **result}
    out = Path(args.out) if args.out else Path(args.model).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_long.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_heatmap(result, out / "eval_long.png", f"needle retrieval, {'/'.join(Path(args.model).resolve().parts[-2:])}")
    accuracy = "n/a" if result["accuracy"] is None else f"{result['accuracy']:.3f}"
    print(f"needle accuracy {accuracy} over {result['n']} rows ({result['skipped']} skipped); "
          f"wrote {out / 'eval_long.json'} and {out / 'eval_long.png'}")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align.eval_long", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model directory (a run's model/ or checkpoints/step-N/)")
    parser.add_argument("--data", default=None, help="needle eval JSONL (default: the world's long eval split)")
    parser.add_argument("--world-scale", default="tiny", choices=["tiny", "small", "medium"])
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None, help="skip prompts longer than this (tokens)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", default=None, help="output directory (default: the model directory's parent)")
    args = parser.parse_args(argv)
    run_main(lambda: evaluate(args))


if __name__ == "__main__":
    main()
