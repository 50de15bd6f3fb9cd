"""LongAlign's batching strategies on the world's ``long`` split: naive padded batching vs packing vs
sorted batching, trained tokens per second with the same model and the same SFT step.

Every strategy trains one epoch over the same examples (the world's long train rows rendered for the
GLM-4 variant, rows beyond ``--max-length`` dropped) with ``align.packing.sft_loss`` (LongAlign
example weighting), backward and an AdamW step:

- *padded*: random batches of ``--batch`` examples padded to the longest (the naive baseline);
- *sorted*: batches of ``--batch`` examples of similar length (``align.batching.SortedBatchSampler``);
- *packed*: examples packed first-fit decreasing into rows of ``--max-length`` tokens, one row per step.

Trained tokens are the examples' own tokens (padding excluded), the same for every strategy; the
ratio to *padded* is what LongAlign reports (2.2-2.9x for packing or sorted batching at 64k).
The model is a random GLM-4 variant (``--hidden``, ``--layers``) with a tokenizer trained on the
world's corpus (``--vocab``), or ``--model DIR``.

    python bench/longalign.py [--max-length 8192] [--batch 4] [--hidden 128] [--layers 4]

Writes bench/results/longalign.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from align.batching import SortedBatchSampler  # noqa: E402
from align.packing import collate, make_rows, sft_loss  # noqa: E402
from align.sft_data import default_files, load_sft_examples  # noqa: E402
from bench.common import write_result  # noqa: E402
from glm_base.trainkit.batches import PermutationSampler  # noqa: E402


def model_and_tokenizer(args):
    if args.model:
        from glm_base.loading import load_model_and_tokenizer

        return load_model_and_tokenizer(args.model, max_position_embeddings=max(args.max_length, 1024))
    from glm_base.configuration import config_for_size
    from glm_base.modeling import GLMForCausalLM
    from glm_base.tokenizer import read_corpus, special_token_ids, train_tokenizer

    corpus, _ = default_files("corpus")
    tokenizer = train_tokenizer(read_corpus([corpus]), args.vocab)
    ids = special_token_ids(tokenizer)
    torch.manual_seed(0)
    config = config_for_size("tiny", architecture="glm4", vocab_size=len(tokenizer), hidden_size=args.hidden,
                             num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=2,
                             intermediate_size=4 * args.hidden, max_position_embeddings=args.max_length,
                             pad_token_id=ids.pad, eos_token_id=ids.eos)
    return GLMForCausalLM(config), tokenizer


def batches(strategy: str, examples, batch: int, max_length: int, seed: int = 0) -> list[list[list]]:
    """One epoch of micro-batches (lists of rows; a row is a list of examples)."""
    if strategy == "packed":
        return [[row] for row in make_rows(examples, max_length)]
    rows = make_rows(examples)
    steps = len(rows) // batch
    if strategy == "sorted":
        sampler = SortedBatchSampler([len(ex) for ex in examples], batch, 1, seed)
    else:
        sampler = PermutationSampler(len(rows), batch, seed)
    return [[rows[i] for i in sampler.batch(p)] for p in range(steps)]


def train_epoch(model, epoch, pad_id: int) -> dict:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    tokens = padded = 0
    start = time.perf_counter()
    for rows in epoch:
        batch = collate(rows, pad_id, "example")
        loss, _ = sft_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
        padded += batch["input_ids"].numel()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": len(epoch), "tokens": tokens, "tokens_with_padding": padded,
            "padding_share": 1 - tokens / padded, "tokens_per_s": tokens / seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: a random tiny GLM-4 variant)")
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--world-scale", default="tiny")
    args = parser.parse_args(argv)

    model, tokenizer = model_and_tokenizer(args)
    train, _ = default_files("long", args.world_scale)
    examples, report = load_sft_examples([train], tokenizer, "glm4", args.max_length, truncation="drop")
    keep = len(examples) - len(examples) % args.batch  # every strategy trains the same examples
    examples = examples[:keep]
    results = {}
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    for strategy in ("padded", "sorted", "packed"):
        model.load_state_dict(initial)
        results[strategy] = train_epoch(model, batches(strategy, examples, args.batch, args.max_length),
                                        tokenizer.pad_token_id)
        print(f"{strategy:7s} {results[strategy]['tokens_per_s']:8.0f} tokens/s  "
              f"padding {100 * results[strategy]['padding_share']:4.1f}%  {results[strategy]['seconds']:.1f} s")
    lengths = sorted(len(ex) for ex in examples)
    result = {
        "config": vars(args),
        "data": {"examples": len(examples), "dropped": report["dropped"], "tokens": sum(lengths),
                 "min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]},
        "strategies": results,
        "speedup_vs_padded": {s: results[s]["tokens_per_s"] / results["padded"]["tokens_per_s"]
                              for s in ("sorted", "packed")},
        "targets": {"speedup_vs_padded": ">= 2.0 for sorted and packed"},
    }
    path = write_result("longalign", result)
    print("speedup vs padded: " + ", ".join(f"{s} {v:.2f}x" for s, v in result["speedup_vs_padded"].items()))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
