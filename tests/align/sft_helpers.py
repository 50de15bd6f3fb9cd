"""Shared by the tests/align/test_sft_*.py files: a small tokenizer and a tiny random GLM model."""

from __future__ import annotations

import functools

CORPUS = [
    "Hi there. Hello! How are you? Fine, thanks. Bye, see you soon. Ciao.\n",
    "Where is the lighthouse? It stands on the northern cliff of Alder Bend.\n",
    "你好！灯塔在哪里？灯塔在北边的悬崖上。再见。\n",
    "The keeper lights the lamp at dusk, and the ferry runs twice on Sundays.\n",
] * 8


@functools.lru_cache(maxsize=1)
def small_tokenizer():
    """A byte-level BPE tokenizer with GLM's special tokens and chat template (trained in ~0.1 s)."""
    from glm_base.tokenizer import train_tokenizer

    return train_tokenizer(CORPUS, vocab_size=400)


def tiny_model(architecture: str, vocab_size: int, seed: int = 0):
    """A random 2-layer hidden-32 ``GLMForCausalLM`` in eval mode."""
    import torch

    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForCausalLM

    torch.manual_seed(seed)
    config = config_for_size("tiny", architecture=architecture, vocab_size=vocab_size, hidden_size=32,
                             num_attention_heads=4, max_position_embeddings=512)
    return GLMForCausalLM(config).eval()


def chat_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` short world-like chat rows alternating English and Chinese (with ``lang``), some multi-turn."""
    import random

    rng = random.Random(seed)
    en = [("Where is the lighthouse?", "It stands on the northern cliff of Alder Bend."),
          ("When does the ferry run?", "Twice on Sundays."), ("Hi there.", "Hello! How are you?"),
          ("Who lights the lamp?", "The keeper lights the lamp at dusk.")]
    zh = [("灯塔在哪里？", "灯塔在北边的悬崖上。"), ("你好！", "你好。再见。"), ("灯塔在哪里？", "在北边。")]
    rows = []
    for i in range(n):
        lang = "en" if i % 2 == 0 else "zh"
        pairs = en if lang == "en" else zh
        turns = [rng.choice(pairs) for _ in range(1 + (i % 3 == 0))]
        messages = [m for q, a in turns for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        rows.append({"id": f"row-{i}", "lang": lang, "messages": messages})
    return rows


def model_dir(path, architecture: str = "glm4", seed: int = 0, **overrides):
    """A tiny random GLM model directory with the small tokenizer (what align.sft loads)."""
    import torch

    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForCausalLM
    from glm_base.tokenizer import special_token_ids

    tok = small_tokenizer()
    ids = special_token_ids(tok)
    torch.manual_seed(seed)
    values = {"vocab_size": len(tok), "hidden_size": 32, "num_attention_heads": 4, "max_position_embeddings": 512,
              "pad_token_id": ids.pad, "eos_token_id": ids.eos, **overrides}
    GLMForCausalLM(config_for_size("tiny", architecture=architecture, **values)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def launch_two_processes(module: str, args: list[str], cwd) -> None:
    """``python -m module args`` as two data-parallel CPU processes (torchrun, gloo); as the
    ``launch_two_processes`` fixture of tests/glm_base/conftest.py, which tests/align cannot reach."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"two-process {module} failed:\n{done.stderr[-3000:]}")
