"""Packing SFT examples into rows, collating rows into batches, and LongAlign's loss weighting.

**Packing** (:func:`pack_examples`) puts several examples in one row of at most ``max_length`` tokens,
first-fit decreasing by default (longest first, each into the first row with room: few rows, little
padding, deterministic) or ``greedy`` (in the given order, a new row when the next example does not
fit). Inside a row, attention never crosses an example: every token carries its example's number in
``sequence_ids`` (1, 2, ...; 0 = padding), the model's argument for packed rows, and positions restart
at 0 for each example, so a packed example computes exactly what it computes alone.

- GLM-4 (causal): the examples are concatenated.
- GLM-1 (prefix, 2D positions): the model takes one ``part_a_length`` per row, and a key before it is
  visible to every query of the same sequence. So a packed row puts **all Part A's first, then all
  Part B's**: ``A_1 A_2 .. A_k B_1 B_2 .. B_k`` with ``part_a_length = sum(len(A_i))``. With
  ``sequence_ids`` this is exactly per-example prefix attention (A_i bidirectional, B_i sees all of A_i
  and is causal in itself, nothing crosses examples); the order of tokens in a row does not matter to
  GLM-1 beyond the mask, because its positions are explicit (learned absolute embeddings, no
  relative ones). No 4D mask is needed.

**Collating** (:func:`collate`) right-pads rows (each a list of examples; an unpacked row holds one)
into ``input_ids``, ``attention_mask``, ``position_ids`` ((B, L) for GLM-4, (B, 2, L) for GLM-1),
``part_a_length`` (GLM-1), ``sequence_ids`` (when a row holds several examples), ``shift_labels``
(targets aligned with the inputs, -100 = none; no target ever crosses an example),
``loss_weights`` (float32, per token) and, per row, ``num_examples``, ``num_target_tokens`` and
``num_loss_items`` (every tensor has the row dimension first, so the kit's ``shard_rows`` splits a
global batch between processes).

**Loss weighting.** ``"example"`` (LongAlign): every example counts the same whatever its length and
however it is packed -- token weight ``1/N_i`` (``N_i`` = target tokens of example ``i``) and the loss
of a global batch of ``M`` examples is ``(1/M) * sum_i L_i / N_i`` (``L_i`` = summed cross-entropy of
example ``i``). ``"token"``: weight 1 and the loss is the mean over the global batch's target tokens
(what a per-pack token mean approximates, biased towards long examples). Either way a micro-batch's
loss is ``sum_t w_t * CE_t / num_items`` (:func:`sft_loss`, the kit's loss-function signature), where
the trainer's step normaliser is the ``num_loss_items`` of the step's *global* batch (examples, or
target tokens: the sum of the collated ``num_loss_items``) and ``train_step`` hands each micro-batch
its share, so the update is exact under gradient accumulation and several processes.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from glm_base.infilling import IGNORE_INDEX

from .sft_data import SFTExample

LOSS_WEIGHTINGS = ("example", "token")
PACKING_STRATEGIES = ("ffd", "greedy")


def pack_examples(lengths: Sequence[int], max_length: int, strategy: str = "ffd") -> list[list[int]]:
    """Group example indices into rows of at most ``max_length`` tokens.

    ``ffd``: first-fit decreasing (sorted by length, longest first, ties by index; rows in the order
    they are opened, examples in each row in the order they were placed). ``greedy``: in index order.
    Raises ``ValueError`` naming the first example longer than ``max_length``.
    """
    if strategy not in PACKING_STRATEGIES:
        raise ValueError(f"unknown packing strategy {strategy!r}; expected one of {list(PACKING_STRATEGIES)}")
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}: it cannot be packed")
    rows: list[list[int]] = []
    room: list[int] = []
    if strategy == "greedy":
        for i, n in enumerate(lengths):
            if not rows or room[-1] < n:
                rows.append([])
                room.append(max_length)
            rows[-1].append(i)
            room[-1] -= n
        return rows
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    for i in order:
        n = lengths[i]
        for r, free in enumerate(room):  # first fit; rows are few, a linear scan is fine
            if free >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_length - n)
    return rows


def make_rows(examples: Sequence[SFTExample], max_length: int | None = None,
              strategy: str = "ffd") -> list[list[SFTExample]]:
    """The rows batching works on: one example per row (``max_length=None``: no packing), or the
    examples packed into rows of at most ``max_length`` tokens by :func:`pack_examples`."""
    if max_length is None:
        return [[ex] for ex in examples]
    return [[examples[i] for i in row] for row in pack_examples([len(ex) for ex in examples], max_length, strategy)]


def token_weights(example: SFTExample, loss_weighting: str = "example") -> np.ndarray:
    """Per-token loss weights of one example, aligned with ``shift_labels``: 0 where there is no
    target, else ``1/N_i`` (``"example"``) or 1 (``"token"``)."""
    if loss_weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"unknown loss_weighting {loss_weighting!r}; expected one of {list(LOSS_WEIGHTINGS)}")
    has_target = np.asarray(example.shift_labels) != IGNORE_INDEX
    n = int(has_target.sum())
    if n == 0:
        raise ValueError(f"example from {example.source or '?'} has no target token")
    value = 1.0 / n if loss_weighting == "example" else 1.0
    return has_target.astype(np.float64) * value


def _row_order(row: Sequence[SFTExample]) -> list[tuple[int, slice]]:
    """(example number, token slice) in row order: whole examples (GLM-4), or Part A's then Part B's."""
    if row[0].part_a_length is None:
        return [(k, slice(None)) for k in range(len(row))]
    return [(k, slice(0, ex.part_a_length)) for k, ex in enumerate(row)] + \
           [(k, slice(ex.part_a_length, None)) for k, ex in enumerate(row)]


def collate(rows: Sequence[Sequence[SFTExample]], pad_id: int, loss_weighting: str = "example",
            pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch tensors of ``rows`` (see the module docstring). All examples must be of one
    architecture; a row may be a single example (no packing)."""
    if not rows or any(len(row) == 0 for row in rows):
        raise ValueError("collate needs at least one row and no empty row")
    archs = {ex.architecture for row in rows for ex in row}
    if len(archs) != 1:
        raise ValueError(f"a batch mixes architectures {sorted(archs)}")
    glm1 = archs == {"glm1"}
    length = max(sum(len(ex) for ex in row) for row in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    b = len(rows)
    input_ids = np.full((b, length), pad_id, dtype=np.int64)
    labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
    weights = np.zeros((b, length), dtype=np.float32)
    seq = np.zeros((b, length), dtype=np.int64)
    pos = np.zeros((b, 2, length), dtype=np.int64)
    part_a = np.zeros(b, dtype=np.int64)
    for r, row in enumerate(rows):
        row_weights = [token_weights(ex, loss_weighting) for ex in row]
        cur = 0
        for k, piece in _row_order(row):
            ex = row[k]
            ids = ex.input_ids[piece]
            end = cur + len(ids)
            input_ids[r, cur:end] = ids
            labels[r, cur:end] = ex.shift_labels[piece]
            weights[r, cur:end] = row_weights[k][piece]
            seq[r, cur:end] = k + 1
            p = np.asarray(ex.position_ids)
            if glm1:
                pos[r, :, cur:end] = p[:, piece]
            else:
                pos[r, 0, cur:end] = p[piece]
            cur = end
        part_a[r] = sum(ex.part_a_length for ex in row) if glm1 else 0
    row_examples = np.array([len(row) for row in rows], dtype=np.int64)
    row_targets = (labels != IGNORE_INDEX).sum(axis=1).astype(np.int64)
    batch = {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy((seq > 0).astype(np.int64)),
        "position_ids": torch.from_numpy(pos if glm1 else pos[:, 0].copy()),
        "shift_labels": torch.from_numpy(labels),
        "loss_weights": torch.from_numpy(weights),
        "num_examples": torch.from_numpy(row_examples),
        "num_target_tokens": torch.from_numpy(row_targets),
        "num_loss_items": torch.from_numpy(row_examples if loss_weighting == "example" else row_targets),
    }
    if glm1:
        batch["part_a_length"] = torch.from_numpy(part_a)
    if any(len(row) > 1 for row in rows):
        batch["sequence_ids"] = torch.from_numpy(seq)
    return batch


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids", "part_a_length", "sequence_ids")


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The entries of a collated batch that ``GLMForCausalLM.forward`` takes (targets excluded)."""
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


def weighted_token_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t * CE_t`` over tokens with a target (-100 = none), in fp32. ``logits`` (..., V)."""
    logits = logits.float().reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1).to(logits.device)
    ce = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="none")
    return (ce * weights.reshape(-1).to(ce.device, torch.float32)).sum()


