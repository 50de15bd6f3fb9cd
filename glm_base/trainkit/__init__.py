"""Pieces shared by every training entry point (pretrain, cloze, SFT, reward model, PPO).

Each entry point keeps its own explicit loop (setup, loop, evaluate, save, visible in its file);
only what is truly shared lives here. The kit knows no model and no data.

- ``args``: :class:`TrainArgs`, the run fields every config extends.
- ``run``: :func:`start_run` -> :class:`Run` (accelerator, logging, seeds, run-directory policy,
  resume with a data-order signature, checkpoints, final save, summary) and :func:`train_main`.
- ``steps``: :func:`train_step`, one optimizer step whose loss function returns ``(loss, metrics)``,
  normalised by a count for the whole step (exact under accumulation and data parallelism).
- ``batches``: a deterministic, resumable stream of global micro-batches for any rows and collator.
- ``checkpoint``: model directories + training state, several named models per step.
- ``optim`` / ``schedule``: AdamW over decay / no-decay groups, warmup + cosine.
- ``metrics``: JSONL + TensorBoard logging, step windows, PNG curves and bar charts.
- ``accel``: the Accelerator (precision, CPU processes under torchrun, DeepSpeed clipping).
"""
