"""PET-style cloze fine-tuning of a pretrained GLM on a few labelled examples.

    python -m glm_base.cloze --config configs/cloze/tiny.yaml [key=value ...]
    accelerate launch --config_file configs/accelerate/ddp.yaml -m glm_base.cloze --config configs/cloze/base.yaml

A classification example becomes a blank to fill: the text goes into a **pattern** with one
``[MASK]`` (``"{text} All in all, it was [MASK]."``) and each label has a **verbalizer**, the word
that fills the blank (``good`` / ``bad``). Patterns and verbalizers are per language (rows carry a
``lang`` field); the defaults are the synthetic world's own (``world.cloze``).

**Layout** (the pretraining layout of one ``[MASK]`` span, built with
:func:`glm_base.infilling.build_row`): Part A = the pattern tokens with ``[MASK]`` in place of the
verbalizer, then ``<|endoftext|>`` (the never-masked document end of pretraining; our tokenizer has no
``[CLS]``). Part B = ``<sop>`` at 2D position (index of the mask, 1), then the verbalizer tokens with
span positions 2, 3, ... Pieces are tokenized separately (text-before-mask, verbalizer,
text-after-mask) so every label sees the same Part A. A space right before ``[MASK]`` moves into the
verbalizer (``" good"``): byte-level BPE keeps a word's leading space inside the word, so in
pretraining that space belonged to the masked span (as in :mod:`glm_base.generation`).

**Scores** (one per label):

- every verbalizer of the row's language is one token (``scoring: auto``): the label's raw logit at
  ``<sop>``; one row per example, Part B is just ``<sop>``;
- otherwise (or ``scoring: multi``): the summed log-probability of the verbalizer tokens *and*
  ``<eop>`` after ``<sop>``, without length normalisation. **One row per label** (K rows per example,
  all in the same forward): in one row with K Part-B spans, later spans would attend to earlier ones
  (Part B is causal), so a label's score would depend on the other labels.

Training minimises the cross-entropy of the softmax over the label scores (PET's loss; no auxiliary
LM loss), normalised over the examples of the optimizer step (:func:`glm_base.trainkit.steps.train_step`).
The prediction is the label with the highest score.

**Baselines**, on the same eval split: *zero-shot* cloze (the checkpoint's prediction before
fine-tuning), *majority* class (the most frequent label of the ``n_train`` sampled examples, ties
to the label listed first), and a *linear probe*: L2-regularised logistic regression on frozen
features of the pretrained model for the same ``n_train`` examples (``probe_features``: the final
hidden state at ``<sop>``, by default, or Part A mean-pooled), standardised with the training
statistics, the L2 strength chosen by k-fold cross-validation on those examples.

Outputs in ``output_dir``: ``config.yaml``, ``metrics.jsonl`` (+ TensorBoard), ``summary.json``
(accuracies, per language too, ``n_train``, ``seed``, scoring modes and verbalizer tokens), the
fine-tuned model in ``model/`` (HF format, with tokenizer) and ``accuracy.png`` (bar chart).

Errors name what is wrong: a missing checkpoint directory; a label without a verbalizer or a pattern
without ``{text}``/``[MASK]`` (the config key); a data row without a field, with a label that has no
verbalizer or with a language that has no pattern (file, row and field).
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from .infilling import IGNORE_INDEX, InfillingRow, build_row, pad_rows
from common.config import load_config, save_config
from .tokenizer import special_token_ids
from .trainkit.accel import LaunchError, make_accelerator
from .trainkit.checkpoint import save_final_model
from .trainkit.metrics import MetricLogger
from .trainkit.optim import OptimArgs, build_optimizer
from .trainkit.steps import NonFiniteLoss, train_step

logger = logging.getLogger("glm_base.cloze")

MASK_PLACEHOLDER = "[MASK]"
TEXT_PLACEHOLDER = "{text}"


# --- config --------------------------------------------------------------------------------------

@dataclass
class ClozeDataArgs:
    train_file: str | None = field(default=None, metadata={"help": "JSONL of labelled rows; None = the world's cloze train split"})
    eval_file: str | None = field(default=None, metadata={"help": "JSONL eval rows; None = the world's cloze eval split"})
    world_size: str = field(default="tiny", metadata={"help": "world size used when no files are given"})
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
class ClozeConfig:
    """PET-style cloze fine-tuning of a pretrained GLM checkpoint (glm_base.cloze)."""

    output_dir: str = field(default="runs/cloze", metadata={"help": "run directory"})
    seed: int = field(default=0, metadata={"help": "seed for the n_train sample, batch order and probe folds"})
    checkpoint: str = field(default="runs/pretrain-tiny/model", metadata={"help": "pretrained model + tokenizer directory"})
    n_train: int = field(default=32, metadata={"help": "labelled training examples sampled from the train split"})
    balanced: bool = field(default=True, metadata={"help": "sample n_train with the labels as even as the data allow"})
    max_steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per global micro-batch (all processes)"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per eval forward"})
    labels: list[str] = field(default_factory=list, metadata={"help": "label names in order; empty = the verbalizers' keys (world: negative, positive)"})
    patterns: dict[str, str] = field(default_factory=dict, metadata={"help": "language -> pattern with {text} and one [MASK]; empty = the world's"})
    verbalizers: dict[str, dict[str, str]] = field(default_factory=dict, metadata={"help": "language -> label -> word; empty = the world's"})
    scoring: str = field(default="auto", metadata={"help": "auto (logit at <sop> when every verbalizer is one token) | multi (summed log-probs incl. <eop>)"})
    data: ClozeDataArgs = field(default_factory=ClozeDataArgs)
    optim: ClozeOptimArgs = field(default_factory=ClozeOptimArgs)
    eval_every: int = field(default=25, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    log_every: int = field(default=5, metadata={"help": "log train metrics every N steps"})
    probe_features: str = field(default="sop", metadata={"help": "linear-probe features: sop (final hidden state at <sop>) | mean (Part A mean-pooled)"})
    probe_folds: int = field(default=4, metadata={"help": "cross-validation folds choosing the probe's L2 strength"})
    mixed_precision: str = field(default="auto", metadata={"help": "auto (bf16 on GPU, fp32 on CPU) | no | bf16 | fp16"})

    def __post_init__(self):
        if self.n_train < 1 or self.max_steps < 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("n_train, batch_size and grad_accum must be >= 1 and max_steps >= 0")
        if self.scoring not in ("auto", "multi"):
            raise ValueError(f"scoring must be 'auto' or 'multi', got {self.scoring!r}")
        if self.probe_features not in ("sop", "mean"):
            raise ValueError(f"probe_features must be 'sop' or 'mean', got {self.probe_features!r}")
        if self.probe_folds < 2:
            raise ValueError("probe_folds must be >= 2")


# --- the task: patterns, verbalizers, encoded examples -----------------------------------------------

def world_task() -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """The synthetic world's cloze task: (labels, patterns, verbalizers)."""
    from world.cloze import LABELS, PATTERNS, VERBALIZERS

    return list(LABELS), dict(PATTERNS), {lang: dict(v) for lang, v in VERBALIZERS.items()}


