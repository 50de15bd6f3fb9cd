"""The cloze task of PET-style fine-tuning: patterns, verbalizers, the layout of an example, label scores.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from common.errors import UserError

from .infilling import IGNORE_INDEX, InfillingRow, build_row, pad_rows
from .scoring import sequence_log_likelihoods
from .tokenizer import special_token_ids

MASK_PLACEHOLDER = "[MASK]"
TEXT_PLACEHOLDER = "{text}"


def world_task() -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """The synthetic world's cloze task: (labels, patterns, verbalizers)."""
    from world.cloze import LABELS, PATTERNS, VERBALIZERS

    return list(LABELS), dict(PATTERNS), {lang: dict(v) for lang, v in VERBALIZERS.items()}


def resolve_task(cfg) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """Labels, patterns and verbalizers from the config (empty fields = the world's), checked.

    Raises :class:`UserError` naming the config key when a pattern lacks ``{text}`` or has not exactly one
    ``[MASK]``, a language has a pattern but no verbalizers (or the reverse), or a label has no
    verbalizer in some language.
    """
    w_labels, w_patterns, w_verbalizers = world_task()
    patterns = dict(cfg.patterns) or w_patterns
    verbalizers = {k: dict(v) for k, v in cfg.verbalizers.items()} or w_verbalizers
    labels = list(cfg.labels) or (list(next(iter(verbalizers.values()))) if cfg.verbalizers else w_labels)
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise UserError(f"config: labels must be at least two distinct names, got {labels}")
    for lang, pattern in patterns.items():
        if TEXT_PLACEHOLDER not in pattern or pattern.count(MASK_PLACEHOLDER) != 1:
            raise UserError(f"config: patterns.{lang} = {pattern!r} must contain {TEXT_PLACEHOLDER} and exactly "
                             f"one {MASK_PLACEHOLDER}")
        if lang not in verbalizers:
            raise UserError(f"config: patterns.{lang} has no verbalizers.{lang} (verbalizers for {sorted(verbalizers)})")
    for lang, words in verbalizers.items():
        if lang not in patterns:
            raise UserError(f"config: verbalizers.{lang} has no patterns.{lang} (patterns for {sorted(patterns)})")
        for label in labels:
            if label not in words or not str(words[label]).strip():
                raise UserError(f"config: verbalizers.{lang} has no word for label {label!r} "
                                 f"(labels: {labels}; verbalizers.{lang}: {words})")
        extra = sorted(set(words) - set(labels))
        if extra:
            raise UserError(f"config: verbalizers.{lang} names {extra}, which are not among the labels {labels}")
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
            raise UserError(f"config: verbalizers.{lang} gives two labels the same tokens: {words}")
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
        rows = (row_of[~single][:, None] + torch.arange(k, device=device)).reshape(-1)
        scores[~single] = sequence_log_likelihoods(logits[rows], batch["targets"].to(device)[rows]).view(-1, k)
    return scores


def label_scores(model, batch: dict[str, Any]) -> torch.Tensor:
    """One forward of ``model`` over a :func:`collate` batch, then :func:`scores_from_logits`."""
    device = next(model.parameters()).device
    out = model(**{key: batch[key].to(device) for key in MODEL_KEYS}, use_cache=False)
    return scores_from_logits(out.logits, batch)


def cloze_loss(model, batch: dict[str, Any], num_items: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Sum over the batch of the cross-entropy over label scores, divided by ``num_items`` (the
    step's examples); the metric ``accuracy`` is the share of the step's examples predicted right."""
    scores = label_scores(model, batch)
    labels = batch["labels"].to(scores.device)
    correct = (scores.argmax(-1) == labels).sum().float()
    return F.cross_entropy(scores, labels, reduction="sum") / num_items, {"accuracy": correct / num_items}


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
