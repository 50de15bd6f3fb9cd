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

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from common.errors import UserError
from world.config import SIZES as WORLD_SIZES
from world.default import world_files

from .configuration import config_for_size
from .infilling import IGNORE_INDEX, OBJECTIVES, BlankInfillingCollator
from .modeling import GLMForCausalLM
from .pretrain_data import (StreamedBatchStream, hold_out, infilling_collate, prepare_documents,
                            streaming_source, unigram_baseline)
from .tokenizer import read_corpus, special_token_ids, train_tokenizer
from .trainkit.args import TrainArgs
from .trainkit.batches import GlobalBatchStream, PermutationSampler, shard_rows
from .trainkit.metrics import StepWindow, plot_curves
from .trainkit.optim import OptimArgs, build_optimizer
from .trainkit.run import Run, start_run, train_main
from .trainkit.steps import at_step, targets_only_loss, train_step

logger = logging.getLogger("glm_base.pretrain")


@dataclass
class ModelArgs:
    size: str = field(default="tiny", metadata={"help": "named size from glm_base.configuration.MODEL_SIZES"})
    architecture: str = field(default="glm4", metadata={"help": "glm1 | glm4", "choices": ["glm1", "glm4"]})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={"help": "GLMConfig fields to override"})
    init_from: str | None = field(default=None, metadata={"help": "start from this HF checkpoint instead"})


@dataclass
class TokenizerArgs:
    path: str | None = field(default=None, metadata={"help": "tokenizer directory; None trains one on the corpus"})
    vocab_size: int = field(default=4000, metadata={"help": "vocabulary size when training a tokenizer"})


