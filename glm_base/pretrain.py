"""GLM blank-infilling pretraining on accelerate.

    python -m glm_base.pretrain --config configs/pretrain/tiny.yaml [key=value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml -m glm_base.pretrain --config ...

The same loop runs on a laptop CPU (fp32) and on many GPUs (bf16; DDP, FSDP or DeepSpeed ZeRO through
``configs/accelerate/*.yaml``). One optimizer step = ``grad_accum`` global micro-batches of
``batch_size`` documents; the loss is normalised by the number of target tokens in the whole step
(all micro-batches, all processes), so batch 8 x accumulation 1, batch 1 x accumulation 8 and one or
two processes give the same update.

The run directory holds ``config.yaml``, ``metrics.jsonl``, TensorBoard logs, ``checkpoints/``
(HF format + optimizer/scheduler/RNG/data position; ``resume: true`` continues exactly), the final
model in ``model/`` (HF format, with tokenizer), ``loss_curve.png`` and ``summary.json``.
A NaN/inf loss stops the run before the optimizer step, with the last good checkpoint kept.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .configuration import config_for_size
from .infilling import OBJECTIVES, BlankInfillingCollator
from .modeling import GLMForCausalLM
from .pretrain_data import (GlobalBatchStream, prepare_documents, shard_rows, streaming_source,
                            unigram_baseline)
from common.config import load_config, save_config
from .tokenizer import read_corpus, special_token_ids, train_tokenizer
from .trainkit.accel import LaunchError, make_accelerator
from .trainkit.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, save_final_model
from .trainkit.default_data import world_files
from .trainkit.metrics import MetricLogger, plot_curves
from .trainkit.optim import OptimArgs, build_optimizer
from .trainkit.steps import NonFiniteLoss, targets_only_loss, train_step

logger = logging.getLogger("glm_base.pretrain")


@dataclass
class ModelArgs:
    size: str = field(default="tiny", metadata={"help": "named size from glm_base.configuration.MODEL_SIZES"})
    architecture: str = field(default="glm4", metadata={"help": "glm1 | glm4"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "GLMConfig fields to override"})
    init_from: str | None = field(default=None, metadata={"help": "start from this HF checkpoint instead"})


@dataclass
class TokenizerArgs:
    path: str | None = field(default=None, metadata={"help": "tokenizer directory; None trains one on the corpus"})
    vocab_size: int = field(default=4000, metadata={"help": "vocabulary size when training a tokenizer"})


@dataclass
class DataArgs:
    train_files: list[str] = field(default_factory=list, metadata={"help": "JSONL/text files; empty = the world corpus"})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "held-out files; empty = the world's eval split"})
    world_size: str = field(default="tiny", metadata={"help": "world size used when no files are given"})
    text_field: str = field(default="text", metadata={"help": "JSONL field holding the text"})
    streaming: bool = field(default=False, metadata={"help": "stream the corpus instead of loading it"})
    shuffle_buffer: int = field(default=10000, metadata={"help": "shuffle buffer when streaming"})
    max_length: int = field(default=256, metadata={"help": "row length (Part A + Part B)"})
    mask_ratio: float = field(default=0.15, metadata={"help": "share of tokens masked"})
    poisson_lambda: float = field(default=3.0, metadata={"help": "span length Poisson mean"})
    objective_probs: dict[str, float] = field(
        default_factory=lambda: {"blank": 0.5, "sentence": 0.3, "document": 0.2},
        metadata={"help": "per-batch objective mix (GLM-10B's by default)"})
    pack_documents: bool = field(default=True, metadata={"help": "concatenate short documents into full rows"})
    num_workers: int = field(default=1, metadata={"help": "DataLoader workers collating ahead (0 or 1)"})


@dataclass
class PretrainConfig:
    """GLM blank-infilling pretraining (glm_base.pretrain)."""

    output_dir: str = field(default="runs/pretrain", metadata={"help": "run directory"})
    seed: int = field(default=0, metadata={"help": "seed for init, data order and masks"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=16, metadata={"help": "documents per global micro-batch (all processes)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    model: ModelArgs = field(default_factory=ModelArgs)
    tokenizer: TokenizerArgs = field(default_factory=TokenizerArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    eval_every: int = field(default=50, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    eval_batches: int = field(default=4, metadata={"help": "eval micro-batches per objective"})
    save_every: int = field(default=100, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    keep_last: int = field(default=2, metadata={"help": "checkpoints kept"})
    log_every: int = field(default=10, metadata={"help": "log train metrics every N steps"})
    resume: bool = field(default=False, metadata={"help": "continue from the run's latest checkpoint"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | no | bf16 | fp16"})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "recompute activations in backward"})

    def __post_init__(self):
        if self.batch_size < 1 or self.grad_accum < 1 or self.max_steps < 1:
            raise ValueError("batch_size, grad_accum and max_steps must be >= 1")
        if self.data.num_workers not in (0, 1):
            raise ValueError("data.num_workers must be 0 or 1 (batches are built in one deterministic order)")


# --- setup pieces ----------------------------------------------------------------------------

def resolve_files(data: DataArgs, seed: int) -> tuple[list[str], list[str]]:
    if data.train_files:
        return list(data.train_files), list(data.eval_files)
    train, evaluation = world_files("corpus", size=data.world_size, seed=seed)
    return [train], list(data.eval_files) or [evaluation]


def load_or_train_tokenizer(cfg: PretrainConfig, train_files: list[str], accelerator: Accelerator):
    from transformers import AutoTokenizer

    if cfg.model.init_from and not cfg.tokenizer.path:
        return AutoTokenizer.from_pretrained(cfg.model.init_from)
    if cfg.tokenizer.path:
        return AutoTokenizer.from_pretrained(cfg.tokenizer.path)
    out = Path(cfg.output_dir) / "tokenizer"
    if accelerator.is_main_process and not (out / "tokenizer.json").is_file():
        logger.info("training a %d-token tokenizer on %s", cfg.tokenizer.vocab_size, train_files)
        train_tokenizer(read_corpus(train_files, cfg.data.text_field), cfg.tokenizer.vocab_size, out_dir=out)
    accelerator.wait_for_everyone()
    return AutoTokenizer.from_pretrained(out)


def build_model(cfg: PretrainConfig, tokenizer) -> GLMForCausalLM:
    ids = special_token_ids(tokenizer)
    if cfg.model.init_from:
        model = GLMForCausalLM.from_pretrained(cfg.model.init_from)
        if model.config.vocab_size < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        return model
    overrides = dict(cfg.model.overrides)
    overrides.setdefault("vocab_size", len(tokenizer))
    config = config_for_size(cfg.model.size, architecture=cfg.model.architecture, pad_token_id=ids.pad,
                             eos_token_id=ids.eos, **overrides)
    if cfg.data.max_length > config.max_position_embeddings:
        raise ValueError(f"data.max_length={cfg.data.max_length} exceeds the model's max_position_embeddings="
                         f"{config.max_position_embeddings}")
    return GLMForCausalLM(config)


# --- evaluation --------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, accelerator, eval_docs, tokenizer, cfg: PretrainConfig, baseline_token: int) -> dict[str, float]:
    """Loss and masked-token accuracy per objective on fixed held-out batches.

    Accuracy counts span tokens only (``<eop>`` targets are excluded), compared with the unigram
    baseline that always predicts the training corpus's most frequent token.
    """
    model.eval()
    eop = special_token_ids(tokenizer).eop
    results: dict[str, float] = {}
    for objective in OBJECTIVES:
        collator = BlankInfillingCollator(tokenizer, max_length=cfg.data.max_length, mask_ratio=cfg.data.mask_ratio,
                                          poisson_lambda=cfg.data.poisson_lambda, objective_probs={objective: 1.0},
                                          seed=cfg.seed + 1)
        totals = torch.zeros(5, dtype=torch.float64)  # loss sum, targets, correct, masked tokens, baseline hits
        for b in range(cfg.eval_batches):
            start = b * cfg.batch_size
            docs = [eval_docs[(start + i) % len(eval_docs)] for i in range(cfg.batch_size)]
            collator.calls = b
            batch = shard_rows(collator([{"input_ids": d} for d in docs]), accelerator.process_index,
                               accelerator.num_processes)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            targets = batch.pop("shift_labels")
            with accelerator.autocast():
                logits = model(**batch).logits.float()
            valid = targets != -100
            loss = torch.nn.functional.cross_entropy(logits[valid], targets[valid], reduction="sum")
            span_tokens = valid & (targets != eop)
            predictions = logits.argmax(-1)
            totals += torch.tensor([loss.item(), valid.sum().item(),
                                    (predictions == targets)[span_tokens].sum().item(), span_tokens.sum().item(),
                                    (targets[span_tokens] == baseline_token).sum().item()], dtype=torch.float64)
        totals = accelerator.reduce(totals.to(accelerator.device), reduction="sum").cpu()
        results[f"eval/{objective}/loss"] = totals[0].item() / max(totals[1].item(), 1)
        results[f"eval/{objective}/accuracy"] = totals[2].item() / max(totals[3].item(), 1)
        results[f"eval/{objective}/unigram_accuracy"] = totals[4].item() / max(totals[3].item(), 1)
    weights = {o: p for o, p in cfg.data.objective_probs.items() if p > 0}
    total = sum(weights.values())
    results["eval/loss"] = sum(results[f"eval/{o}/loss"] * w for o, w in weights.items()) / total
    model.train()
    return results


# --- the loop ------------------------------------------------------------------------------------

def run(cfg: PretrainConfig) -> dict[str, Any]:
    accelerator = make_accelerator(cfg.grad_accum, cfg.mixed_precision)
    run_dir = Path(cfg.output_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(cfg.seed)

    train_files, eval_files = resolve_files(cfg.data, cfg.seed)
    tokenizer = load_or_train_tokenizer(cfg, train_files, accelerator)
    model = build_model(cfg, tokenizer)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    collator = BlankInfillingCollator(tokenizer, max_length=cfg.data.max_length, mask_ratio=cfg.data.mask_ratio,
                                      poisson_lambda=cfg.data.poisson_lambda,
                                      objective_probs=cfg.data.objective_probs, seed=cfg.seed)
    ids = special_token_ids(tokenizer)
    eval_docs, eval_counts = prepare_documents(eval_files, tokenizer, collator, cfg.data.text_field,
                                               pack=cfg.data.pack_documents)
    if cfg.data.streaming:
        train_docs, train_counts = None, {"streaming": 1}
        source = streaming_source(train_files, tokenizer, collator, cfg.data.text_field, cfg.seed,
                                  cfg.data.shuffle_buffer, pack=cfg.data.pack_documents)
        baseline_token = unigram_baseline(eval_docs, ids.all)
    else:
        train_docs, train_counts = prepare_documents(train_files, tokenizer, collator, cfg.data.text_field,
                                                     pack=cfg.data.pack_documents)
        source = None
        baseline_token = unigram_baseline(train_docs, ids.all)
    logger.info("train data: %s; eval data: %s", train_counts, eval_counts)

    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, by us

    start_step, position, tokens_seen = 0, 0, 0
    if cfg.resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            logger.warning("resume: no checkpoint in %s, starting from scratch", run_dir)
        else:
            state = load_checkpoint(accelerator, checkpoint)
            start_step, position, tokens_seen = state["step"], state["data_position"], state["tokens_seen"]
            logger.info("resumed from %s at step %d", checkpoint, start_step)
    metrics = MetricLogger(run_dir, enabled=accelerator.is_main_process,
                           resume_step=start_step if cfg.resume else None)

    stream = GlobalBatchStream(train_docs, collator, cfg.batch_size, cfg.seed, start=position,
                               streaming_source=source)
    batches = iter(DataLoader(stream, batch_size=None, num_workers=cfg.data.num_workers,
                              prefetch_factor=4 if cfg.data.num_workers else None))
    world, rank = accelerator.num_processes, accelerator.process_index

    def trainer_state(step: int) -> dict[str, Any]:
        return {"data_position": position, "tokens_seen": tokens_seen, "data": train_counts}

    model.train()
    progress = tqdm(total=cfg.max_steps, initial=start_step, desc="pretrain", disable=not accelerator.is_main_process,
                    dynamic_ncols=True)
    window = {"loss": 0.0, "steps": 0, "time": time.perf_counter(), "tokens": 0}
    last_eval: dict[str, float] = {}
    grad_norm = None
    step = start_step
    for step in range(start_step + 1, cfg.max_steps + 1):
        micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
        position += cfg.grad_accum
        step_targets = sum(int((mb["shift_labels"] != -100).sum()) for mb in micro_batches)
        tokens = sum(int(mb["attention_mask"].sum()) for mb in micro_batches)
        tokens_seen += tokens
        window["tokens"] += tokens
        local_batches = [{k: v.to(accelerator.device) for k, v in shard_rows(mb, rank, world).items()}
                         for mb in micro_batches]
        try:
            step_loss, grad_norm = train_step(accelerator, model, optimizer, local_batches, step_targets,
                                              cfg.optim.grad_clip, loss_fn=targets_only_loss)
        except NonFiniteLoss as err:
            err.step = step
            raise
        scheduler.step()
        window["loss"] += step_loss
        window["steps"] += 1
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")

        if step % cfg.log_every == 0 or step == cfg.max_steps:
            elapsed = time.perf_counter() - window["time"]
            entry = {"train/loss": window["loss"] / window["steps"], "train/lr": scheduler.get_last_lr()[0],
                     "train/tokens_per_s": window["tokens"] / max(elapsed, 1e-9), "train/tokens_seen": tokens_seen}
            if grad_norm is not None:
                entry["train/grad_norm"] = float(grad_norm)
            metrics.log(step, entry)
            window = {"loss": 0.0, "steps": 0, "time": time.perf_counter(), "tokens": 0}
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps:
            last_eval = evaluate(model, accelerator, eval_docs, tokenizer, cfg, baseline_token)
            metrics.log(step, last_eval)
            progress.write(f"step {step}: " + ", ".join(f"{k.removeprefix('eval/')} {v:.3f}"
                                                        for k, v in last_eval.items() if "unigram" not in k))
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
            save_checkpoint(accelerator, model, tokenizer, run_dir, step, trainer_state(step), cfg.keep_last)
    progress.close()

    save_final_model(accelerator, model, tokenizer, run_dir / "model")
    summary = {"steps": step, "processes": world, "tokens_seen": tokens_seen, "train_data": train_counts,
               "eval_data": eval_counts, "baseline_token": tokenizer.convert_ids_to_tokens(baseline_token), **last_eval}
    if accelerator.is_main_process:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        plot_curves(run_dir / "metrics.jsonl", run_dir / "loss_curve.png",
                    ["train/loss", "eval/loss", "eval/blank/loss", "eval/sentence/loss", "eval/document/loss"],
                    title=f"GLM pretraining ({cfg.model.architecture}, {cfg.model.size})")
    metrics.close()
    accelerator.end_training()
    return summary


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(PretrainConfig, argv, prog="python -m glm_base.pretrain")
    try:
        run(cfg)
    except NonFiniteLoss as err:
        last = latest_checkpoint(cfg.output_dir)
        raise SystemExit(
            f"error: the training loss became NaN/inf at step {err.step}; stopped before the optimizer step. "
            f"Last good checkpoint: {last or 'none (no checkpoint was saved yet)'}. "
            f"Lower optim.lr, check the data, or resume from that checkpoint."
        ) from None
    except LaunchError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
