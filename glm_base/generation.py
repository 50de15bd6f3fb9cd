"""Blank infilling at inference: fill every ``[MASK]``/``[sMASK]`` and continue after ``[gMASK]``.

The text (with its mask tokens) is Part A, followed by ``<|endoftext|>`` as in pretraining, except
when it ends in ``[gMASK]`` (document-suffix generation, which the model learned without it). Masks
are filled left to right: for each, ``<sop>`` is appended with 2D position (index of the mask, 1) and
``generate`` runs with the KV cache, the text position staying at the mask and the span position
counting up, until ``<eop>`` (``[MASK]``/``[sMASK]``) or ``<|endoftext|>`` (``[gMASK]``). Each filled
span stays in Part B, so later spans see earlier ones, as in training.

A space written before a mask (``"capital of [MASK]"``) is dropped: byte-level BPE puts a word's
leading space inside the word, so in training the space belonged to the masked span and the model
generates it itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .tokenizer import special_token_ids


_SPACE_BEFORE_MASK = re.compile(r" (\[(?:MASK|sMASK|gMASK)\])")


@dataclass
class InfillResult:
    text: str
    spans: list[str]


@torch.no_grad()
def infill_ids(model, tokenizer, text: str, max_new_tokens: int = 32, max_new_tokens_gmask: int = 256,
               do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0) -> tuple[list[int], list[list[int]]]:
    """Token-level infill: returns (completed token ids, generated ids of each span)."""
    ids = special_token_ids(tokenizer)
    text = _SPACE_BEFORE_MASK.sub(r"\1", text)
    tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
    masks = set(ids.masks)
    suffix_mode = bool(tokens) and tokens[-1] == ids.gmask
    part_a = tokens if suffix_mode else tokens + [ids.eos]
    mask_positions = [i for i, t in enumerate(part_a) if t in masks]
    if not mask_positions:
        raise ValueError("text contains no [MASK], [sMASK] or [gMASK] to fill")
    device = next(model.parameters()).device
    sequence = list(part_a)
    text_pos, span_pos = list(range(len(part_a))), [0] * len(part_a)
    fills: list[list[int]] = []
    for position in mask_positions:
        is_gmask = part_a[position] == ids.gmask
        sequence.append(ids.sop)
        text_pos.append(position)
        span_pos.append(1)
        stop = [ids.eos] if is_gmask and position == len(part_a) - 1 else [ids.eop, ids.eos]
        input_ids = torch.tensor([sequence], device=device)
        positions = torch.tensor([[text_pos, span_pos]], device=device)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
        output = model.generate(
            input_ids=input_ids, position_ids=positions, part_a_length=torch.tensor([len(part_a)], device=device),
            max_new_tokens=max_new_tokens_gmask if is_gmask else max_new_tokens, eos_token_id=stop,
            pad_token_id=ids.pad, **sampling,
        )[0, len(sequence):].tolist()
        fill = []
        for token in output:
            if token in stop:
                break
            fill.append(token)
        fills.append(fill)
        closing = fill + [stop[0]]
        sequence.extend(closing)
        text_pos.extend([position] * len(closing))
        span_pos.extend(range(2, 2 + len(closing)))
    fill_at = dict(zip(mask_positions, fills))
    body = part_a if suffix_mode else part_a[:-1]
    completed: list[int] = []
    for i, token in enumerate(body):
        completed.extend(fill_at[i] if i in fill_at else [token])
    return completed, fills


def infill(model, tokenizer, text: str, **kwargs) -> str:
    """The text with every mask filled in (see module docstring); keyword arguments as
    :func:`infill_ids` (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``...)."""
    return infill_with_spans(model, tokenizer, text, **kwargs).text


def infill_with_spans(model, tokenizer, text: str, **kwargs) -> InfillResult:
    completed, fills = infill_ids(model, tokenizer, text, **kwargs)
    return InfillResult(text=tokenizer.decode(completed), spans=[tokenizer.decode(f) for f in fills])


@torch.no_grad()
def span_log_likelihoods(model, tokenizer, text: str, candidates: list[str]) -> list[float]:
    """``log P(candidate + <eop> | text)`` for each candidate as the span of the text's single
    ``[MASK]``/``[sMASK]``: what GLM thinks of each possible filling (the multi-token cloze score).
    Each candidate is laid out as a training row masking it (:func:`~glm_base.infilling.build_row`),
    so positions are those of pretraining and of :func:`infill_ids`; one batch scores them all."""
    from .infilling import build_row, pad_rows
    from .scoring import sequence_log_likelihoods

    ids = special_token_ids(tokenizer)
    spaced = _SPACE_BEFORE_MASK.search(text) is not None
    part_a = tokenizer(_SPACE_BEFORE_MASK.sub(r"\1", text), add_special_tokens=False)["input_ids"] + [ids.eos]
    masks = [i for i, t in enumerate(part_a) if t in (ids.mask, ids.smask)]
    if len(masks) != 1:
        raise ValueError(f"text must contain exactly one [MASK] or [sMASK], found {len(masks)}")
    if not candidates:
        return []
    at = masks[0]
    rows = []
    for candidate in candidates:
        span = tokenizer((" " if spaced else "") + candidate, add_special_tokens=False)["input_ids"]
        tokens = part_a[:at] + span + part_a[at + 1:]
        rows.append(build_row(tokens, [(at, at + len(span))], part_a[at], ids.sop, ids.eop))
    batch = pad_rows(rows, ids.pad)
    device = next(model.parameters()).device
    logits = model(**{k: batch[k].to(device) for k in ("input_ids", "position_ids", "attention_mask", "part_a_length")}, use_cache=False).logits
    return sequence_log_likelihoods(logits, batch["shift_labels"]).tolist()