@dataclass
class DataArgs:
    train_files: list[str] = field(default_factory=list, metadata={"help": "JSONL/text files; empty = the world corpus"})
    eval_files: list[str] = field(default_factory=list, metadata={"help": "held-out files; empty = the world's eval split, or eval_holdout documents of train_files"})
    eval_holdout: int = field(default=200, metadata={"help": "chunks held out of train_files for evaluation when no eval_files are given"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the synthetic world used when no files are given (tiny | small | medium)", "choices": list(WORLD_SIZES)})
    world_seed: int = field(default=0, metadata={"help": "seed of the synthetic world (kept apart from the training seed)"})
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
class PretrainConfig(TrainArgs):
    """GLM blank-infilling pretraining (glm_base.pretrain)."""

    output_dir: str = field(default="runs/pretrain", metadata={"help": "run directory"})
    max_steps: int = field(default=200, metadata={"help": "optimizer steps"})
    model: ModelArgs = field(default_factory=ModelArgs)
    tokenizer: TokenizerArgs = field(default_factory=TokenizerArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    eval_batches: int = field(default=4, metadata={"help": "eval micro-batches per objective"})

    def __post_init__(self):
        super().__post_init__()
        if self.max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if self.data.num_workers not in (0, 1):
            raise ValueError("data.num_workers must be 0 or 1 (batches are built in one deterministic order)")


# --- setup pieces ----------------------------------------------------------------------------

def resolve_files(data: DataArgs) -> tuple[list[str], list[str]]:
    """Training and evaluation files: the configured ones, or the synthetic world's corpus. With
    ``train_files`` but no ``eval_files`` the evaluation list is empty and documents are held out."""
    if data.train_files:
        return list(data.train_files), list(data.eval_files)
    if data.eval_files:
        raise UserError("data.eval_files is set but data.train_files is empty: name the training files too")
    train, evaluation = world_files("corpus", size=data.world_scale, seed=data.world_seed)
    return [train], [evaluation]


def load_or_train_tokenizer(cfg: PretrainConfig, train_files: list[str], run: Run):
    from transformers import AutoTokenizer

    if cfg.model.init_from and not cfg.tokenizer.path:
        return AutoTokenizer.from_pretrained(cfg.model.init_from)
    if cfg.tokenizer.path:
        return AutoTokenizer.from_pretrained(cfg.tokenizer.path)
    out = Path(cfg.output_dir) / "tokenizer"
    with run.main_process_first():
        if not (out / "tokenizer.json").is_file():
            logger.info("training a %d-token tokenizer on %s", cfg.tokenizer.vocab_size, train_files)
            train_tokenizer(read_corpus(train_files, cfg.data.text_field), cfg.tokenizer.vocab_size, out_dir=out)
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
                               accelerator.num_processes, ignore={"shift_labels": IGNORE_INDEX})
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            targets = batch.pop("shift_labels")
            with accelerator.autocast():
                logits = model(**batch, use_cache=False).logits.float()
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

def load_documents(cfg: PretrainConfig, train_files: list[str], eval_files: list[str], tokenizer, collator):
    """Training source (chunks in memory, or a streaming source), evaluation chunks, the unigram
    baseline token and the data counts for the summary."""
    ids = special_token_ids(tokenizer)
    pack = cfg.data.pack_documents
    train_docs, train_counts = None, {"streaming": 1}
    if not cfg.data.streaming:
        train_docs, train_counts = prepare_documents(train_files, tokenizer, collator, cfg.data.text_field, pack=pack)
    if eval_files:
        eval_docs, eval_counts = prepare_documents(eval_files, tokenizer, collator, cfg.data.text_field, pack=pack)
    elif train_docs is not None:
        train_docs, eval_docs = hold_out(train_docs, cfg.data.eval_holdout, cfg.data.world_seed)
        eval_counts = {"held_out_of_train": len(eval_docs)}
        train_counts["chunks"] = len(train_docs)
        logger.info("no data.eval_files: holding out %d of the training chunks for evaluation", len(eval_docs))
    else:
        raise UserError("data.streaming=true needs data.eval_files (documents cannot be held out of a stream)")
    source = None
    if cfg.data.streaming:
        source = streaming_source(train_files, tokenizer, collator, cfg.data.text_field, cfg.seed,
                                  cfg.data.shuffle_buffer, pack=pack)
    baseline_token = unigram_baseline(train_docs if train_docs is not None else eval_docs, ids.all)
    return train_docs, source, eval_docs, baseline_token, {"train_data": train_counts, "eval_data": eval_counts}


def batch_stream(cfg: PretrainConfig, collator, train_docs, source, position: int):
    collate = infilling_collate(collator)
    if source is not None:
        stream = StreamedBatchStream(source, collate, cfg.batch_size, start=position)
    else:
        stream = GlobalBatchStream(train_docs, PermutationSampler(len(train_docs), cfg.batch_size, cfg.seed),
                                   collate, start=position)
    return iter(DataLoader(stream, batch_size=None, num_workers=cfg.data.num_workers,
                           prefetch_factor=4 if cfg.data.num_workers else None))


def run(cfg: PretrainConfig) -> dict[str, Any]:
    run = start_run(cfg, "pretrain")
    accelerator = run.accelerator

    with run.main_process_first():  # the main process builds the default world; the others wait
        train_files, eval_files = resolve_files(cfg.data)
    tokenizer = load_or_train_tokenizer(cfg, train_files, run)
    model = build_model(cfg, tokenizer)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    collator = BlankInfillingCollator(tokenizer, max_length=cfg.data.max_length, mask_ratio=cfg.data.mask_ratio,
                                      poisson_lambda=cfg.data.poisson_lambda,
                                      objective_probs=cfg.data.objective_probs, seed=cfg.seed)
    train_docs, source, eval_docs, baseline_token, data_counts = load_documents(cfg, train_files, eval_files, tokenizer, collator)
    logger.info("data: %s", data_counts)

    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped once per optimizer step, by us
    state = run.resume(cfg.signature(max_length=cfg.data.max_length, streaming=cfg.data.streaming))
    position, tokens_seen = state.get("data_position", 0), state.get("tokens_seen", 0)
    batches = batch_stream(cfg, collator, train_docs, source, position)

    model.train()
    with tqdm(total=cfg.max_steps, initial=run.start_step, desc="pretrain", disable=not run.is_main,
              dynamic_ncols=True) as progress:
        window = StepWindow()
        last_eval: dict[str, float] = {}
        step = run.start_step
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
            position += cfg.grad_accum
            step_targets = sum(int((mb["shift_labels"] != IGNORE_INDEX).sum()) for mb in micro_batches)
            tokens = sum(int(mb["attention_mask"].sum()) for mb in micro_batches)
            tokens_seen += tokens
            local_batches = [{k: v.to(accelerator.device) for k, v in
                              shard_rows(mb, run.rank, run.world, ignore={"shift_labels": IGNORE_INDEX}).items()}
                             for mb in micro_batches]
            with at_step(step):
                result = train_step(accelerator, model, optimizer, local_batches, step_targets,
                                    loss_fn=targets_only_loss, grad_clip=cfg.optim.grad_clip)
            run.end_step(step, result, scheduler, window, progress, tokens, logged={"train/tokens_seen": tokens_seen})
            if run.should_eval(step):
                last_eval = evaluate(model, accelerator, eval_docs, tokenizer, cfg, baseline_token)
                run.metrics.log(step, last_eval)
                progress.write(f"step {step}: " + ", ".join(f"{k.removeprefix('eval/')} {v:.3f}"
                                                            for k, v in last_eval.items() if "unigram" not in k))
            if run.should_save(step):
                run.save(step, model, tokenizer, {"data_position": position, "tokens_seen": tokens_seen, **data_counts})

    summary = {"steps": step, "tokens_seen": tokens_seen, **data_counts,
               "baseline_token": tokenizer.convert_ids_to_tokens(baseline_token), **last_eval}
    title = f"GLM pretraining ({cfg.model.architecture}, {cfg.model.size})"
    return run.finish(model, tokenizer, summary, plots=[lambda d: plot_curves(
        d / "metrics.jsonl", d / "loss_curve.png",
        ["train/loss", "eval/loss", "eval/blank/loss", "eval/sentence/loss", "eval/document/loss"], title=title)])


def main(argv: list[str] | None = None) -> None:
    train_main(PretrainConfig, run, argv, prog="python -m glm_base.pretrain")


if __name__ == "__main__":
    main()
