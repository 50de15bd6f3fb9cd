"""Blank-infilling collator: exact layouts on hand-written inputs and statistics over many samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from glm_base.infilling import (
    IGNORE_INDEX,
    BlankInfillingCollator,
    build_row,
    chunk_document,
    chunk_documents,
    load_tokenized_corpus,
    mask_target,
    max_document_length,
    tokenize_dataset,
    truncated_poisson_probs,
)
from glm_base.tokenizer import special_token_ids


@pytest.fixture(scope="module")
def ids(tokenizer):
    return special_token_ids(tokenizer)


def random_docs(tokenizer, n_docs, low, high, seed=0):
    """Documents of random ordinary tokens ending with <|endoftext|>."""
    rng = np.random.default_rng(seed)
    first = len(special_token_ids(tokenizer).all)
    eos = special_token_ids(tokenizer).eos
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(low, high + 1))
        docs.append(rng.integers(first, len(tokenizer), size=n - 1).tolist() + [eos])
    return docs


def reconstruct(batch, i, ids):
    """Rebuild the document from row i: Part A with every mask replaced by the span Part B generates
    for it (found by position). Checks the row layout along the way; returns (doc, spans in doc, masks)."""
    length = int(batch["attention_mask"][i].sum())
    pa = int(batch["part_a_length"][i])
    inp = batch["input_ids"][i, :length].tolist()
    lab = batch["shift_labels"][i, :length].tolist()
    pos = batch["position_ids"][i, 0, :length].tolist()
    blk = batch["position_ids"][i, 1, :length].tolist()
    # padding
    assert batch["attention_mask"][i, length:].sum() == 0
    assert (batch["shift_labels"][i, length:] == IGNORE_INDEX).all()
    assert (batch["input_ids"][i, length:] == ids.pad).all()
    # Part A: positions 0..pa-1, span position 0, no loss
    assert pos[:pa] == list(range(pa)) and blk[:pa] == [0] * pa
    assert lab[:pa] == [IGNORE_INDEX] * pa
    # Part B: segments starting with <sop>
    filled = {}
    t = pa
    while t < length:
        assert inp[t] == ids.sop
        start = t
        while t + 1 < length and inp[t + 1] != ids.sop:
            t += 1
        t += 1
        seg_in, seg_lab = inp[start:t], lab[start:t]
        m = t - start
        assert blk[start:t] == list(range(1, m + 1))
        assert len(set(pos[start:t])) == 1
        mask_pos = pos[start]
        assert inp[mask_pos] in ids.masks and mask_pos not in filled
        assert seg_in[1:] == seg_lab[: m - 1]  # input t+1 == target t (targets aligned with inputs)
        assert IGNORE_INDEX not in seg_lab
        if seg_lab[-1] == ids.eop:
            filled[mask_pos] = seg_lab[:-1]
        else:  # document suffix: no <eop>, the span is the rest of the document
            assert inp[mask_pos] == ids.gmask and mask_pos == pa - 1
            filled[mask_pos] = seg_lab
    masks = [j for j in range(pa) if inp[j] in ids.masks]
    assert sorted(filled) == masks  # every mask has exactly one span, every span one mask
    doc, spans = [], []
    for j in range(pa):
        if j in filled:
            spans.append((len(doc), len(doc) + len(filled[j])))
            doc.extend(filled[j])
        else:
            doc.append(inp[j])
    return doc, spans, [inp[j] for j in masks]


# --- pure helpers -------------------------------------------------------------------------------
def test_truncated_poisson():
    p = truncated_poisson_probs(3.0, 39)
    assert len(p) == 39 and abs(p.sum() - 1) < 1e-12
    assert np.allclose(p[:6], [0.157, 0.236, 0.236, 0.177, 0.106, 0.053], atol=1e-3)
    assert abs((np.arange(1, 40) * p).sum() - 3.157) < 1e-3


def test_max_document_length():
    assert max_document_length(512) == 394
    for L in (16, 64, 100, 512, 2048):
        n = max_document_length(L)
        assert n + 2 * mask_target(n, 0.15) <= L < (n + 1) + 2 * mask_target(n + 1, 0.15)
    assert mask_target(20, 0.15) == 3 and mask_target(100, 0.15) == 15 and mask_target(3, 0.15) == 1


def test_chunk_document():
    doc = list(range(1000))
    pieces = chunk_document(doc, 512, min_length=7)
    assert [len(p) for p in pieces] == [394, 394, 212]
    assert sum(pieces, []) == doc
    assert chunk_document(list(range(397)), 512, min_length=7) == [list(range(394))]  # 3-token tail dropped
    assert len(list(chunk_documents([doc, doc[:10]], 512))) == 4


# --- exact layouts on hand-written input --------------------------------------------------------
def test_build_row_hand_written():
    M, S, E = 100, 101, 102
    tokens = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    row = build_row(tokens, [(6, 7), (1, 3)], mask_id=M, sop_id=S, eop_id=E, order=[1, 0])
    # Part A: 10 [M] 13 14 15 [M] 17 18 19 ; spans sorted by start: (1,3) -> mask at 1, (6,7) -> mask at 5
    # Part B in order [1, 0]: span (6,7) first, then (1,3)
    assert row.part_a_length == 9
    assert row.input_ids.tolist() == [10, M, 13, 14, 15, M, 17, 18, 19, S, 16, S, 11, 12]
    X = IGNORE_INDEX
    assert row.shift_labels.tolist() == [X] * 9 + [16, E, 11, 12, E]
    assert row.position_ids[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 5, 1, 1, 1]
    assert row.position_ids[1].tolist() == [0] * 9 + [1, 2, 1, 2, 3]


def test_build_row_suffix():
    G, S, E = 100, 101, 102
    row = build_row([10, 11, 12, 13, 14, 15], [(2, 6)], mask_id=G, sop_id=S, eop_id=E, suffix=True)
    assert row.part_a_length == 3
    assert row.input_ids.tolist() == [10, 11, G, S, 12, 13, 14]
    assert row.shift_labels.tolist() == [-100, -100, -100, 12, 13, 14, 15]
    assert row.position_ids.tolist() == [[0, 1, 2, 2, 2, 2, 2], [0, 0, 0, 1, 2, 3, 4]]
    with pytest.raises(ValueError):
        build_row([1, 2, 3], [(0, 2)], G, S, E, suffix=True)


def test_collator_hand_written_batch(tokenizer, ids):
    coll = BlankInfillingCollator(tokenizer, max_length=64, objective_probs={"blank": 1.0}, seed=3)
    docs = [list(range(20, 60)) + [ids.eos], list(range(100, 120)) + [ids.eos]]
    batch = coll([{"input_ids": d} for d in docs])
    assert set(batch) == {"input_ids", "position_ids", "part_a_length", "shift_labels", "attention_mask"}
    assert all(t.dtype == torch.long for t in batch.values())
    B, L = batch["input_ids"].shape
    assert B == 2 and batch["position_ids"].shape == (2, 2, L) and batch["part_a_length"].shape == (2,)
    for i, (doc, spans) in enumerate(zip(docs, coll.last_spans)):
        rebuilt, found, masks = reconstruct(batch, i, ids)
        assert rebuilt == doc and found == spans
        assert set(masks) == {ids.mask}
        k, covered = len(spans), sum(e - s for s, e in spans)
        assert int(batch["part_a_length"][i]) == len(doc) - covered + k
        assert int(batch["attention_mask"][i].sum()) == len(doc) + 2 * k
    assert L == max(len(d) + 2 * len(s) for d, s in zip(docs, coll.last_spans))


# --- statistics ---------------------------------------------------------------------------------
def test_blank_statistics(tokenizer, ids):
    coll = BlankInfillingCollator(tokenizer, max_length=512, objective_probs={"blank": 1.0}, seed=0)
    docs = random_docs(tokenizer, 8 * 60, 300, 394, seed=1)
    ratios, lengths = [], []
    for b in range(60):
        chunk = docs[8 * b : 8 * b + 8]
        batch = coll([{"input_ids": d} for d in chunk])
        assert batch["input_ids"].shape[1] <= 512
        for i, doc in enumerate(chunk):
            rebuilt, spans, masks = reconstruct(batch, i, ids)
            assert rebuilt == doc  # every target token appears exactly once, in its place
            assert spans == coll.last_spans[i]
            assert set(masks) == {ids.mask}
            covered = sum(e - s for s, e in spans)
            assert covered >= math.floor(0.15 * len(doc))
            assert spans[-1][1] <= len(doc) - 1  # last token never masked
            for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
                assert s1 >= e0 + 1  # never overlapping or touching
            ratios.append(covered / len(doc))
            lengths.extend(e - s for s, e in spans)
    mean_ratio, mean_len = float(np.mean(ratios)), float(np.mean(lengths))
    print(f"\n[blank] mean mask ratio {mean_ratio:.4f}, mean span length {mean_len:.3f} over {len(lengths)} spans")
    assert 0.15 <= mean_ratio < 0.16
    # truncated Poisson(3) mean is 3.157; the span that crosses the threshold is size-biased (+~0.03)
    assert abs(mean_len - 3.157) < 0.12
    hist = np.bincount(lengths, minlength=8)[1:7] / len(lengths)
    assert np.allclose(hist, truncated_poisson_probs()[:6], atol=0.025)
    assert coll.counters["unfit"] == 0


def test_sentence_objective(tokenizer, ids, sample_texts):
    coll = BlankInfillingCollator(tokenizer, max_length=512, objective_probs={"sentence": 1.0}, seed=0)
    docs = []
    for text in (sample_texts["en"], sample_texts["zh"], sample_texts["mixed"] + sample_texts["en"][:300]):
        docs.append(tokenizer.encode(text) + [ids.eos])
    ends = coll._ends_sentence
    for _ in range(20):
        batch = coll([{"input_ids": d} for d in docs])
        for i, doc in enumerate(docs):
            rebuilt, spans, masks = reconstruct(batch, i, ids)
            assert rebuilt == doc and set(masks) == {ids.smask}
            assert sum(e - s for s, e in spans) >= math.floor(0.15 * len(doc))
            for s, e in spans:  # whole sentences: start after a boundary, end at one (or before eos)
                assert s == 0 or ends[doc[s - 1]]
                assert ends[doc[e - 1]] or e == len(doc) - 1
                assert not any(ends[t] for t in doc[s : e - 1])
    # Chinese boundaries are found: 。！？ end sentences in the ZH document
    zh_doc = docs[1]
    assert sum(bool(ends[t]) for t in zh_doc) >= sample_texts["zh"].count("。")


def test_document_objective(tokenizer, ids):
    coll = BlankInfillingCollator(tokenizer, max_length=512, objective_probs={"document": 1.0}, seed=0)
    docs = random_docs(tokenizer, 400, 20, 300, seed=2)
    suffix = 0
    for b in range(50):
        chunk = docs[8 * b : 8 * b + 8]
        batch = coll([{"input_ids": d} for d in chunk])
        for i, doc in enumerate(chunk):
            rebuilt, spans, masks = reconstruct(batch, i, ids)
            assert rebuilt == doc and masks == [ids.gmask] and len(spans) == 1
            (s, e), n = spans[0], len(doc)
            assert math.floor(0.5 * n) <= e - s <= n - 1
            length = int(batch["attention_mask"][i].sum())
            if e == n:  # suffix generation: no <eop>
                suffix += 1
                assert length == n + 1 and ids.eop not in batch["shift_labels"][i].tolist()
            else:
                assert length == n + 2 and e <= n - 1
    assert abs(suffix / 400 - 0.5) < 0.1


def test_objective_frequencies(tokenizer):
    probs = {"blank": 0.5, "sentence": 0.3, "document": 0.2}
    coll = BlankInfillingCollator(tokenizer, max_length=64, objective_probs=probs, seed=7)
    doc = {"input_ids": list(range(20, 50)) + [0]}
    n = 3000
    seen = {o: 0 for o in probs}
    for _ in range(n):
        coll([doc])
        seen[coll.last_objective] += 1
    for o, p in probs.items():
        assert abs(seen[o] / n - p) < 4 * math.sqrt(p * (1 - p) / n), (o, seen)
        assert coll.counters[o] == seen[o]
    assert coll.counters["batches"] == n


def test_determinism_and_resume(tokenizer):
    docs = [{"input_ids": d} for d in random_docs(tokenizer, 6, 30, 200, seed=3)]

    def run(coll, k):
        return [coll(docs) for _ in range(k)]

    a = run(BlankInfillingCollator(tokenizer, max_length=256, seed=11), 5)
    b = run(BlankInfillingCollator(tokenizer, max_length=256, seed=11), 5)
    c = run(BlankInfillingCollator(tokenizer, max_length=256, seed=12), 5)
    for x, y in zip(a, b):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert any(x["input_ids"].shape != z["input_ids"].shape or not torch.equal(x["input_ids"], z["input_ids"])
               for x, z in zip(a, c))
    # resume: a fresh collator loaded with the state after 3 calls continues identically
    first = BlankInfillingCollator(tokenizer, max_length=256, seed=11)
    run(first, 3)
    resumed = BlankInfillingCollator(tokenizer, max_length=256, seed=0)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for x, y in zip(run(resumed, 2), a[3:]):
        assert all(torch.equal(x[k], y[k]) for k in x)


def test_dataloader_workers_differ(tokenizer):
    """Two DataLoader workers holding copies of one collator must not draw the same masks."""
    docs = [{"input_ids": list(range(20, 120)) + [0]}] * 4
    coll = BlankInfillingCollator(tokenizer, max_length=256, objective_probs={"blank": 1.0}, seed=0)
    loader = torch.utils.data.DataLoader(docs, batch_size=1, collate_fn=coll, num_workers=2)
    rows = [b["input_ids"][0].tolist() for b in loader]
    assert rows[0] != rows[1]  # batch 0 from worker 0, batch 1 from worker 1, same document


# --- robustness ---------------------------------------------------------------------------------
def test_skips_and_chunks(tokenizer, ids):
    coll = BlankInfillingCollator(tokenizer, max_length=128, objective_probs={"blank": 1.0}, seed=0)
    size = max_document_length(128)
    assert size == 99
    long_doc = list(range(20, 20 + 3 * size + 10))  # chunked into 99, 99, 99, 10
    batch = coll([{"input_ids": []}, {"input_ids": [20, 21, 22]}, {"input_ids": long_doc},
                  {"input_ids": list(range(30, 60))}])
    assert batch["input_ids"].shape[0] == 4 + 1
    assert batch["input_ids"].shape[1] <= 128
    assert coll.counters["empty"] == 1 and coll.counters["too_short"] == 1 and coll.counters["chunked"] == 1
    rebuilt = [reconstruct(batch, i, ids)[0] for i in range(4)]
    assert sum(rebuilt, []) == long_doc
    # a chunk tail shorter than min_length is dropped and counted
    coll([{"input_ids": list(range(20, 20 + size + 3))}])
    assert coll.counters["too_short"] == 2
    with pytest.raises(ValueError, match="no usable document"):
        coll([{"input_ids": []}, {"input_ids": [5]}])
    with pytest.raises(ValueError, match="unknown objectives"):
        BlankInfillingCollator(tokenizer, objective_probs={"bert": 1.0})


def test_rows_always_fit(tokenizer):
    """Whatever the objective and document length, no row exceeds max_length."""
    coll = BlankInfillingCollator(tokenizer, max_length=96, seed=5)
    docs = random_docs(tokenizer, 300, 7, 400, seed=4)
    for b in range(0, 300, 10):
        batch = coll([{"input_ids": d} for d in docs[b : b + 10]])
        assert batch["input_ids"].shape[1] <= 96


def test_tokenize_helpers(tmp_path, tokenizer, ids, sample_texts):
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl"
    with good.open("w", encoding="utf-8") as fh:
        for line in sample_texts["zh"].splitlines():
            fh.write(json.dumps({"text": line}, ensure_ascii=False) + "\n")
    bad.write_text(json.dumps({"body": "x"}) + "\n", encoding="utf-8")
    ds = load_tokenized_corpus([good], tokenizer)
    first = sample_texts["zh"].splitlines()[0]
    assert ds[0]["input_ids"] == tokenizer.encode(first) + [ids.eos]
    assert ds.column_names == ["input_ids"]
    with pytest.raises(ValueError, match=r"bad\.jsonl.*'text'"):
        load_tokenized_corpus([good, bad], tokenizer)
    import datasets

    mem = datasets.Dataset.from_dict({"body": ["a b c"]})
    with pytest.raises(ValueError, match=r"corpus\.parquet.*'text'"):
        tokenize_dataset(mem, tokenizer, "text", source="corpus.parquet")
    out = tokenize_dataset(mem, tokenizer, "body", add_eos=False)
    assert out[0]["input_ids"] == tokenizer.encode("a b c")


def test_tokenization_is_cached_per_tokenizer(tokenizer, tmp_path):
    # datasets caches the tokenized corpus by (file, tokenizer): loading it again with the same
    # tokenizer directory (as every run does) reuses the cache file without rewriting it; another
    # tokenizer gets its own cache
    import os

    from glm_base.infilling import load_tokenized_corpus
    from glm_base.tokenizer import train_tokenizer
    from transformers import AutoTokenizer

    def cache_files(dataset):
        return [f["filename"] for f in dataset.cache_files if "cache-" in Path(f["filename"]).name]

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(f'{{"text": "Document {i} is about the lighthouse."}}\n' for i in range(50)),
                      encoding="utf-8")
    tokenizer.save_pretrained(tmp_path / "tok")
    first = load_tokenized_corpus([corpus], AutoTokenizer.from_pretrained(tmp_path / "tok"))
    files = cache_files(first)
    assert files, first.cache_files
    stamps = {f: os.path.getmtime(f) for f in files}
    again = load_tokenized_corpus([corpus], AutoTokenizer.from_pretrained(tmp_path / "tok"))
    assert cache_files(again) == files
    assert {f: os.path.getmtime(f) for f in files} == stamps
    assert again["input_ids"] == first["input_ids"]
    train_tokenizer(["Document about a lighthouse."] * 20, vocab_size=300, out_dir=tmp_path / "other")
    assert cache_files(load_tokenized_corpus([corpus], AutoTokenizer.from_pretrained(tmp_path / "other"))) != files
