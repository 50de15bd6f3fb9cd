"""Shared pieces of the benchmarks: result files, machine description, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # other work on the machine skews absolute figures (ratios within one run less so)
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def write_result(name: str, result: dict) -> Path:
    """Write ``bench/results/NAME.json`` with a timestamp and the machine, and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **result}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Seconds of the fastest of ``repeats`` calls after ``warmup`` calls (least disturbed by noise)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_flops(size: int = 1024, repeats: int = 10) -> float:
    """This CPU's achieved fp32 matmul FLOP/s (the ceiling a training step can approach)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    seconds = best_time(lambda: torch.mm(a, b), repeats, warmup=3)
    return 2 * size**3 / seconds


def random_glm4(hidden: int, layers: int, heads: int, vocab: int, max_positions: int, seed: int = 0):
    """``(model, tokenizer)``: a random GLM-4-variant ``GLMForCausalLM`` (2 KV heads, MLP 4 x hidden,
    weights from ``seed``) with a byte-level BPE tokenizer of ``vocab`` trained on the tiny world's corpus."""
    import torch

    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForCausalLM
    from glm_base.tokenizer import read_corpus, special_token_ids, train_tokenizer
    from world.default import world_files

    corpus, _ = world_files("corpus")
    tokenizer = train_tokenizer(read_corpus([corpus]), vocab)
    ids = special_token_ids(tokenizer)
    torch.manual_seed(seed)
    config = config_for_size("tiny", architecture="glm4", vocab_size=len(tokenizer), hidden_size=hidden,
                             num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=2,
                             intermediate_size=4 * hidden, max_position_embeddings=max_positions,
                             pad_token_id=ids.pad, eos_token_id=ids.eos)
    return GLMForCausalLM(config), tokenizer
