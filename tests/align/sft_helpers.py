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