_NO_LOGITS = torch.zeros(0, dtype=torch.long)


def sft_loss(model, batch: dict[str, Any], num_items: int | float | torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(sum_t w_t * CE_t / num_items, {"accuracy": sum_t w_t * correct_t / num_items})`` for a
    collated batch: the training kit's loss function (``num_items`` = this micro-batch's share of the
    step's global ``num_loss_items``; default: the batch's own, which gives its mean). With example
    weighting the accuracy is the mean of per-example accuracies.

    The model (``GLMForCausalLM``, possibly wrapped by DDP/DeepSpeed or PEFT) runs its own forward
    with no logits (``logits_to_keep`` empty; the wrapper sees a normal forward), and the output layer
    is applied to the final hidden states only where there is a target: a 32k-token row's logits
    would not fit, and most positions of an SFT row have no target. The batch's tensors must be on
    the model's device.
    """
    inputs = model_inputs(batch)  # on the model's device already (the trainer moves every batch)
    no_logits = _NO_LOGITS.to(inputs["input_ids"].device)
    out = model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=no_logits)
    hidden = out.hidden_states[-1]
    targets = batch["shift_labels"].to(hidden.device)
    has_target = targets != IGNORE_INDEX
    logits = output_layer(model)(hidden[has_target]).float()
    weights = batch["loss_weights"].to(hidden.device, torch.float32)[has_target]
    total = weighted_token_loss(logits, targets[has_target], weights)
    correct = ((logits.argmax(-1) == targets[has_target]).float() * weights).sum()
    if num_items is None:
        num_items = batch["num_loss_items"].sum()
    num_items = torch.as_tensor(num_items, dtype=torch.float32, device=total.device)
    return total / num_items, {"accuracy": correct.detach() / num_items}


def output_layer(model) -> torch.nn.Module:
    """The LM head of a model, through DDP/DeepSpeed (``.module``) and PEFT wrappers."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model).get_output_embeddings()
