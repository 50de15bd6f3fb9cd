"""PET-style cloze fine-tuning of a pretrained GLM on a few labelled examples.

    python -m glm_base.cloze --config configs/cloze/tiny.yaml [key=value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml -m glm_base.cloze --config configs/cloze/base.yaml

A classification example becomes a blank to fill: the text goes into a **pattern** with one
``[MASK]`` (``"{text} All in all, it was [MASK]."``) and each label has a **verbalizer**, the word
that fills the blank (``good`` / ``bad``). Patterns and verbalizers are per language (rows carry a
``lang`` field); the defaults are the synthetic world's own (``world.cloze``).

The task (layout, label scores, loss) is in :mod:`glm_base.cloze_task`; reading labelled rows in
:mod:`glm_base.cloze_data`; the linear-probe baseline in :mod:`glm_base.linear_probe`.

**Baselines**, on the same eval split: *zero-shot* cloze (the checkpoint's prediction before
fine-tuning), *majority* class (the most frequent label of the ``n_train`` sampled examples, ties
to the label listed first), and a *linear probe*: L2-regularised logistic regression on frozen
features of the pretrained model for the same ``n_train`` examples (``probe_features``: the final
hidden state at ``<sop>``, by default, or Part A mean-pooled), standardised with the training
statistics, the L2 strength chosen by k-fold cross-validation on those examples.

Outputs in ``output_dir``: ``config.yaml``, ``metrics.jsonl`` (+ TensorBoard), ``summary.json``
(accuracies, per language too, ``n_train``, ``seed``, scoring modes and verbalizer tokens), the
fine-tuned model in ``model/`` (HF format, with tokenizer) and ``accuracy.png`` (bar chart).

Errors name what is wrong: a missing ``init_from`` model directory; a label without a verbalizer or a pattern
without ``{text}``/``[MASK]`` (the config key); a data row without a field, with a label that has no
verbalizer or with a language that has no pattern (file, row and field).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from common.errors import UserError
from world.config import SIZES as WORLD_SIZES

from .cloze_data import ClozeRow, read_rows, resolve_files, sample_train
from .cloze_task import (accuracy_report, build_task, cloze_loss, collate, encode_example, predict,
                         resolve_task)
from .linear_probe import linear_probe, probe_features
from .loading import load_model_and_tokenizer
from .trainkit.args import TrainArgs
from .trainkit.batches import GlobalBatchStream, PermutationSampler
from .trainkit.metrics import StepWindow, plot_bars
from .trainkit.optim import OptimArgs, build_optimizer
from .trainkit.run import start_run, train_main
from .trainkit.steps import at_step, train_step

logger = logging.getLogger("glm_base.cloze")


# --- config --------------------------------------------------------------------------------------

@dataclass
class ClozeDataArgs:
    train_file: str | None = field(default=None, metadata={"help": "JSONL of labelled rows; None = the world's cloze train split"})
    eval_file: str | None = field(default=None, metadata={"help": "JSONL eval rows; None = the world's cloze eval split"})
    world_scale: str = field(default="tiny", metadata={"help": "size of the synthetic world used when no files are given (tiny | small | medium)", "choices": list(WORLD_SIZES)})
    world_seed: int = field(default=0, metadata={"help": "world seed used when no files are given"})
    text_field: str = field(default="text", metadata={"help": "row field holding the text"})
    label_field: str = field(default="label", metadata={"help": "row field holding the label name"})
    lang_field: str = field(default="lang", metadata={"help": "row field naming the pattern's language"})
    max_length: int = field(default=160, metadata={"help": "longest Part A; longer texts lose their first tokens"})


@dataclass
class ClozeOptimArgs(OptimArgs):
    """The shared optimizer fields with fine-tuning defaults (AdamW's usual beta2 = 0.999)."""

    lr: float = field(default=1e-4, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on norms, biases, embeddings)"})
    beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    warmup_steps: int = field(default=10, metadata={"help": "linear warmup steps"})


@dataclass
class ClozeConfig(TrainArgs):
    """PET-style cloze fine-tuning of a pretrained GLM model directory (glm_base.cloze)."""

    output_dir: str = field(default="runs/cloze", metadata={"help": "run directory"})
    seed: int = field(default=0, metadata={"help": "seed for the n_train sample, batch order and probe folds"})
    max_steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per global micro-batch (all processes)"})
    eval_every: int = field(default=25, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0 = only at the end)"})
    log_every: int = field(default=5, metadata={"help": "log train metrics every N steps"})
    init_from: str = field(default="runs/pretrain-tiny/model", metadata={"help": "pretrained model directory (model + tokenizer)"})
    n_train: int = field(default=32, metadata={"help": "labelled training examples sampled from the train split"})
    balanced: bool = field(default=True, metadata={"help": "sample n_train with the labels as even as the data allow"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per eval forward"})
    labels: list[str] = field(default_factory=list, metadata={"help": "label names in order; empty = the verbalizers' keys (world: negative, positive)"})
    patterns: dict[str, str] = field(default_factory=dict, metadata={"help": "language -> pattern with {text} and one [MASK]; empty = the world's"})
    verbalizers: dict[str, dict[str, str]] = field(default_factory=dict, metadata={"help": "language -> label -> word; empty = the world's"})
    scoring: str = field(default="auto", metadata={"help": "auto (logit at <sop> when every verbalizer is one token) | multi (summed log-probs incl. <eop>)", "choices": ["auto", "multi"]})
    data: ClozeDataArgs = field(default_factory=ClozeDataArgs)
    optim: ClozeOptimArgs = field(default_factory=ClozeOptimArgs)
    probe_features: str = field(default="sop", metadata={"help": "linear-probe features: sop (final hidden state at <sop>) | mean (Part A mean-pooled)", "choices": ["sop", "mean"]})
    probe_folds: int = field(default=4, metadata={"help": "cross-validation folds choosing the probe's L2 strength"})

    def __post_init__(self):
        super().__post_init__()
        if self.n_train < 1:
            raise ValueError("n_train must be >= 1")
        if self.scoring not in ("auto", "multi"):
            raise ValueError(f"scoring must be 'auto' or 'multi', got {self.scoring!r}")
        if self.probe_features not in ("sop", "mean"):
            raise ValueError(f"probe_features must be 'sop' or 'mean', got {self.probe_features!r}")
        if self.probe_folds < 2:
            raise ValueError("probe_folds must be >= 2")


# --- the loop --------------------------------------------------------------------------------------

def run(cfg: ClozeConfig) -> dict[str, Any]:
    """Fine-tune, evaluate against the baselines, write the run directory; return the summary."""
    labels, patterns, verbalizers = resolve_task(cfg)
    run = start_run(cfg, "cloze")
    accelerator = run.accelerator
    if cfg.batch_size % run.world:
        raise UserError(f"batch_size={cfg.batch_size} must be a multiple of the {run.world} processes")

    model, tokenizer = load_model_and_tokenizer(
        cfg.init_from, what="init_from", hint="produce it with `python -m glm_base.pretrain --config "
        "configs/pretrain/tiny.yaml` or set init_from=DIR")
    task = build_task(tokenizer, labels, patterns, verbalizers, cfg.scoring)
    with run.main_process_first():  # the main process builds the default world; the others wait
        train_file, eval_file = resolve_files(cfg)
    train_rows = sample_train(read_rows(train_file, task, cfg.data), cfg.n_train, cfg.seed, cfg.balanced)
    eval_rows = read_rows(eval_file, task, cfg.data)

    def encode(rows: list[ClozeRow]):
        return [encode_example(tokenizer, task, r.text, r.lang, r.label, cfg.data.max_length) for r in rows]

    train_examples, eval_examples = encode(train_rows), encode(eval_rows)
    logger.info("task: labels %s; scoring %s; verbalizer tokens %s", labels,
                {lang: "single" if s else "multi" for lang, s in task.single.items()},
                {lang: [tokenizer.convert_ids_to_tokens(t) for t in toks] for lang, toks in task.verbalizer_ids.items()})
    train_counts = Counter(labels[r.label] for r in train_rows)
    logger.info("train: %d examples %s from %s; eval: %d examples from %s", len(train_rows), dict(train_counts),
                train_file, len(eval_rows), eval_file)

    # Baselines on the frozen pretrained model (every process computes them; the sets are small).
    model.to(accelerator.device)
    quiet = not run.is_main
    zero_shot = accuracy_report(predict(model, eval_examples, task.pad_id, cfg.eval_batch_size, "zero-shot", quiet),
                                eval_examples)
    train_y = torch.tensor([r.label for r in train_rows])
    probe_predictions, probe_l2 = linear_probe(
        probe_features(model, train_examples, task.pad_id, cfg.probe_features, cfg.eval_batch_size), train_y,
        probe_features(model, eval_examples, task.pad_id, cfg.probe_features, cfg.eval_batch_size),
        len(labels), cfg.probe_folds, cfg.seed)
    probe = accuracy_report(probe_predictions, eval_examples)
    majority_label = max(range(len(labels)), key=lambda k: (train_counts[labels[k]], -k))
    majority = accuracy_report(torch.full((len(eval_examples),), majority_label), eval_examples)
    logger.info("zero-shot %.3f, linear probe %.3f (l2 %g), majority %.3f", zero_shot["all"], probe["all"],
                probe_l2, majority["all"])

    optimizer, scheduler = build_optimizer(model, cfg.optim, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = run.resume(cfg.signature(n_train=cfg.n_train, max_length=cfg.data.max_length))
    if run.start_step == 0:
        run.metrics.log(0, {"eval/accuracy": zero_shot["all"], "baseline/zero_shot": zero_shot["all"],
                            "baseline/linear_probe": probe["all"], "baseline/majority": majority["all"]})
    position = state.get("data_position", 0)
    # every process draws the same global batch of examples and encodes its own share of them
    batches = iter(GlobalBatchStream(train_examples, PermutationSampler(len(train_examples), cfg.batch_size, cfg.seed + 1),
                                     lambda examples, _position: examples, start=position))

    model.train()
    last_eval = dict(zero_shot)  # max_steps=0: the cloze model is the pretrained one
    window = StepWindow()
    with tqdm(total=cfg.max_steps, initial=run.start_step, desc="cloze", disable=not run.is_main,
              dynamic_ncols=True) as progress:
        for step in range(run.start_step + 1, cfg.max_steps + 1):
            micro = [next(batches) for _ in range(cfg.grad_accum)]
            position += cfg.grad_accum
            local = [collate(mb[run.rank::run.world], task.pad_id) for mb in micro]
            with at_step(step):
                result = train_step(accelerator, model, optimizer, local, cfg.batch_size * cfg.grad_accum,
                                    loss_fn=cloze_loss, grad_clip=cfg.optim.grad_clip)
            run.end_step(step, result, scheduler, window, progress)
            if run.should_eval(step):
                last_eval = accuracy_report(predict(model, eval_examples, task.pad_id, cfg.eval_batch_size, "eval",
                                                    quiet), eval_examples)
                run.metrics.log(step, {f"eval/accuracy{'' if k == 'all' else '/' + k}": v for k, v in last_eval.items()})
                progress.write(f"step {step}: eval accuracy {last_eval['all']:.3f}")
            if run.should_save(step):
                run.save(step, model, tokenizer, {"data_position": position})

    accuracies = {"cloze": last_eval["all"], "linear_probe": probe["all"], "zero_shot": zero_shot["all"],
                  "majority": majority["all"]}
    summary = {
        "accuracy": accuracies,
        "accuracy_by_lang": {"cloze": last_eval, "linear_probe": probe, "zero_shot": zero_shot, "majority": majority},
        "n_train": len(train_rows), "train_label_counts": dict(train_counts), "n_eval": len(eval_rows),
        "seed": cfg.seed, "steps": cfg.max_steps, "init_from": str(cfg.init_from),
        "train_file": train_file, "eval_file": eval_file,
        "scoring": {lang: "single" if s else "multi" for lang, s in task.single.items()},
        "verbalizer_tokens": {lang: {labels[k]: tokenizer.convert_ids_to_tokens(t) for k, t in enumerate(toks)}
                              for lang, toks in task.verbalizer_ids.items()},
        "probe": {"features": cfg.probe_features, "l2": probe_l2, "folds": cfg.probe_folds},
        "majority_label": labels[majority_label],
    }
    if run.is_main:
        logger.info("accuracy: %s", ", ".join(f"{k} {v:.3f}" for k, v in accuracies.items()))
    title = f"cloze vs baselines, n_train={len(train_rows)}, seed={cfg.seed}"
    return run.finish(model, tokenizer, summary, plots=[lambda d: plot_bars(accuracies, d / "accuracy.png", title)])


def main(argv: list[str] | None = None) -> None:
    train_main(ClozeConfig, run, argv, prog="python -m glm_base.cloze")


if __name__ == "__main__":
    main()
