"""Benchmark: blank-infilling collator throughput (samples/s) at max_length 512.

    python bench/collator.py [--tokenizer DIR] [--batch-size 8] [--seconds 3] [--out bench/results/collator.json]

Documents are full-size chunks (``max_document_length(512)`` = 394 tokens, ending with
``<|endoftext|>``) built from real EN/ZH sentences, so sentence mode sees real boundaries. Without
``--tokenizer`` a small tokenizer is trained on the embedded sentences first (well under a second).

Reported per objective and for the default mix: samples/s and milliseconds per batch in the calling
process. :func:`step_share` turns a measured training-step time into the collator's share of a step
(the issue's target is < 5%); the lead calls it once the model's step time is known, e.g.::

    from bench.collator import step_share
    step_share(collate_ms_per_batch=..., step_ms=...)   # -> fraction of the step spent collating
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from glm_base.infilling import BlankInfillingCollator, max_document_length  # noqa: E402
from glm_base.tokenizer import special_token_ids, train_tokenizer  # noqa: E402

SENTENCES = [
    "The river town sits where two valleys meet, and its stone bridge is older than anyone remembers.",
    "Every spring the farmers bring apples, pears and honey to the market on the square!",
    "Does the ferry still run on Sundays? Only twice, at nine in the morning and at four.",
    "The library holds twelve thousand books, a globe and a map of the old salt road.",
    "When the wind turns east, the fishermen stay home and mend their nets by the fire.",
    "def mend(net):\n    return [knot for knot in net if knot.ok]\n",
    "青石镇坐落在两条山谷交汇的地方，镇上的石桥比任何人记得的都要古老。",
    "每年春天，农民们把苹果、梨和蜂蜜带到广场上的集市！",
    "星期天还有渡船吗？只有两班：早上九点和下午四点。",
    "风向转东的时候，渔民们就待在家里，在火炉边修补渔网。",
    "图书馆藏书一万二千册，还有一个地球仪和一张古盐道的地图。\n",
]


def make_documents(tokenizer, n_docs: int, length: int, seed: int = 0) -> list[list[int]]:
    """Documents of exactly ``length`` tokens (the last one ``<|endoftext|>``) from shuffled sentences."""
    rng = np.random.default_rng(seed)
    encoded = [tokenizer.encode(" " + s if not s.startswith(("青", "每", "星", "风", "图")) else s) for s in SENTENCES]
    eos = special_token_ids(tokenizer).eos
    docs = []
    for _ in range(n_docs):
        doc: list[int] = []
        while len(doc) < length - 1:
            doc.extend(encoded[int(rng.integers(len(encoded)))])
        docs.append(doc[: length - 1] + [eos])
    return docs


def measure(collator, docs: list[list[int]], batch_size: int, seconds: float) -> dict[str, float]:
    """Call the collator on consecutive batches for about ``seconds``; return throughput figures."""
    examples = [{"input_ids": d} for d in docs]
    n_batches = 0
    n_samples = 0
    n_tokens = 0
    start = time.perf_counter()
    i = 0
    while True:
        batch = collator(examples[i : i + batch_size])
        i = (i + batch_size) % (len(examples) - batch_size + 1)
        n_batches += 1
        n_samples += batch["input_ids"].shape[0]
        n_tokens += int(batch["attention_mask"].sum())
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n_batches >= 5:
            break
    return {
        "samples_per_s": n_samples / elapsed,
        "tokens_per_s": n_tokens / elapsed,
        "ms_per_batch": 1000 * elapsed / n_batches,
        "batches": n_batches,
    }


def step_share(collate_ms_per_batch: float, step_ms: float, num_workers: int = 0) -> float:
    """Fraction of a training step spent collating one batch.

    With ``num_workers == 0`` collation runs in the training process, so the share is
    ``collate / (collate + step)``. With DataLoader workers it overlaps the step and only shows when
    the workers cannot keep up: the share is ``max(0, collate / num_workers - step) / step``.
    """
    if step_ms <= 0:
        raise ValueError(f"step_ms must be positive, got {step_ms}")
    if num_workers <= 0:
        return collate_ms_per_batch / (collate_ms_per_batch + step_ms)
    return max(0.0, collate_ms_per_batch / num_workers - step_ms) / step_ms


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: train a small one)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "collator.json"))
    args = parser.parse_args(argv)

    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        tok_desc = args.tokenizer
    else:
        tokenizer = train_tokenizer(SENTENCES * 20, vocab_size=2000)
        tok_desc = f"trained on the embedded sentences (vocab {len(tokenizer)})"
    doc_len = max_document_length(args.max_length)
    docs = make_documents(tokenizer, 64, doc_len)

    results = {}
    settings = {
        "mix (.5/.3/.2)": None,
        "blank": {"blank": 1.0},
        "sentence": {"sentence": 1.0},
        "document": {"document": 1.0},
    }
    for name, probs in settings.items():
        coll = BlankInfillingCollator(tokenizer, max_length=args.max_length, objective_probs=probs, seed=0)
        coll(docs[: args.batch_size])  # warm-up
        results[name] = measure(coll, docs, args.batch_size, args.seconds)
        r = results[name]
        print(f"{name:16s} {r['samples_per_s']:9.0f} samples/s  {r['tokens_per_s']:11.0f} tokens/s  "
              f"{r['ms_per_batch']:7.2f} ms/batch of {args.batch_size}")

    report = {
        "benchmark": "blank-infilling collator throughput (calling process, one core)",
        "max_length": args.max_length,
        "document_tokens": doc_len,
        "batch_size": args.batch_size,
        "tokenizer": tok_desc,
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "results": results,
        "step_share": "not measured yet: call bench.collator.step_share(results['mix (.5/.3/.2)']['ms_per_batch'], step_ms)",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
