"""Pieces shared by every training entry point (pretrain, cloze, SFT, reward model, PPO).

Each entry point keeps its own explicit loop; only what is truly shared lives here: the optimizer
(AdamW arguments, which parameters decay) and learning-rate schedule, metric logging (JSONL +
TensorBoard + PNG curves), checkpoints with exact resume, and the global-batch loss normalisation
that makes gradient accumulation and data parallelism exact.
"""
