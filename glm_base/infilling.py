"""GLM autoregressive blank-infilling data: the collator that turns documents into GLM training rows.

Follows THUDM/GLM ``blocklm_utils.py`` (``ConstructBlockStrategy``), written anew. One example is one
tokenized document ``{"input_ids": [...]}`` (the data helpers below append ``<|endoftext|>``, which is
then its never-masked last token). For each document of ``n`` tokens:

1. **Spans** are chosen by the batch's objective (drawn once per batch, see below).
2. **Part A** is the document with each span replaced by one mask token (``[MASK]``, ``[sMASK]`` or
   ``[gMASK]``). It attends to itself bidirectionally.
3. **Part B** holds the spans in a random order (a permutation, as THUDM's ``shuffle_blocks``); span
   ``s`` contributes the inputs ``<sop> s_1 .. s_m`` and the targets ``s_1 .. s_m <eop>``. Targets are
   aligned with the inputs (``shift_labels``: the target at position t is predicted from input t; the
   model must not shift them). Part B attends to all of Part A and causally to itself.
4. **Positions** ``(2, L)``: row 0 is the index in Part A (the corrupted text); every Part B token of a
   span gets the Part A index of that span's mask token. Row 1 is 0 in Part A and ``1 .. m+1`` along a
   span in Part B.

The output row has ``n + 2k`` tokens for ``k`` spans (Part A ``n - sum(m) + k``, Part B ``sum(m) + k``),
one fewer for document-suffix rows, which have no ``<eop>``.

Objectives (``objective_probs``, default GLM-10B's ``{"blank": .5, "sentence": .3, "document": .2}``;
``{"blank": 1.0}`` forces one). One is drawn per batch, as in THUDM, so a batch is homogeneous:

- ``blank`` (``[MASK]``): span lengths are drawn from Poisson(``poisson_lambda``) restricted to
  ``1..max_span_length`` (39) and renormalised, until their sum reaches ``floor(mask_ratio * n)`` (at
  least 1). The lengths are shuffled and placed uniformly "stars and bars" style: sorted offsets in
  the free room, at least one kept token between spans, never over the last token. If the spans do
  not fit (short documents only) the lengths are redrawn up to ``max_placement_tries`` times, then the
  document is skipped and counted as ``unfit`` (THUDM drops it at once).
- ``sentence`` (``[sMASK]``): the document is cut into sentences after every token whose decoded
  text contains one of ``sentence_end_chars`` (``. ! ? 。 ！ ？`` and newline) and around special
  tokens; sentences are shuffled and whole sentences are masked until ``floor(mask_ratio * n)``
  tokens are covered. Neighbouring masked sentences may touch (as in THUDM); the last token is never
  masked.
- ``document`` (``[gMASK]``): one span of ``g`` tokens, ``g`` uniform in
  ``[max(1, floor(document_min_ratio * n)), n - 1]`` (50-100% of the document). Two branches, as in
  THUDM's ``gpt`` mode (its ``gpt_infill_prob``):

  * with probability ``document_suffix_prob`` (0.5), **suffix generation**: the span is the last
    ``g`` tokens; Part A = prefix + ``[gMASK]``, Part B = ``<sop>`` + span[:-1] with targets = span,
    *no* ``<eop>`` (the document's own ``<|endoftext|>`` ends it); span positions ``1..g``;
  * otherwise **one long span at a random place** (never over the last token), laid out like any
    blank span, with ``<eop>``.

  Difference from THUDM: THUDM draws one maximum generation length per batch from the shortest and
  longest documents of the batch; here ``g`` is drawn per document, so every document gets 50-100%.

Robustness: empty documents and documents shorter than ``min_length`` (default ``ceil(1/mask_ratio)``,
below which ``floor(mask_ratio * n)`` is 0) are skipped and counted; documents longer than
:func:`max_document_length` (the most that is guaranteed to fit in ``max_length`` whatever spans are
drawn) are cut into pieces with :func:`chunk_document` and each piece becomes a row. Counters are in
``collator.counters``. If every document of a batch is skipped, the call raises ``ValueError`` with the
counts. Determinism: call ``i`` uses a generator seeded by ``(seed, DataLoader worker id, i)``, so a
given seed gives the same batches, workers draw different masks, and ``state_dict()`` /
``load_state_dict()`` resume the stream exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .tokenizer import special_token_ids

OBJECTIVES: tuple[str, ...] = ("blank", "sentence", "document")
DEFAULT_OBJECTIVE_PROBS: dict[str, float] = {"blank": 0.5, "sentence": 0.3, "document": 0.2}
SENTENCE_END_CHARS = ".!?。！？\n"
IGNORE_INDEX = -100


# --- pure helpers -------------------------------------------------------------------------------
def truncated_poisson_probs(lam: float = 3.0, max_length: int = 39) -> np.ndarray:
    """P(length = 1..max_length) of Poisson(lam) restricted to 1..max_length and renormalised."""
    ks = np.arange(1, max_length + 1)
    log_p = ks * math.log(lam) - lam - np.array([math.lgamma(k + 1) for k in ks])
    p = np.exp(log_p)
    return p / p.sum()


def mask_target(n: int, mask_ratio: float) -> int:
    """Tokens to cover in a document of ``n`` tokens: ``floor(mask_ratio * n)``, at least 1."""
    return max(1, int(math.floor(mask_ratio * n + 1e-9)))


def max_document_length(max_length: int, mask_ratio: float = 0.15) -> int:
    """The longest document whose row is guaranteed to fit in ``max_length`` tokens.

    A document of ``n`` tokens with ``k`` spans gives a row of ``n + 2k`` tokens. Spans are drawn only
    until ``mask_target(n)`` tokens are covered and each has at least one token, so ``k <=
    mask_target(n)`` for every objective (``k = 1`` for document mode): the bound is the largest ``n``
    with ``n + 2 * mask_target(n) <= max_length`` (394 for 512 at 0.15). Typical blank rows are about
    ``1.1 n`` long.
    """
    if max_length < 3:
        raise ValueError(f"max_length={max_length} is too small: a row needs at least 3 tokens")
    n = max_length
    while n > 1 and n + 2 * mask_target(n, mask_ratio) > max_length:
        n -= 1
    return n


def chunk_document(
    input_ids: Sequence[int], max_length: int, mask_ratio: float = 0.15, min_length: int = 1
) -> list[list[int]]:
    """Cut one tokenized document into consecutive pieces of at most
    ``max_document_length(max_length, mask_ratio)`` tokens, leaving room for Part B. A final piece
    shorter than ``min_length`` is dropped."""
    size = max_document_length(max_length, mask_ratio)
    ids = list(input_ids)
    pieces = [ids[i : i + size] for i in range(0, len(ids), size)]
    return [p for p in pieces if len(p) >= min_length]


def chunk_documents(
    docs: Iterable[Sequence[int]], max_length: int, mask_ratio: float = 0.15, min_length: int = 1
) -> Iterator[list[int]]:
    """:func:`chunk_document` over many documents (e.g. to preprocess a tokenized corpus)."""
    for doc in docs:
        yield from chunk_document(doc, max_length, mask_ratio, min_length)


@dataclass
class InfillingRow:
    """One blank-infilling row before padding (all arrays int64, length ``len(input_ids)``)."""

    input_ids: np.ndarray
    position_ids: np.ndarray  # (2, L)
    shift_labels: np.ndarray
    part_a_length: int


def build_row(
    tokens: Sequence[int] | np.ndarray,
    spans: Sequence[tuple[int, int]],
    mask_id: int,
    sop_id: int,
    eop_id: int,
    order: Sequence[int] | None = None,
    suffix: bool = False,
) -> InfillingRow:
    """Lay out one document with the given spans (``[start, end)`` in ``tokens``, disjoint).

    ``order`` is the Part B order as indices into ``spans`` sorted by start (default: by start).
    ``suffix=True`` (one span that ends the document) writes THUDM's generation layout: Part B inputs
    ``<sop>`` + span[:-1], targets = span, no ``<eop>``.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    spans = sorted((int(s), int(e)) for s, e in spans)
    n = len(tokens)
    if suffix and (len(spans) != 1 or spans[0][1] != n):
        raise ValueError("suffix layout needs exactly one span that ends the document")
    # Part A: keep everything outside spans; the first token of each span becomes the mask token.
    keep = np.ones(n, dtype=bool)
    a_tokens = tokens.copy()
    for s, e in spans:
        if not 0 <= s < e <= n:
            raise ValueError(f"span ({s}, {e}) is outside a document of {n} tokens")
        keep[s + 1 : e] = False
        a_tokens[s] = mask_id
    index_in_a = np.cumsum(keep) - 1
    part_a = a_tokens[keep]
    len_a = len(part_a)
    if order is None:
        order = range(len(spans))
    b_len = sum(e - s + (0 if suffix else 1) for s, e in spans)
    total = len_a + b_len
    input_ids = np.empty(total, dtype=np.int64)
    labels = np.full(total, IGNORE_INDEX, dtype=np.int64)
    pos = np.zeros((2, total), dtype=np.int64)
    input_ids[:len_a] = part_a
    pos[0, :len_a] = np.arange(len_a)
    cur = len_a
    for j in order:
        s, e = spans[j]
        m = e - s
        width = m if suffix else m + 1
        input_ids[cur] = sop_id
        input_ids[cur + 1 : cur + width] = tokens[s : s + width - 1]
        labels[cur : cur + m] = tokens[s:e]
        if not suffix:
            labels[cur + m] = eop_id
        pos[0, cur : cur + width] = index_in_a[s]
        pos[1, cur : cur + width] = np.arange(1, width + 1)
        cur += width
    return InfillingRow(input_ids, pos, labels, len_a)


