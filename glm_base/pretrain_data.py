"""Pretraining data: tokenized documents in a deterministic order, collated into global batches.

Every process builds the same *global* micro-batch (same documents, same collator draw) and trains on
its own share of the rows (``glm_base.trainkit.batches``); the data position is one counter, the
number of global micro-batches consumed.

Two sources:

- in memory (default): the corpus is tokenized once through ``datasets.map`` (cached on disk), then
  documents are chunked to fit ``max_length`` and served by the training kit's
  :class:`~glm_base.trainkit.batches.GlobalBatchStream` with a fresh permutation each epoch.
- streaming (``streaming: true``, corpora larger than memory): ``datasets`` streams and tokenizes on
  the fly with a shuffle buffer; resume skips the consumed documents (re-reading, not re-training).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import IterableDataset

from .infilling import BlankInfillingCollator, chunk_document, load_tokenized_corpus, max_document_length

logger = logging.getLogger(__name__)


def pack_documents(documents: Iterable[Sequence[int]], size: int) -> Iterator[list[int]]:
    """Concatenate consecutive documents (each ending in ``<|endoftext|>``) and cut the stream into
    rows of ``size`` tokens, as GLM's and GPT's pretraining data do: short documents then fill whole
    rows, so a step supervises as many masked tokens as its length allows. The last partial row is
    kept."""
    buffer: list[int] = []
    for doc in documents:
        buffer.extend(doc)
        while len(buffer) >= size:
            yield buffer[:size]
            buffer = buffer[size:]
    if buffer:
        yield buffer


def prepare_documents(paths: Sequence[str | Path], tokenizer, collator: BlankInfillingCollator,
                      text_field: str = "text", pack: bool = False) -> tuple[list[list[int]], dict[str, int]]:
    """Tokenize files into chunks that fit the collator's ``max_length`` (packing short documents
    together when ``pack``); skip (and count) empty and too-short documents. Returns the chunks and
    the counts."""
    dataset = load_tokenized_corpus(paths, tokenizer, text_field=text_field)
    chunks: list[list[int]] = []
    counts = Counter(documents=0, empty=0, too_short=0, chunked=0, chunks=0)
    for ids in dataset["input_ids"]:
        counts["documents"] += 1
        if len(ids) <= 1:  # only the appended <|endoftext|>
            counts["empty"] += 1
            continue
        pieces = chunk_document(ids, collator.max_length, collator.mask_ratio, min_length=collator.min_length)
        if len(pieces) > 1:
            counts["chunked"] += 1
        if not pieces:
            counts["too_short"] += 1
        chunks.extend(pieces)
    if pack:
        size = max_document_length(collator.max_length, collator.mask_ratio)
        chunks = [c for c in pack_documents(chunks, size) if len(c) >= collator.min_length]
    counts["chunks"] = len(chunks)
    if not chunks:
        raise ValueError(f"no usable document in {list(map(str, paths))} (counts: {dict(counts)})")
    return chunks, dict(counts)


def infilling_collate(collator: BlankInfillingCollator):
    """``collate(documents, position)`` for :class:`glm_base.trainkit.batches.GlobalBatchStream`:
    the blank-infilling rows of global micro-batch ``position``, whose masks depend only on (seed,
    position); the batch also names its objective."""

    def collate(documents: Sequence[Sequence[int]], position: int) -> dict:
        collator.calls = position
        batch = collator([{"input_ids": d} for d in documents])
        batch["objective"] = collator.last_objective
        return batch

    return collate


def hold_out(documents: list, count: int, seed: int) -> tuple[list, list]:
    """``(train, held_out)``: ``count`` documents drawn with ``seed`` leave the training set (the
    evaluation set of a corpus that comes without one)."""
    if len(documents) < 2:
        raise ValueError(f"cannot hold out evaluation documents from a corpus of {len(documents)} chunk(s)")
    count = min(max(1, count), len(documents) // 2)
    chosen = set(np.random.default_rng([seed, 7]).choice(len(documents), size=count, replace=False).tolist())
    return ([d for i, d in enumerate(documents) if i not in chosen],
            [d for i, d in enumerate(documents) if i in chosen])


class StreamedBatchStream(IterableDataset):
    """Global micro-batches of ``batch_size`` chunks from a streamed corpus (``source(epoch)`` yields
    chunks in a seeded shuffle order); resume skips the ``start * batch_size`` chunks consumed
    (re-reading them, not re-training on them)."""

    def __init__(self, source, collate, batch_size: int, start: int = 0):
        self.source, self.collate, self.batch_size, self.start = source, collate, batch_size, start

    def _chunks(self) -> Iterator[Sequence[int]]:
        skip = self.start * self.batch_size
        epoch = 0
        while True:
            produced = 0
            for doc in self.source(epoch):
                produced += 1
                if skip > 0:
                    skip -= 1
                    continue
                yield doc
            if produced == 0:
                raise ValueError("the streaming corpus yielded no usable document")
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        chunks = self._chunks()
        position = self.start
        while True:
            yield self.collate([next(chunks) for _ in range(self.batch_size)], position)
            position += 1


def streaming_source(paths: Sequence[str | Path], tokenizer, collator: BlankInfillingCollator,
                     text_field: str, seed: int, buffer_size: int, pack: bool = False):
    """A function ``epoch -> iterator of chunks`` over a streamed, shuffled, tokenized corpus."""
    dataset = load_tokenized_corpus(paths, tokenizer, text_field=text_field, streaming=True)
    size = max_document_length(collator.max_length, collator.mask_ratio)

    def documents(epoch: int):
        shuffled = dataset.shuffle(seed=seed, buffer_size=buffer_size)
        shuffled.set_epoch(epoch)
        for row in shuffled:
            ids = row["input_ids"]
            if len(ids) > 1:
                yield from chunk_document(ids, collator.max_length, collator.mask_ratio,
                                          min_length=collator.min_length)

    def chunks(epoch: int):
        if not pack:
            return documents(epoch)
        return (c for c in pack_documents(documents(epoch), size) if len(c) >= collator.min_length)

    return chunks


def unigram_baseline(documents: Sequence[Sequence[int]], special_ids: Sequence[int], limit: int = 20000) -> int:
    """The most frequent non-special token of the training documents: the unigram-frequency
    baseline predicts it for every masked position."""
    counts: Counter[int] = Counter()
    for doc in documents[:limit]:
        counts.update(doc)
    for token in special_ids:
        counts.pop(token, None)
    return counts.most_common(1)[0][0]
