"""Tiny random GLM models for the align tests (hidden 64, 2 layers); nothing is downloaded."""

from __future__ import annotations

import torch

from glm_base import GLMConfig, GLMForCausalLM

VOCAB = 48


def tiny_model(architecture: str, seed: int = 0, vocab_size: int = VOCAB) -> GLMForCausalLM:
    """A tiny ``GLMForCausalLM`` with weights scaled up so its distributions are far from uniform."""
    torch.manual_seed(seed)
    config = GLMConfig(architecture=architecture, vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, max_position_embeddings=128, initializer_range=0.2)
    return GLMForCausalLM(config).eval()