def resolve_task(cfg: ClozeConfig) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """Labels, patterns and verbalizers from the config (empty fields = the world's), checked.

    Raises ``ValueError`` naming the config key when a pattern lacks ``{text}`` or has not exactly one
    ``[MASK]``, a language has a pattern but no verbalizers (or the reverse), or a label has no
    verbalizer in some language.
    """
    w_labels, w_patterns, w_verbalizers = world_task()
    patterns = dict(cfg.patterns) or w_patterns
    verbalizers = {k: dict(v) for k, v in cfg.verbalizers.items()} or w_verbalizers
    labels = list(cfg.labels) or (list(next(iter(verbalizers.values()))) if cfg.verbalizers else w_labels)
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ValueError(f"config: labels must be at least two distinct names, got {labels}")
    for lang, pattern in patterns.items():
        if TEXT_PLACEHOLDER not in pattern or pattern.count(MASK_PLACEHOLDER) != 1:
            raise ValueError(f"config: patterns.{lang} = {pattern!r} must contain {TEXT_PLACEHOLDER} and exactly "
                             f"one {MASK_PLACEHOLDER}")
        if lang not in verbalizers:
            raise ValueError(f"config: patterns.{lang} has no verbalizers.{lang} (verbalizers for {sorted(verbalizers)})")
    for lang, words in verbalizers.items():
        if lang not in patterns:
            raise ValueError(f"config: verbalizers.{lang} has no patterns.{lang} (patterns for {sorted(patterns)})")
        for label in labels:
            if label not in words or not str(words[label]).strip():
                raise ValueError(f"config: verbalizers.{lang} has no word for label {label!r} "
                                 f"(labels: {labels}; verbalizers.{lang}: {words})")
        extra = sorted(set(words) - set(labels))
        if extra:
            raise ValueError(f"config: verbalizers.{lang} names {extra}, which are not among the labels {labels}")
    return labels, patterns, verbalizers