def place_spans(lengths: Sequence[int], room: int, rng: np.random.Generator, offset: int = 0) -> list[tuple[int, int]]:
    """Place spans of ``lengths`` (in this order) in ``[offset, offset + room)`` with at least one
    free token between neighbours: sorted uniform offsets in the free room ("stars and bars", as
    THUDM's ``sample_spans``). Requires ``sum(lengths) + len(lengths) - 1 <= room``."""
    k = len(lengths)
    free = room - int(sum(lengths)) - (k - 1)
    if free < 0:
        raise ValueError(f"spans {list(lengths)} do not fit in {room} tokens")
    places = np.sort(rng.integers(0, free + 1, size=k))
    spans = []
    shift = offset
    for place, length in zip(places.tolist(), lengths):
        start = shift + place
        spans.append((start, start + int(length)))
        shift += int(length) + 1
    return spans


# --- the collator -------------------------------------------------------------------------------
class BlankInfillingCollator:
    """Collate ``[{"input_ids": [...]}, ...]`` into a GLM blank-infilling batch (see module docstring).

    Returns a dict of int64 tensors, right-padded to the longest row of the batch (at most
    ``max_length``): ``input_ids (B, L)``, ``position_ids (B, 2, L)``, ``part_a_length (B,)``,
    ``shift_labels (B, L)`` (-100 on Part A and padding), ``attention_mask (B, L)`` (1 real, 0 pad).
    ``B`` can be larger than the number of examples (chunked documents) or smaller (skipped ones).
    The batch's objective is in ``self.last_objective`` and the spans of each row (``[start, end)`` in
    its document, sorted) in ``self.last_spans``.
    """

    def __init__(
        self,
        tokenizer,
        max_length: int = 512,
        mask_ratio: float = 0.15,
        poisson_lambda: float = 3.0,
        objective_probs: Mapping[str, float] | None = None,
        seed: int = 0,
        max_span_length: int = 39,
        document_min_ratio: float = 0.5,
        document_suffix_prob: float = 0.5,
        min_length: int | None = None,
        sentence_end_chars: str = SENTENCE_END_CHARS,
        max_placement_tries: int = 10,
        pad_to_multiple_of: int | None = None,
    ):
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        probs = dict(DEFAULT_OBJECTIVE_PROBS if objective_probs is None else objective_probs)
        unknown = set(probs) - set(OBJECTIVES)
        if unknown:
            raise ValueError(f"unknown objectives {sorted(unknown)} in objective_probs; expected some of {OBJECTIVES}")
        if any(p < 0 for p in probs.values()) or sum(probs.values()) <= 0:
            raise ValueError(f"objective_probs must be non-negative and not all zero, got {probs}")
        total = sum(probs.values())
        self.objective_probs = {o: probs.get(o, 0.0) / total for o in OBJECTIVES}
        self._objective_cdf = np.cumsum([self.objective_probs[o] for o in OBJECTIVES])

        self.tokenizer = tokenizer
        self.ids = special_token_ids(tokenizer)
        self.max_length = int(max_length)
        self.mask_ratio = float(mask_ratio)
        self.max_doc_length = max_document_length(self.max_length, self.mask_ratio)
        self.min_length = int(min_length) if min_length is not None else math.ceil(1.0 / mask_ratio - 1e-9)
        self.min_length = max(self.min_length, 2)
        self.seed = int(seed)
        self.document_min_ratio = float(document_min_ratio)
        self.document_suffix_prob = float(document_suffix_prob)
        self.max_placement_tries = int(max_placement_tries)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.span_probs = truncated_poisson_probs(poisson_lambda, max_span_length)
        self._span_cdf = np.cumsum(self.span_probs)
        self._span_cdf[-1] = 1.0
        self._mean_span = float((np.arange(1, max_span_length + 1) * self.span_probs).sum())

        # per-vocab tables: does the token's text end a sentence, is it a special token
        vocab_size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
        texts = tokenizer.batch_decode([[i] for i in range(vocab_size)])
        self._ends_sentence = np.array([any(c in t for c in sentence_end_chars) for t in texts], dtype=bool)
        self._is_special = np.zeros(vocab_size, dtype=bool)
        self._is_special[list(tokenizer.all_special_ids) + list(self.ids.all)] = True
        self._ends_sentence &= ~self._is_special

        self.calls = 0
        self.counters: dict[str, int] = {
            "batches": 0, "rows": 0, "blank": 0, "sentence": 0, "document": 0,
            "empty": 0, "too_short": 0, "chunked": 0, "unfit": 0, "no_sentence": 0,
        }
        self.last_objective: str | None = None
        self.last_spans: list[list[tuple[int, int]]] = []

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "calls": self.calls, "counters": dict(self.counters)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seed = int(state["seed"])
        self.calls = int(state["calls"])
        self.counters.update(state.get("counters", {}))

    def _rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker, self.calls])
        self.calls += 1
        return rng

    # -- span choice ---------------------------------------------------------------------------
    def _draw_lengths(self, target: int, rng: np.random.Generator) -> list[int]:
        """Truncated-Poisson lengths drawn one after another until their sum reaches ``target``."""
        out: list[int] = []
        need = target
        while need > 0:
            m = int(need / self._mean_span * 1.3) + 4
            draws = np.searchsorted(self._span_cdf, rng.random(m), side="right") + 1
            csum = np.cumsum(draws)
            idx = int(np.searchsorted(csum, need, side="left"))
            if idx < m:
                out.extend(draws[: idx + 1].tolist())
                return out
            out.extend(draws.tolist())
            need -= int(csum[-1])
        return out

    def blank_spans(self, n: int, rng: np.random.Generator) -> list[tuple[int, int]] | None:
        """Spans for blank infilling in a document of ``n`` tokens, or None if they never fit."""
        target = mask_target(n, self.mask_ratio)
        room = n - 1  # the last token is never masked
        for _ in range(self.max_placement_tries):
            lengths = self._draw_lengths(target, rng)
            if sum(lengths) + len(lengths) - 1 <= room:
                rng.shuffle(lengths)
                return place_spans(lengths, room, rng)
        return None

    def sentence_spans(self, tokens: np.ndarray, rng: np.random.Generator) -> list[tuple[int, int]] | None:
        """Whole sentences, shuffled, until ``floor(mask_ratio * n)`` tokens are covered."""
        n = len(tokens)
        ends = self._ends_sentence[tokens]
        special = self._is_special[tokens]
        sentences = []
        start = 0
        for i in range(n - 1):  # the last token is never masked
            if special[i]:
                if start < i:
                    sentences.append((start, i))
                start = i + 1
            elif ends[i]:
                sentences.append((start, i + 1))
                start = i + 1
        if start < n - 1:
            sentences.append((start, n - 1))
        if not sentences:
            return None
        order = rng.permutation(len(sentences))
        target = mask_target(n, self.mask_ratio)
        chosen, covered = [], 0
        for j in order.tolist():
            s, e = sentences[j]
            chosen.append((s, e))
            covered += e - s
            if covered >= target:
                break
        return sorted(chosen)

    def document_span(self, n: int, rng: np.random.Generator) -> tuple[tuple[int, int], bool]:
        """One long span of 50-100% of the document; returns ``(span, is_suffix)``."""
        high = n - 1
        low = min(max(1, int(math.floor(self.document_min_ratio * n + 1e-9))), high)
        g = int(rng.integers(low, high + 1))
        if rng.random() < self.document_suffix_prob:
            return (n - g, n), True
        start = int(rng.integers(0, n - 1 - g + 1))
        return (start, start + g), False

    # -- main entry ----------------------------------------------------------------------------
    def _documents(self, examples: Sequence[Mapping[str, Any]]) -> list[np.ndarray]:
        docs = []
        for ex in examples:
            ids = ex["input_ids"] if isinstance(ex, Mapping) else ex
            arr = np.asarray(ids, dtype=np.int64).reshape(-1)
            if arr.size == 0:
                self.counters["empty"] += 1
                continue
            if arr.size > self.max_doc_length:
                self.counters["chunked"] += 1
                pieces = [arr[i : i + self.max_doc_length] for i in range(0, arr.size, self.max_doc_length)]
            else:
                pieces = [arr]
            for piece in pieces:
                if piece.size < self.min_length:
                    self.counters["too_short"] += 1
                else:
                    docs.append(piece)
        return docs

    def draw_objective(self, rng: np.random.Generator) -> str:
        return OBJECTIVES[int(np.searchsorted(self._objective_cdf, rng.random(), side="right").clip(0, 2))]

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rng = self._rng()
        objective = self.draw_objective(rng)
        self.last_objective = objective
        self.counters["batches"] += 1
        self.counters[objective] += 1
        docs = self._documents(examples)
        rows: list[InfillingRow] = []
        spans_out: list[list[tuple[int, int]]] = []
        ids = self.ids
        for tokens in docs:
            n = len(tokens)
            suffix = False
            if objective == "blank":
                spans = self.blank_spans(n, rng)
                mask_id = ids.mask
                if spans is None:
                    self.counters["unfit"] += 1
                    continue
            elif objective == "sentence":
                spans = self.sentence_spans(tokens, rng)
                mask_id = ids.smask
                if spans is None:
                    self.counters["no_sentence"] += 1
                    continue
            else:
                span, suffix = self.document_span(n, rng)
                spans = [span]
                mask_id = ids.gmask
            order = rng.permutation(len(spans))
            rows.append(build_row(tokens, spans, mask_id, ids.sop, ids.eop, order=order, suffix=suffix))
            spans_out.append(spans)
        self.last_spans = spans_out
        if not rows:
            raise ValueError(
                f"no usable document in a batch of {len(examples)} examples "
                f"(counters so far: {self.counters}); filter empty/short documents before collating"
            )
        self.counters["rows"] += len(rows)
        return self.pad(rows)

    def pad(self, rows: Sequence[InfillingRow]) -> dict[str, torch.Tensor]:
        """Right-pad rows into the batch tensors."""
        return pad_rows(rows, self.ids.pad, self.pad_to_multiple_of)


