"""Run setup and teardown shared by every trainer: what happens before the first step and after
the last, so each entry point's own file shows only its loop.

    run = start_run(cfg, "sft")                 # accelerator, logging, seeds, run directory, config.yaml
    with run.main_process_first():
        files = world_files(...)                # the main process builds the default data, others wait
    ...build model, optimizer; accelerator.prepare(...)
    state = run.resume(cfg.signature(max_length=...))   # restores every prepared object; {} when fresh
    for step in range(run.start_step + 1, cfg.max_steps + 1):
        ... train_step(...); run.metrics.log(step, ...)
        if run.should_save(step): run.save(step, model, tokenizer, {"data_position": ...})
    run.finish(model, tokenizer, summary)       # final model/, summary.json, end of training

Output-directory policy: a fresh run refuses a directory that already holds files (an old run's
later checkpoints would otherwise be kept, ``keep_last`` would delete the new ones and a later
resume would load the old run), unless ``resume=true`` (continue it) or ``overwrite=true`` (delete
its contents first).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from accelerate.utils import set_seed

from common.cli import run_main
from common.config import load_config, save_config
from common.errors import UserError

from .accel import make_accelerator
from .args import TrainArgs
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final_model
from .metrics import MetricLogger
from .steps import NonFiniteLoss

logger = logging.getLogger(__name__)


class RunDirNotEmpty(UserError):
    """A fresh run was pointed at a directory that holds another run."""


def check_output_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a non-empty ``run_dir`` for a fresh run (see the module docstring)."""
    if resume or overwrite or not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunDirNotEmpty(f"output_dir {run_dir} is a file, not a directory")
    entries = sorted(p.name for p in run_dir.iterdir())
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise RunDirNotEmpty(
            f"output_dir {run_dir} already holds a run ({shown}); pass resume=true to continue it, "
            f"overwrite=true to replace it, or choose another output_dir")


def clear_dir(run_dir: Path) -> None:
    for entry in run_dir.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def open_run_dir(cfg: TrainArgs) -> Path:
    """Empty the run directory under ``overwrite=true``, create it, write the resolved ``config.yaml``
    (main process only; call :func:`check_output_dir` first, on every process)."""
    run_dir = Path(cfg.output_dir)
    if cfg.overwrite and run_dir.is_dir():
        logger.info("overwrite=true: deleting the contents of %s", run_dir)
        clear_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