@dataclass
class ClozeTask:
    """A tokenized task: what the layout and the scores need, per language."""

    labels: list[str]
    patterns: dict[str, str]
    verbalizers: dict[str, dict[str, str]]
    verbalizer_ids: dict[str, list[list[int]]]  # language -> label index -> token ids as they fill the blank
    single: dict[str, bool]  # language -> score by the logit at <sop>
    mask_id: int
    sop_id: int
    eop_id: int
    eos_id: int
    pad_id: int


def build_task(tokenizer, labels, patterns, verbalizers, scoring: str = "auto") -> ClozeTask:
    """Tokenize the verbalizers and pick the scoring mode per language.

    Raises ``ValueError`` when two labels of a language have the same verbalizer tokens.
    """
    ids = special_token_ids(tokenizer)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    verbalizer_ids, single = {}, {}
    for lang, words in verbalizers.items():
        # a space before [MASK] belongs to the blank (see the module docstring)
        space = " " if patterns[lang].split(MASK_PLACEHOLDER)[0].endswith(" ") else ""
        toks = [encode(space + words[label].strip()) for label in labels]
        if len({tuple(t) for t in toks}) != len(labels):
            raise ValueError(f"config: verbalizers.{lang} gives two labels the same tokens: {words}")
        verbalizer_ids[lang] = toks
        single[lang] = scoring == "auto" and all(len(t) == 1 for t in toks)
    return ClozeTask(labels, dict(patterns), verbalizers, verbalizer_ids, single,
                     ids.mask, ids.sop, ids.eop, ids.eos, ids.pad)


@dataclass
class ClozeExample:
    """One encoded example: its rows (1 when single-token scored, else one per label)."""

    rows: list[InfillingRow]
    single: bool
    label_tokens: list[list[int]]  # per label
    label: int  # index into task.labels, -1 when unknown
    lang: str


def encode_example(tokenizer, task: ClozeTask, text: str, lang: str, label: int = -1,
                   max_length: int = 160) -> ClozeExample:
    """Lay out ``text`` in its language's pattern (see the module docstring)."""
    pattern = task.patterns[lang]
    before, after = pattern.replace(TEXT_PLACEHOLDER, text).split(MASK_PLACEHOLDER)
    spaced = before.endswith(" ")
    if spaced:
        before = before[:-1]
    label_tokens = task.verbalizer_ids[lang]
    prefix = tokenizer(before, add_special_tokens=False)["input_ids"]
    suffix = tokenizer(after, add_special_tokens=False)["input_ids"]
    room = max_length - len(suffix) - 2  # the mask and <|endoftext|>
    if room < 1:
        raise ValueError(f"max_length={max_length} leaves no room for the text in pattern {pattern!r}")
    prefix = prefix[-room:]
    single = task.single[lang]
    rows = []
    for verbalizer in (label_tokens[:1] if single else label_tokens):
        tokens = prefix + list(verbalizer) + suffix + [task.eos_id]
        row = build_row(tokens, [(len(prefix), len(prefix) + len(verbalizer))], task.mask_id, task.sop_id, task.eop_id)
        if single:  # Part A + <sop>: the score is read at <sop>, nothing after it is needed
            cut = row.part_a_length + 1
            row = InfillingRow(row.input_ids[:cut], row.position_ids[:, :cut],
                               np.full(cut, IGNORE_INDEX, dtype=np.int64), row.part_a_length)
        rows.append(row)
    return ClozeExample(rows, single, [list(t) for t in label_tokens], label, lang)


