"""Helpers for the reward-model tests (imported by name): a tiny model directory and preference rows.

The model directory holds a randomly initialised GLM-4-variant causal LM (hidden 32, 2 layers) and a
byte-level BPE tokenizer trained here in well under a second: nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TEXTS = [
    "The river town sits where two valleys meet. Its bridge was built in 1887 from grey stone.",
    "Every spring the farmers bring apples, pears and honey to the market on the square.",
    "How much do 4 clocks cost in total? They cost 640 coins.",
    "Sorry, I can't help with that request. Here is the answer: Paris is a city.",
    "青石镇坐落在两条山谷交汇的地方。镇上的石桥建于一八八七年。",
    "每年春天，农民们把苹果、梨和蜂蜜带到广场上的集市。",
]


def tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """A model directory (causal LM + tokenizer) for ``model.init_from``."""
    from glm_base import GLMConfig, GLMForCausalLM
    from glm_base.tokenizer import special_token_ids, train_tokenizer

    tokenizer = train_tokenizer(TEXTS * 4, vocab_size=400)
    ids = special_token_ids(tokenizer)
    torch.manual_seed(seed)
    config = GLMConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=256, pad_token_id=ids.pad,
                       eos_token_id=ids.eos)
    GLMForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def ranked_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` rows with 2..4 responses each (so prompts have 1..6 pairs) and ties; the best response
    says "good", worse ones get longer filler, so a model can learn them quickly."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = 2 + i % 3
        responses = [f"good answer {i}."] + [f"bad answer {i}.{j} " + "filler " * (j + rng.randint(0, 2)) for j in range(1, k)]
        ranking = [1] + [2 + (j - 1) // 2 for j in range(1, k)]  # responses 1 and 2 tie
        rows.append({"id": f"r{i}", "lang": ["en", "zh"][i % 2], "category": ["help", "safe"][(i // 2) % 2],
                     "prompt": f"question {i}?", "responses": responses, "ranking": ranking})
    return rows