@dataclass
class Run:
    """One training run: its accelerator, directory and metric log (see the module docstring)."""

    cfg: TrainArgs
    name: str
    accelerator: Any
    run_dir: Path
    start_step: int = 0
    metrics: MetricLogger | None = None
    signature: dict[str, Any] = field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def main_process_first(self):
        """Context in which the main process runs first and the others wait at a barrier (building
        the default data once, not once per process)."""
        return self.accelerator.main_process_first()

    def sampling_generator(self, device: str | torch.device = "cpu") -> torch.Generator:
        """A generator seeded by (seed, rank): sampling that must differ between processes (rollouts)
        yet repeat from run to run."""
        gen = torch.Generator(device=device)
        gen.manual_seed(self.cfg.seed * 1_000_003 + self.rank)
        return gen

    def resume(self, signature: Mapping[str, Any]) -> dict[str, Any]:
        """With ``resume=true``, restore every prepared object from the latest checkpoint (refusing one
        whose ``signature`` differs) and return its trainer state; ``{}`` for a fresh start. Opens
        the metric log either way (on resume, lines after the resumed step are dropped)."""
        self.signature = dict(signature)
        state: dict[str, Any] = {}
        if self.cfg.resume:
            checkpoint = latest_checkpoint(self.run_dir)
            if checkpoint is None:
                logger.warning("resume: no checkpoint in %s, starting from scratch", self.run_dir)
            else:
                state = load_checkpoint(self.accelerator, checkpoint, self.signature)
                self.start_step = int(state["step"])
                logger.info("resumed from %s at step %d", checkpoint, self.start_step)
        self.metrics = MetricLogger(self.run_dir, enabled=self.is_main,
                                    resume_step=self.start_step if self.cfg.resume else None)
        return state

    def should_eval(self, step: int) -> bool:
        return bool(self.cfg.eval_every and step % self.cfg.eval_every == 0) or step == self.cfg.max_steps

    def should_save(self, step: int) -> bool:
        return bool(self.cfg.save_every and step % self.cfg.save_every == 0) or step == self.cfg.max_steps

    def should_log(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def end_step(self, step: int, result, scheduler, window, progress, tokens: int = 0,
                 show: Mapping[str, str] | None = None, logged: Mapping[str, float] | None = None) -> None:
        """The bookkeeping every trainer does after an optimizer step: advance the LR schedule, add the
        step's :class:`StepResult` (and ``tokens``) to the metric ``window``, move the progress bar
        (loss, lr and ``show``), and on a log step write the window's means, the lr and ``logged``."""
        scheduler.step()
        window.add(result, tokens=tokens)
        lr = scheduler.get_last_lr()[0]
        progress.update(1)
        progress.set_postfix(loss=f"{result.loss:.3f}", lr=f"{lr:.2e}", **(show or {}))
        if self.should_log(step):
            self.metrics.log(step, {**window.flush(), "train/lr": lr, **(logged or {})})

    def save(self, step: int, model, tokenizer, trainer_state: Mapping[str, Any],
             extra_models: Mapping[str, Any] | None = None, files: Mapping[str, Callable[[Path], Any]] | None = None) -> Path:
        """A checkpoint of ``model`` (+ ``extra_models``, + ``files`` next to the model) with the
        trainer state and the signature."""
        state = {**trainer_state, "signature": self.signature}
        return save_checkpoint(self.accelerator, model, tokenizer, self.run_dir, step, state, self.cfg.keep_last,
                               extra_models=extra_models, files=files)

    def write_json(self, name: str, data: Any) -> Path | None:
        path = self.run_dir / name
        if self.is_main:
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    def finish(self, model, tokenizer, summary: Mapping[str, Any], extra_models: Mapping[str, Any] | None = None,
               plots: Sequence[Callable[[Path], Any]] = (),
               files: Mapping[str, Callable[[Path], Any]] | None = None) -> dict[str, Any]:
        """Save the final model(s) in ``model/``, write ``summary.json`` (with the process count) and
        the plots (each a function of the run directory, main process only). The process group is
        left to :func:`end_processes`, called once the trainer's (DDP-wrapped) models are gone."""
        save_final_model(self.accelerator, model, tokenizer, self.run_dir / "model", extra_models, files)
        summary = {**summary, "processes": self.world}
        self.write_json("summary.json", summary)
        if self.is_main:
            for plot in plots:
                plot(self.run_dir)
        if self.metrics is not None:
            self.metrics.close()
        self.accelerator.wait_for_everyone()
        return summary


def start_run(cfg: TrainArgs, name: str) -> Run:
    """Accelerator (precision, accumulation, CPU processes), logging, seeds, the run directory
    (policy in the module docstring) and its resolved ``config.yaml``."""
    grad_clip = getattr(getattr(cfg, "optim", None), "grad_clip", None)
    accelerator = make_accelerator(cfg.grad_accum, cfg.mixed_precision, grad_clip)
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dir = Path(cfg.output_dir)
    check_output_dir(run_dir, cfg.resume, cfg.overwrite)  # every process, before anyone writes
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        open_run_dir(cfg)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    return Run(cfg=cfg, name=name, accelerator=accelerator, run_dir=run_dir)


def end_processes() -> None:
    """Destroy the process group, after the models that hold it are freed.

    A DDP model's reducer holds the process group; destroying the group first (``end_training`` at
    the end of the loop, while the trainer still references its model) and the reducer afterwards
    made a gloo rank hang for ever in ``~ProcessGroupGloo`` when its peer had already exited. So the
    trainer returns, its models are collected, all ranks meet at a barrier, and the group goes."""
    import gc

    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train_main(config_cls: type, run_fn: Callable[[Any], Any], argv: list[str] | None, prog: str) -> Any:
    """``main()`` of a training entry point: load the config, run, and end a user error or a diverged
    loss with one ``error:`` line and exit status 2 (tracebacks are for bugs)."""

    def body():
        cfg = load_config(config_cls, argv, prog=prog)
        try:
            result = run_fn(cfg)
            end_processes()
            return result
        except NonFiniteLoss as err:
            last = latest_checkpoint(cfg.output_dir)
            raise UserError(
                f"the training {err.what} became NaN/inf at step {err.step}; stopped before the optimizer step. "
                f"Last good checkpoint: {last or 'none (no checkpoint was saved yet)'}. "
                f"Lower optim.lr, check the data, or resume from that checkpoint.") from None

    return run_main(body)
