"""Checkpoints: a Hugging Face model directory plus the training state for exact resume.

Layout of ``RUN/checkpoints/step-0000100/``::

    config.json, model.safetensors, tokenizer files   <- loadable with from_pretrained
    train_state/                                       <- accelerate: optimizer, scheduler, RNG, model
    trainer_state.json                                 <- step, data position, anything the loop adds

A checkpoint is written to ``step-N.tmp`` and renamed when complete, so a crash mid-save never leaves
a half checkpoint that resume would pick; ``keep_last`` older checkpoints are kept.
Works under DDP, FSDP and DeepSpeed ZeRO: every process takes part in ``save_state`` and in gathering
the full state dict, and only the main process writes the HF files.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:07d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and
             (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(accelerator, model, tokenizer, run_dir: str | Path, step: int,
                    trainer_state: dict[str, Any], keep_last: int = 2) -> Path:
    """Write a checkpoint for optimizer step ``step`` (collective: call on every process)."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "train_state"))
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(tmp, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, checkpoint: str | Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG from ``checkpoint``; return its trainer state."""
    checkpoint = Path(checkpoint)
    state_file = checkpoint / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no trainer_state.json)")
    accelerator.load_state(str(checkpoint / "train_state"))
    return json.loads(state_file.read_text())


def save_final_model(accelerator, model, tokenizer, out_dir: str | Path) -> Path:
    """The run's final model as a plain HF directory (collective)."""
    out_dir = Path(out_dir)
    state_dict = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out_dir, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
    accelerator.wait_for_everyone()
    return out_dir
