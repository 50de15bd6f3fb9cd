"""Candidate responses sampled from a checkpoint (any transformers causal LM directory).

`python -m annotation_ui generate --db URL --checkpoint DIR --prompts FILE --n 4` reads prompts in
the import schema without responses ({"id", "lang", "category", "prompt" | "messages"}), samples n
responses per prompt with temperature/top-p, and adds them to the store as items to rank (model of
origin = the checkpoint's directory name unless --model-name is given). `--out FILE` also writes
them as import-schema JSONL.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .io import load_items
from .store import MAX_RESPONSES

log = logging.getLogger(__name__)


def _prompt_text(tok, item: dict) -> str:
    if item["messages"] is not None:
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(item["messages"], tokenize=False, add_generation_prompt=True)
        return "\n".join(f"{m['role']}: {m['content']}" for m in item["messages"]) + "\nassistant:"
    return item["prompt"]


def generate_candidates(checkpoint: str | Path, prompts: str | Path, *, n: int = 4, temperature: float = 0.8,
                        top_p: float = 0.95, max_new_tokens: int = 128, seed: int = 0,
                        model_name: str | None = None) -> list[dict]:
    """Sample n responses per prompt; return items in the import schema (with "models")."""
    import torch
    from tqdm import tqdm

    from glm_base.loading import load_model_and_tokenizer  # lazily: the app itself never imports torch

    if n < 2:
        raise ValueError(f"--n must be >= 2 (an item needs at least two responses to rank), got {n}")
    if n > MAX_RESPONSES:
        raise ValueError(f"--n must be <= {MAX_RESPONSES} (the app shows at most {MAX_RESPONSES} responses side by side), got {n}")
    items = load_items(prompts, need_responses=False)
    model, tok = load_model_and_tokenizer(checkpoint, what="--checkpoint", eval_mode=True)
    name = model_name or Path(checkpoint).resolve().name
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    torch.manual_seed(seed)
    out = []
    for item in tqdm(items, desc="generate", disable=len(items) < 5):
        text = _prompt_text(tok, item)
        enc = tok(text, return_tensors="pt", add_special_tokens=not getattr(tok, "chat_template", None) or item["messages"] is None)
        with torch.no_grad():
            gen = model.generate(
                **enc, do_sample=True, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                num_return_sequences=n, pad_token_id=pad_id,
            )
        new = gen[:, enc["input_ids"].shape[1]:]
        responses = [tok.decode(seq, skip_special_tokens=True).strip() for seq in new]
        row = {k: item[k] for k in ("id", "lang", "category")}
        row["prompt" if item["prompt"] is not None else "messages"] = item["prompt"] if item["prompt"] is not None else item["messages"]
        row["responses"] = responses
        row["models"] = [name] * n
        row["source"] = f"generate:{name}"
        out.append(row)
    return out


def write_jsonl(rows: list[dict], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
