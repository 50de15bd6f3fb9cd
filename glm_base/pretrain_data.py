"""Pretraining data: tokenized documents in a deterministic order, collated into global batches.

Every process builds the same *global* micro-batch (same documents, same collator draw) and trains on
its own share of the rows (:func:`shard_rows`). So one process and N processes see exactly the same
data, the collator's randomness never depends on the number of processes, and the data position is
a single counter: the number of global micro-batches consumed. Resume sets it and the stream
continues exactly where it stopped.

Two sources:

- in memory (default): the corpus is tokenized once through ``datasets.map`` (cached on disk), then
  documents are chunked to fit ``max_length`` and ordered by a fresh permutation each epoch
  (``seed``, epoch); element ``e`` of the endless stream is ``perm[e // n][e % n]``.
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


class GlobalBatchStream(IterableDataset):
    """Endless stream of collated global micro-batches of ``batch_size`` documents from ``start``.

    Micro-batch ``p`` is collated with the collator's call counter set to ``p``, so its masks depend
    only on (seed, p). Use with ``DataLoader(stream, batch_size=None, num_workers=0 or 1)``.
    """

    def __init__(self, documents: Sequence[Sequence[int]] | None, collator: BlankInfillingCollator,
                 batch_size: int, seed: int, start: int = 0, streaming_source=None):
        if documents is None and streaming_source is None:
            raise ValueError("GlobalBatchStream needs documents or a streaming source")
        self.documents = documents
        self.streaming_source = streaming_source
        self.collator = collator
        self.batch_size = batch_size
        self.seed = seed
        self.start = start

    def _element_order(self) -> Iterator[Sequence[int]]:
        n = len(self.documents)
        element = self.start * self.batch_size
        epoch, offset = divmod(element, n)
        while True:
            perm = np.random.default_rng([self.seed, epoch]).permutation(n)
            for index in perm[offset:]:
                yield self.documents[int(index)]
            epoch, offset = epoch + 1, 0

    def _streamed_order(self) -> Iterator[Sequence[int]]:
        skip = self.start * self.batch_size
        epoch = 0
        while True:
            produced = 0
            for doc in self.streaming_source(epoch):
                produced += 1
                if skip > 0:
                    skip -= 1
                    continue
                yield doc
            if produced == 0:
                raise ValueError("the streaming corpus yielded no usable document")
            epoch += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        order = self._element_order() if self.documents is not None else self._streamed_order()
        position = self.start
        while True:
            examples = [{"input_ids": next(order)} for _ in range(self.batch_size)]
            self.collator.calls = position  # masks depend on (seed, position) only
            batch = self.collator(examples)
            batch["objective"] = self.collator.last_objective
            yield batch
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


def shard_rows(batch: dict[str, torch.Tensor], rank: int, world_size: int) -> dict[str, torch.Tensor]:
    """This process's rows of a global batch (rows ``rank::world_size``). A process left without a
    row gets row 0 with every target ignored, so it still joins the collective backward."""
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    rows = tensors["input_ids"].shape[0]
    if world_size == 1:
        return tensors
    if rank < rows:
        return {k: v[rank::world_size] for k, v in tensors.items()}
    local = {k: v[:1].clone() for k, v in tensors.items()}
    local["shift_labels"].fill_(-100)
    return local


def unigram_baseline(documents: Sequence[Sequence[int]], special_ids: Sequence[int], limit: int = 20000) -> int:
    """The most frequent non-special token of the training documents: the unigram-frequency
    baseline predicts it for every masked position."""
    counts: Counter[int] = Counter()
    for doc in documents[:limit]:
        counts.update(doc)
    for token in special_ids:
        counts.pop(token, None)
    return counts.most_common(1)[0][0]
