"""Reward-model training throughput: K-way batching (each response encoded once) against naive
pairwise batching (each pair's two responses encoded as two rows), on the same data.

The same prompts of the world's preferences split form each step: K-way batching encodes every
response once and takes every pair's loss from those scores (:func:`rewards.data.collate_groups`);
pairwise batching encodes the chosen and the rejected response of every pair (a response in n pairs
is encoded n times), as a trainer over TRL-style chosen/rejected rows does. Both compute the same
loss (checked), so pairs per second is the honest comparison. The two alternate round by round and
each keeps its fastest step, so machine noise hits both alike.

    python bench/rm_step.py [--hidden 128] [--layers 4] [--prompts 8] [--rounds 5]

Writes bench/results/rm_step.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import write_result  # noqa: E402
from glm_base import GLMConfig, GLMForSequenceClassification  # noqa: E402
from glm_base.tokenizer import special_token_ids, train_tokenizer  # noqa: E402
from rewards.data import EncodedGroup, collate_groups, default_files, encode_groups, read_preferences  # noqa: E402
from rewards.loss import rm_loss  # noqa: E402


def pairwise_groups(groups: list[EncodedGroup]) -> list[EncodedGroup]:
    """Every pair as its own two-response group: the naive layout."""
    return [EncodedGroup([g.input_ids[c], g.input_ids[r]], [(0, 1, m, w)], g.lang, g.category)
            for g in groups for c, r, m, w in g.pairs]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--steps", type=int, default=6, help="distinct batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args(argv)

    train_file, _ = default_files()
    groups, _ = read_preferences(train_file)
    tokenizer = train_tokenizer([t for g in groups for t in g.responses + [g.context[-1]["content"]]], vocab_size=3000)
    encoded, _ = encode_groups(groups, tokenizer, args.max_length)
    torch.manual_seed(0)
    config = GLMConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, num_hidden_layers=args.layers,
                       num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                       pad_token_id=special_token_ids(tokenizer).pad)
    model = GLMForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: every round sees the same weights
    pad = config.pad_token_id
    batches = [encoded[i * args.prompts:(i + 1) * args.prompts] for i in range(args.steps)]
    layouts = {"k_way": [collate_groups(b, pad) for b in batches],
               "pairwise": [collate_groups(pairwise_groups(b), pad) for b in batches]}
    pairs = sum(len(g.pairs) for b in batches for g in b)

    def run(layout: str) -> tuple[float, float]:
        total, start = 0.0, time.perf_counter()
        for batch in layouts[layout]:
            loss, _ = rm_loss(model, batch, torch.tensor(float(batch["weight"].sum())))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            total += float(loss.detach())
        return time.perf_counter() - start, total

    best = {name: float("inf") for name in layouts}
    losses = {}
    run("k_way")  # warm-up
    for _ in range(args.rounds):
        for name in layouts:
            seconds, losses[name] = run(name)
            best[name] = min(best[name], seconds)
    assert abs(losses["k_way"] - losses["pairwise"]) < 1e-4 * max(1.0, abs(losses["k_way"])), losses
    rows = {name: sum(int(b["input_ids"].shape[0]) for b in layouts[name]) for name in layouts}
    tokens = {name: sum(int(b["attention_mask"].sum()) for b in layouts[name]) for name in layouts}
    result = {
        "config": vars(args), "pairs_per_round": pairs, "rows_encoded": rows, "tokens_encoded": tokens,
        "seconds": best, "pairs_per_s": {name: pairs / best[name] for name in layouts},
        "speedup_k_way_over_pairwise": best["pairwise"] / best["k_way"],
        "loss_sum": losses,
    }
    path = write_result("rm_step", result)
    print(f"{pairs} pairs from {args.steps * args.prompts} prompts: k-way encodes {rows['k_way']} rows "
          f"({tokens['k_way']} tokens), pairwise {rows['pairwise']} rows ({tokens['pairwise']} tokens)")
    for name in layouts:
        print(f"  {name:9s} {result['pairs_per_s'][name]:8.1f} pairs/s")
    print(f"  k-way is {result['speedup_k_way_over_pairwise']:.2f}x faster; written to {path}")
    return result


if __name__ == "__main__":
    main()