def pad_rows(rows: Sequence[InfillingRow], pad_id: int, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad :class:`InfillingRow` s into ``input_ids``, ``position_ids (B, 2, L)``,
    ``part_a_length``, ``shift_labels`` (-100 on padding) and ``attention_mask``."""
    length = max(len(r.input_ids) for r in rows)
    if pad_to_multiple_of:
        k = pad_to_multiple_of
        length = ((length + k - 1) // k) * k
    b = len(rows)
    input_ids = np.full((b, length), pad_id, dtype=np.int64)
    labels = np.full((b, length), IGNORE_INDEX, dtype=np.int64)
    pos = np.zeros((b, 2, length), dtype=np.int64)
    attn = np.zeros((b, length), dtype=np.int64)
    part_a = np.zeros(b, dtype=np.int64)
    for i, r in enumerate(rows):
        m = len(r.input_ids)
        input_ids[i, :m] = r.input_ids
        labels[i, :m] = r.shift_labels
        pos[i, :, :m] = r.position_ids
        attn[i, :m] = 1
        part_a[i] = r.part_a_length
    return {
        "input_ids": torch.from_numpy(input_ids),
        "position_ids": torch.from_numpy(pos),
        "part_a_length": torch.from_numpy(part_a),
        "shift_labels": torch.from_numpy(labels),
        "attention_mask": torch.from_numpy(attn),
    }


# --- corpus helpers -----------------------------------------------------------------------------
def tokenize_dataset(dataset, tokenizer, text_field: str = "text", add_eos: bool = True, source: str | None = None,
                     batch_size: int = 1000, num_proc: int | None = None):
    """Tokenize a ``datasets`` (Iterable)Dataset's ``text_field`` into an ``input_ids`` column.

    ``add_eos`` appends ``<|endoftext|>`` to every document (its never-masked last token). Raises
    ``ValueError`` naming ``source`` (default: the dataset's cache files) and the field when the
    dataset has no such column.
    """
    where = source or _dataset_source(dataset)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_field not in columns:
        raise ValueError(f"{where}: no text field {text_field!r} (columns: {list(columns)}); set text_field")
    eos = special_token_ids(tokenizer).eos

    def encode(batch):
        if text_field not in batch:
            raise ValueError(f"{where}: no text field {text_field!r} (columns: {list(batch)}); set text_field")
        enc = tokenizer(batch[text_field], add_special_tokens=False)["input_ids"]
        if add_eos:
            enc = [ids + [eos] for ids in enc]
        return {"input_ids": enc}

    kwargs = {"batched": True, "batch_size": batch_size}
    if columns is not None:
        kwargs["remove_columns"] = list(columns)
    if num_proc and hasattr(dataset, "cache_files"):
        kwargs["num_proc"] = num_proc
    return dataset.map(encode, **kwargs)


def load_tokenized_corpus(paths: Sequence[str | Path], tokenizer, text_field: str = "text", add_eos: bool = True,
                          streaming: bool = False):
    """Load JSONL (``.jsonl``/``.json``) or plain-text files with ``datasets`` and tokenize them.

    Plain-text files become one document per line (``datasets``' ``text`` builder, field ``text``).
    Each file is checked on its own, so a missing field is reported with that file's path.
    """
    import datasets

    parts = []
    for path in map(str, paths):
        if not Path(path).is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
        builder = "json" if path.endswith((".jsonl", ".json", ".ndjson")) else "text"
        ds = datasets.load_dataset(builder, data_files=path, split="train", streaming=streaming)
        field = text_field if builder == "json" else "text"
        if streaming:
            first = next(iter(ds), None)
            if first is not None and field not in first:
                raise ValueError(f"{path}: no text field {field!r} (columns: {list(first)}); set text_field")
        parts.append(tokenize_dataset(ds, tokenizer, field, add_eos=add_eos, source=path))
    if len(parts) == 1:
        return parts[0]
    return datasets.concatenate_datasets(parts) if not streaming else datasets.interleave_datasets(parts)


def _dataset_source(dataset) -> str:
    files = getattr(dataset, "cache_files", None) or []
    names = [f.get("filename") for f in files if isinstance(f, dict) and f.get("filename")]
    if names:
        return ", ".join(names)
    info = getattr(dataset, "info", None)
    name = getattr(info, "dataset_name", None) if info is not None else None
    return f"dataset {name or '(in memory)'}"
