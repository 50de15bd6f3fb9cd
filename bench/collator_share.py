"""Benchmark: the blank-infilling collator's share of a pretraining step (target < 5%).

One process, the same batch: the collator's time per batch (default objective mix) and a full
training step (forward, backward, AdamW) of a GLM-4-variant model on that batch, at two shapes: the
tiny config's (hidden 128, 4 layers, rows of 192) and a 512-hidden model at max_length 512. The share
is reported in-process (``num_workers=0``) and with one DataLoader worker collating ahead, where the
measured number is the time the training loop waits for the next batch.

    python bench/collator_share.py

Writes bench/results/collator_share.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.collator import make_documents, step_share  # noqa: E402
from bench.common import best_time, write_result  # noqa: E402
from glm_base import GLMConfig, GLMForCausalLM  # noqa: E402
from glm_base.infilling import BlankInfillingCollator, max_document_length  # noqa: E402
from glm_base.tokenizer import train_tokenizer  # noqa: E402

SHAPES = {
    "tiny config (h128 x4, rows 192, batch 32)": dict(hidden=128, layers=4, heads=4, max_length=192, batch=32),
    "h512 x4, rows 512, batch 8": dict(hidden=512, layers=4, heads=8, max_length=512, batch=8),
}


class Batches(IterableDataset):
    def __init__(self, collator, examples, batch):
        self.collator, self.examples, self.batch = collator, examples, batch

    def __iter__(self):
        i = 0
        while True:
            yield self.collator(self.examples[i:i + self.batch])
            i = (i + self.batch) % (len(self.examples) - self.batch + 1)


def main() -> dict:
    from bench.collator import SENTENCES

    tokenizer = train_tokenizer(SENTENCES * 4, vocab_size=2000)
    results = {}
    for name, shape in SHAPES.items():
        collator = BlankInfillingCollator(tokenizer, max_length=shape["max_length"], seed=0)
        docs = make_documents(tokenizer, 256, max_document_length(shape["max_length"]))
        examples = [{"input_ids": d} for d in docs]
        # mean over many calls: objectives differ in cost, so the mix is averaged, not its fastest draw
        start = time.perf_counter()
        for i in range(60):
            collator(examples[(i * shape["batch"]) % 200:(i * shape["batch"]) % 200 + shape["batch"]])
        collate_s = (time.perf_counter() - start) / 60
        torch.manual_seed(0)
        model = GLMForCausalLM(GLMConfig(vocab_size=len(tokenizer), hidden_size=shape["hidden"],
                                         num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                                         num_key_value_heads=2, max_position_embeddings=1024)).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch = collator(examples[:shape["batch"]])

        def step(b=batch):
            model(**b).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        step_s = best_time(step, repeats=4)
        # With one worker collating ahead: time the loop's wait for the next batch between steps.
        loader = iter(DataLoader(Batches(collator, examples, shape["batch"]), batch_size=None, num_workers=1,
                                 prefetch_factor=4))
        next(loader)
        waits = []
        for _ in range(6):
            start = time.perf_counter()
            b = next(loader)
            waits.append(time.perf_counter() - start)
            step(b)
        del loader
        wait_s = sorted(waits)[len(waits) // 2]
        results[name] = {
            "collate_ms_per_batch": 1000 * collate_s,
            "step_ms": 1000 * step_s,
            "share_in_process": step_share(1000 * collate_s, 1000 * step_s, num_workers=0),
            "share_with_one_worker": wait_s / (wait_s + step_s),
        }
        print(f"{name}: collate {1000 * collate_s:.1f} ms, step {1000 * step_s:.0f} ms, share "
              f"{100 * results[name]['share_in_process']:.2f}% in process, "
              f"{100 * results[name]['share_with_one_worker']:.2f}% with one worker")
    path = write_result("collator_share", {"target": "< 5% of a training step", "shapes": results})
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
