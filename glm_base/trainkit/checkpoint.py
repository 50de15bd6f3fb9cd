"""Checkpoints: a Hugging Face model directory plus the training state for exact resume.

Words: a *model directory* is a Hugging Face directory (``config.json``, weights, tokenizer) that
``from_pretrained`` loads; a *checkpoint* is a model directory of a training step that also holds
the training state for exact resume. Layout of ``RUN/checkpoints/step-0000100/``::

    config.json, model.safetensors, tokenizer files   <- the trained model (from_pretrained)
    value/ (any other named model, e.g. PPO's critic)  <- from_pretrained, or model.safetensors
    train_state/                                       <- accelerate: optimizers, schedulers, RNG, models
    trainer_state.json                                 <- step, data position, signature, loop extras

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
from typing import Any, Callable, Mapping

from common.errors import UserError

logger = logging.getLogger(__name__)


class ResumeMismatch(UserError):
    """The run's config changed a field that fixes the data order since the checkpoint was saved."""


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


def _save_model(accelerator, model, out_dir: Path, state_dict) -> None:
    """HF ``save_pretrained`` where the model has it; else its weights as ``model.safetensors``
    (a value head or another plain module; main process only)."""
    unwrapped = accelerator.unwrap_model(model)
    if hasattr(unwrapped, "save_pretrained"):
        unwrapped.save_pretrained(out_dir, state_dict=state_dict)
        return
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(out_dir / "model.safetensors"))


def save_models(accelerator, model, tokenizer, out_dir: Path, extra_models: Mapping[str, Any] | None = None,
                files: Mapping[str, Callable[[Path], Any]] | None = None) -> None:
    """``model`` (and ``tokenizer``) at the top of ``out_dir``; each of ``extra_models`` in
    ``out_dir/<name>/``; each of ``files`` (name -> writer of that path) next to the model, such as
    the knowledge a reward model reads. Collective: every process takes part in gathering sharded
    weights."""
    models = {"": model, **dict(extra_models or {})}
    states = {name: accelerator.get_state_dict(m) for name, m in models.items()}
    if accelerator.is_main_process:
        for name, m in models.items():
            target = out_dir / name if name else out_dir
            target.mkdir(parents=True, exist_ok=True)
            _save_model(accelerator, m, target, states[name])
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)
        for name, write in (files or {}).items():
            write(out_dir / name)
    accelerator.wait_for_everyone()


def save_checkpoint(accelerator, model, tokenizer, run_dir: str | Path, step: int,
                    trainer_state: dict[str, Any], keep_last: int = 2,
                    extra_models: Mapping[str, Any] | None = None,
                    files: Mapping[str, Callable[[Path], Any]] | None = None) -> Path:
    """Write a checkpoint for optimizer step ``step`` (collective: call on every process).

    ``model`` is saved at the top of the step directory (loadable with ``from_pretrained``), each of
    ``extra_models`` (``{"value": critic}``) in a subdirectory of its name; ``train_state/`` holds
    accelerate's state of *every* prepared model, optimizer and registered object, so resume
    restores all of them.
    """
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "train_state"))
    save_models(accelerator, model, tokenizer, tmp, extra_models, files)
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(checkpoint: str | Path) -> dict[str, Any]:
    state_file = Path(checkpoint) / "trainer_state.json"
    if not state_file.is_file():
        raise FileNotFoundError(f"{checkpoint} is not a complete checkpoint (no trainer_state.json)")
    return json.loads(state_file.read_text())


def check_signature(checkpoint: str | Path, saved: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """Refuse to resume when a field that fixes the data order differs from the checkpoint's."""
    if saved is None:
        return
    differing = {k: (saved.get(k), v) for k, v in current.items() if k in saved and saved[k] != v}
    if differing:
        detail = "; ".join(f"{k}: checkpoint {old!r}, now {new!r}" for k, (old, new) in differing.items())
        raise ResumeMismatch(
            f"cannot resume from {checkpoint}: {detail}. These fields fix the data order; set them back, "
            f"or start a new run (another output_dir, or overwrite=true)")


def load_checkpoint(accelerator, checkpoint: str | Path, signature: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Restore every prepared model, optimizer, scheduler and the RNG from ``checkpoint``; return its
    trainer state. With ``signature`` (the fields that fix the data order: batch size, accumulation,
    seed, max length), a checkpoint saved with other values is refused naming the differing fields."""
    checkpoint = Path(checkpoint)
    state = read_trainer_state(checkpoint)
    if signature is not None:
        check_signature(checkpoint, state.get("signature"), signature)
    accelerator.load_state(str(checkpoint / "train_state"))
    return state


def save_final_model(accelerator, model, tokenizer, out_dir: str | Path,
                     extra_models: Mapping[str, Any] | None = None,
                     files: Mapping[str, Callable[[Path], Any]] | None = None) -> Path:
    """The run's final model(s) as plain HF directories (collective)."""
    out_dir = Path(out_dir)
    save_models(accelerator, model, tokenizer, out_dir, extra_models, files)
    return out_dir