def collate(examples: Sequence[ClozeExample], pad_id: int) -> dict[str, Any]:
    """Pad every row of ``examples`` into one batch (one forward scores them all).

    Returns the model inputs plus ``row_of`` (first row of each example), ``single`` (bool per
    example), ``label_tokens`` (single-token ids per example, ``(B, K)``, -1 for multi-token examples)
    and ``labels`` ``(B,)``.
    """
    padded = pad_rows([r for ex in examples for r in ex.rows], pad_id)
    k = len(examples[0].label_tokens)
    row_of, start = [], 0
    for ex in examples:
        row_of.append(start)
        start += len(ex.rows)
    label_tokens = torch.tensor([[t[0] for t in ex.label_tokens] if ex.single else [-1] * k for ex in examples])
    return {
        "input_ids": padded["input_ids"], "position_ids": padded["position_ids"],
        "attention_mask": padded["attention_mask"], "part_a_length": padded["part_a_length"],
        "targets": padded["shift_labels"], "row_of": torch.tensor(row_of), "single": torch.tensor([ex.single for ex in examples]),
        "label_tokens": label_tokens, "labels": torch.tensor([ex.label for ex in examples]),
    }


MODEL_KEYS = ("input_ids", "position_ids", "attention_mask", "part_a_length")


def scores_from_logits(logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """``(B, K)`` label scores from the logits of a :func:`collate` batch.

    Single-token example: the raw logit of each label's token at ``<sop>`` (the first Part B token,
    index ``part_a_length``). Multi-token example (K rows): the sum over Part B of
    ``log_softmax(logits)[target]``, the targets being the verbalizer tokens and ``<eop>``.
    """
    logits = logits.float()
    device = logits.device
    row_of = batch["row_of"].to(device)
    single = batch["single"].to(device)
    label_tokens = batch["label_tokens"].to(device)
    k = label_tokens.shape[1]
    b = row_of.shape[0]
    scores = torch.zeros(b, k, device=device, dtype=logits.dtype)
    if bool(single.any()):
        rows = row_of[single]
        sop = batch["part_a_length"].to(device)[rows]
        at_sop = logits[rows, sop]  # (Bs, V)
        scores[single] = at_sop.gather(1, label_tokens[single])
    if bool((~single).any()):
        targets = batch["targets"].to(device)
        rows = (row_of[~single][:, None] + torch.arange(k, device=device)).reshape(-1)
        t = targets[rows]
        valid = t != IGNORE_INDEX
        logp = torch.log_softmax(logits[rows], dim=-1).gather(-1, t.clamp(min=0)[..., None]).squeeze(-1)
        scores[~single] = (logp * valid).sum(-1).view(-1, k)
    return scores


def label_scores(model, batch: dict[str, Any]) -> torch.Tensor:
    """One forward of ``model`` over a :func:`collate` batch, then :func:`scores_from_logits`."""
    device = next(model.parameters()).device
    out = model(**{key: batch[key].to(device) for key in MODEL_KEYS})
    return scores_from_logits(out.logits, batch)


def cloze_loss(model, batch: dict[str, Any], num_items: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of the cross-entropy over label scores, divided by ``num_items``."""
    scores = label_scores(model, batch)
    labels = batch["labels"].to(scores.device)
    return F.cross_entropy(scores, labels, reduction="sum") / num_items


# --- data ------------------------------------------------------------------------------------------

@dataclass
class ClozeRow:
    text: str
    lang: str
    label: int
    where: str  # "file: row i"


def read_rows(path: str | Path, task: ClozeTask, args: ClozeDataArgs) -> list[ClozeRow]:
    """Read a JSONL file of labelled rows, checking every field.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file, the row (1-based
    line) and the field for invalid JSON, a missing field, a label without a verbalizer or a language
    without a pattern. A row without the language field uses the pattern when only one is configured.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cloze data file not found: {path}")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: row {line_no}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object")
        text = record.get(args.text_field)
        if not isinstance(text, str):
            raise ValueError(f"{where}: field {args.text_field!r} is missing or not a string (keys: {sorted(record)})")
        if args.label_field not in record:
            raise ValueError(f"{where}: field {args.label_field!r} is missing (keys: {sorted(record)})")
        label = record[args.label_field]
        if label not in task.labels:
            raise ValueError(f"{where}: field {args.label_field!r} = {label!r} has no verbalizer; "
                             f"labels with verbalizers: {task.labels}")
        lang = record.get(args.lang_field)
        if lang is None and len(task.patterns) == 1:
            lang = next(iter(task.patterns))
        if lang not in task.patterns:
            raise ValueError(f"{where}: field {args.lang_field!r} = {lang!r} has no pattern; "
                             f"patterns for {sorted(task.patterns)}")
        rows.append(ClozeRow(text, lang, task.labels.index(label), where))
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def sample_train(rows: Sequence[ClozeRow], n: int, seed: int, balanced: bool = True) -> list[ClozeRow]:
    """``n`` rows drawn with ``seed``: round-robin over the labels when ``balanced`` (as even as the
    data allow), else uniformly. Raises ``ValueError`` when there are fewer than ``n`` rows."""
    if n > len(rows):
        raise ValueError(f"n_train={n} but the training file has only {len(rows)} rows")
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(list(rows), n)
    by_label: dict[int, list[ClozeRow]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    pools = [rng.sample(group, len(group)) for _, group in sorted(by_label.items())]
    picked: list[ClozeRow] = []
    while len(picked) < n:
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(pool.pop())
    rng.shuffle(picked)
    return picked


def resolve_files(cfg: ClozeConfig) -> tuple[str, str]:
    """The train and eval files: the configured ones, or the world's cloze split (built on first
    use, and rebuilt when a stale world lacks it, by ``trainkit.default_data``)."""
    from .trainkit.default_data import world_files

    if cfg.data.train_file and cfg.data.eval_file:
        return cfg.data.train_file, cfg.data.eval_file
    train, evaluation = world_files("cloze", size=cfg.data.world_size, seed=cfg.data.world_seed)
    return cfg.data.train_file or train, cfg.data.eval_file or evaluation


def load_checkpoint_dir(path: str | Path):
    """Model and tokenizer from a glm_base checkpoint directory; ``FileNotFoundError`` if absent."""
    import glm_base  # noqa: F401  (registers the auto classes)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"checkpoint directory {path} not found (or has no config.json): produce it with "
            f"`python -m glm_base.pretrain --config configs/pretrain/tiny.yaml` or set checkpoint=DIR")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model, tokenizer


# --- evaluation and the linear probe ------------------------------------------------------------------

@torch.no_grad()
def predict(model, examples: Sequence[ClozeExample], pad_id: int, batch_size: int = 32,
            desc: str = "eval", disable: bool = False) -> torch.Tensor:
    """Predicted label index of every example (argmax of the label scores)."""
    was_training = model.training
    model.eval()
    out = []
    for start in tqdm(range(0, len(examples), batch_size), desc=desc, leave=False, disable=disable):
        out.append(label_scores(model, collate(examples[start:start + batch_size], pad_id)).argmax(-1).cpu())
    model.train(was_training)
    return torch.cat(out)


def accuracy_report(predictions: torch.Tensor, examples: Sequence[ClozeExample]) -> dict[str, float]:
    """Overall accuracy and accuracy per language."""
    gold = torch.tensor([ex.label for ex in examples])
    correct = (predictions == gold).tolist()
    report = {"all": sum(correct) / len(correct)}
    for lang in sorted({ex.lang for ex in examples}):
        hits = [c for c, ex in zip(correct, examples) if ex.lang == lang]
        report[lang] = sum(hits) / len(hits)
    return report


@torch.no_grad()
def probe_features(model, examples: Sequence[ClozeExample], pad_id: int, kind: str = "sop",
                   batch_size: int = 32) -> torch.Tensor:
    """Frozen features of each example's first row: the final hidden state at ``<sop>`` (``kind="sop"``)
    or the mean over Part A (``kind="mean"``)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    feats = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        rows = [ex.rows[0] for ex in chunk]
        batch = collate([ClozeExample([r], True, ex.label_tokens, ex.label, ex.lang) for r, ex in zip(rows, chunk)], pad_id)
        out = model(**{k: batch[k].to(device) for k in MODEL_KEYS}, output_hidden_states=True)
        hidden = out.hidden_states[-1].float()
        part_a = batch["part_a_length"].to(device)
        if kind == "sop":
            feats.append(hidden[torch.arange(len(chunk), device=device), part_a].cpu())
        else:
            keep = (torch.arange(hidden.shape[1], device=device)[None] < part_a[:, None]).float()
            feats.append(((hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)).cpu())
    model.train(was_training)
    return torch.cat(feats)


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, iters: int = 100):
    """Multinomial logistic regression (L-BFGS, float64): minimises mean cross-entropy +
    ``l2 * ||W||^2``; returns ``(W, b)``."""
    x = x.double()
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


PROBE_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int,
                 folds: int = 4, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Predictions on ``test_x`` of a logistic regression fitted on standardised ``train_x``, with the
    L2 strength from :data:`PROBE_L2_GRID` chosen by ``folds``-fold cross-validation (ties: stronger
    L2). Returns ``(predictions, chosen l2)``."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    n = len(xs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    folds = min(folds, n)
    best, best_l2 = -1.0, PROBE_L2_GRID[-1]
    for l2 in reversed(PROBE_L2_GRID):
        hits = 0
        for f in range(folds):
            held = order[f::folds]
            keep = torch.ones(n, dtype=torch.bool)
            keep[held] = False
            w, b = fit_logistic(xs[keep], train_y[keep], num_classes, l2)
            hits += int(((xs[held].double() @ w + b).argmax(-1) == train_y[held]).sum())
        if hits / n > best:
            best, best_l2 = hits / n, l2
    w, b = fit_logistic(xs, train_y, num_classes, best_l2)
    return (xt.double() @ w + b).argmax(-1), best_l2


# --- the loop --------------------------------------------------------------------------------------

def plot_accuracies(accuracies: dict[str, float], out_png: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, values = list(accuracies), list(accuracies.values())
    fig, ax = plt.subplots(figsize=(6, 3.5))
    bars = ax.bar(names, values, color=["#3b7dd8", "#7a9a01", "#c08a2b", "#999999"][: len(names)])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", va="bottom")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("eval accuracy")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return Path(out_png)


def run(cfg: ClozeConfig) -> dict[str, Any]:
    """Fine-tune, evaluate against the baselines, write the run directory; return the summary."""
    labels, patterns, verbalizers = resolve_task(cfg)
    accelerator = make_accelerator(cfg.grad_accum, cfg.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be a multiple of the {world} processes")
    run_dir = Path(cfg.output_dir)
    main_process = accelerator.is_main_process
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    logging.basicConfig(level=logging.INFO if main_process else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    set_seed(cfg.seed)

    model, tokenizer = load_checkpoint_dir(cfg.checkpoint)
    task = build_task(tokenizer, labels, patterns, verbalizers, cfg.scoring)
    train_file, eval_file = resolve_files(cfg) if main_process else (None, None)
    train_file, eval_file = _broadcast((train_file, eval_file), accelerator)
    train_rows = sample_train(read_rows(train_file, task, cfg.data), cfg.n_train, cfg.seed, cfg.balanced)
    eval_rows = read_rows(eval_file, task, cfg.data)

    def encode(rows):
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
    quiet = not main_process
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
    metrics = MetricLogger(run_dir, enabled=main_process)
    metrics.log(0, {"eval/accuracy": zero_shot["all"], "baseline/zero_shot": zero_shot["all"],
                    "baseline/linear_probe": probe["all"], "baseline/majority": majority["all"]})

    order_rng = random.Random(cfg.seed + 1)
    queue: list[int] = []

    def next_examples(count: int) -> list[ClozeExample]:
        picked = []
        while len(picked) < count:
            if not queue:
                queue.extend(order_rng.sample(range(len(train_examples)), len(train_examples)))
            picked.append(train_examples[queue.pop()])
        return picked

    model.train()
    progress = tqdm(total=cfg.max_steps, desc="cloze", disable=not main_process, dynamic_ncols=True)
    window, last_eval = [], dict(zero_shot)  # max_steps=0: the cloze model is the checkpoint
    for step in range(1, cfg.max_steps + 1):
        micro = [next_examples(cfg.batch_size) for _ in range(cfg.grad_accum)]
        local = [collate(mb[rank::world], task.pad_id) for mb in micro]
        try:
            loss, grad_norm = train_step(accelerator, model, optimizer, local, cfg.batch_size * cfg.grad_accum,
                                         cfg.optim.grad_clip, loss_fn=cloze_loss)
        except NonFiniteLoss as err:
            raise SystemExit(f"error: the cloze loss became NaN/inf at step {step}; lower optim.lr") from err
        scheduler.step()
        window.append(loss)
        progress.update(1)
        progress.set_postfix(loss=f"{loss:.3f}")
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            entry = {"train/loss": sum(window) / len(window), "train/lr": scheduler.get_last_lr()[0]}
            if grad_norm is not None:
                entry["train/grad_norm"] = grad_norm
            metrics.log(step, entry)
            window = []
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps:
            last_eval = accuracy_report(predict(model, eval_examples, task.pad_id, cfg.eval_batch_size, "eval", quiet),
                                        eval_examples)
            metrics.log(step, {f"eval/accuracy{'' if k == 'all' else '/' + k}": v for k, v in last_eval.items()})
            progress.write(f"step {step}: eval accuracy {last_eval['all']:.3f}")
    progress.close()

    save_final_model(accelerator, model, tokenizer, run_dir / "model")
    accuracies = {"cloze": last_eval["all"], "linear_probe": probe["all"], "zero_shot": zero_shot["all"],
                  "majority": majority["all"]}
    summary = {
        "accuracy": accuracies,
        "accuracy_by_lang": {"cloze": last_eval, "linear_probe": probe, "zero_shot": zero_shot, "majority": majority},
        "n_train": len(train_rows), "train_label_counts": dict(train_counts), "n_eval": len(eval_rows),
        "seed": cfg.seed, "steps": cfg.max_steps, "processes": world, "checkpoint": str(cfg.checkpoint),
        "train_file": train_file, "eval_file": eval_file,
        "scoring": {lang: "single" if s else "multi" for lang, s in task.single.items()},
        "verbalizer_tokens": {lang: {labels[k]: tokenizer.convert_ids_to_tokens(t) for k, t in enumerate(toks)}
                              for lang, toks in task.verbalizer_ids.items()},
        "probe": {"features": cfg.probe_features, "l2": probe_l2, "folds": cfg.probe_folds},
        "majority_label": labels[majority_label],
    }
    if main_process:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        plot_accuracies(accuracies, run_dir / "accuracy.png",
                        f"cloze vs baselines, n_train={len(train_rows)}, seed={cfg.seed}")
        logger.info("accuracy: %s", ", ".join(f"{k} {v:.3f}" for k, v in accuracies.items()))
    metrics.close()
    accelerator.end_training()
    return summary


def _broadcast(value, accelerator):
    """The main process's ``value`` on every process (it may build the world data)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def main(argv: list[str] | None = None) -> None:
    cfg = load_config(ClozeConfig, argv, prog="python -m glm_base.cloze")
    try:
        run(cfg)
    except (FileNotFoundError, ValueError, LaunchError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
