"""Our SFT loop (``align.sft``) against TRL's ``SFTTrainer`` on the exported ``GlmForCausalLM``:
trained tokens per second, same data, batch and hyperparameters.

One random GLM-4-variant model (``--hidden``, ``--layers``; a tokenizer trained on the world's corpus)
is saved in our format and exported with ``glm_base.export`` to transformers' ``GlmForCausalLM``
(the same weights). Both train ``--steps`` steps of ``--batch`` rows of the world's ``sft`` train
split, assistant tokens only, token-mean loss, AdamW (lr 1e-4, beta2 0.999, no decay, clip 1.0), no
gradient checkpointing, one CPU process, no evaluation or checkpoint inside the timed loop:

- *ours*: ``align.sft.run`` with random batching (padding like TRL's), sorted batching, and packing
  (one row of at most ``--batch`` x 80 tokens per step: the rows average 81 tokens, so a step holds
  about as many tokens as a padded batch, without the padding; attention by packed sequence);
  tokens/s from its own step window (non-padding tokens / loop time);
- *TRL*: ``trl.SFTTrainer(assistant_only_loss=True)`` on the exported model, fed the very batches of
  our random batching (same rows, same order, so the same padding); non-padding tokens
  (``include_num_input_tokens_seen="non_padding"``) / the time from the first step to the last.

Ours also trains the ``<|user|>`` that ends the last reply (one token per example more than TRL's
rendering has). The four runs alternate for ``--rounds`` rounds and each keeps its best, so a
change of load hits all of them alike; the ratio is the one to read.

    python bench/sft_step.py [--steps 30] [--batch 8] [--hidden 256] [--layers 4] [--rounds 2]

Writes bench/results/sft_step.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import random_glm4, write_result  # noqa: E402
from common.config import load_config  # noqa: E402
from common.jsonl import read_jsonl, write_jsonl  # noqa: E402


def make_models(root: Path, args) -> tuple[Path, Path]:
    """Our model directory and its ``GlmForCausalLM`` export (same weights, same tokenizer)."""
    from glm_base.export import export_to_transformers

    model, tokenizer = random_glm4(args.hidden, args.layers, args.heads, args.vocab, 1024)
    ours = root / "ours"
    model.save_pretrained(ours)
    tokenizer.save_pretrained(ours)
    return ours, export_to_transformers(ours, root / "exported")


def run_ours(model_dir: Path, data: Path, out: Path, args, batching: str, packed: bool = False) -> dict:
    from align.sft import SFTConfig, run

    # packed: one row per step of at most batch x 80 tokens (the rows average 81 tokens), about the
    # tokens of the padded runs' batch; steps stop when the packed rows run out
    shape = ["data.packing=true", f"data.max_length={args.batch * 80}", "batch_size=1"] if packed else \
        ["data.max_length=1024", f"batch_size={args.batch}"]
    cfg = load_config(SFTConfig, [
        f"output_dir={out}", "overwrite=true", f"model.init_from={model_dir}", f"data.train_files=[{data}]", *shape,
        f"data.batching={batching}", "data.loss_weighting=token",
        f"max_steps={args.steps}", f"log_every={args.steps}", "eval_every=0", "save_every=0",
        "eval.language_questions=0", "optim.lr=0.0001", "optim.warmup_steps=0", "optim.weight_decay=0.0",
        "optim.grad_clip=1.0", "seed=0"])
    summary = run(cfg)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    window = next(r for r in rows if "train/tokens_per_s" in r)
    return {"tokens_per_s": window["train/tokens_per_s"], "tokens": summary["tokens_seen"],
            "final_loss": window["train/loss"]}


def run_trl(model_dir: Path, data: Path, out: Path, args) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer, GlmForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from glm_base.trainkit.batches import PermutationSampler

    class StepClock(TrainerCallback):
        def __init__(self):
            self.start = self.end = None

        def on_step_begin(self, _args, state, control, **kwargs):
            if self.start is None:
                self.start = time.perf_counter()

        def on_step_end(self, _args, state, control, **kwargs):
            self.end = time.perf_counter()

    rows = [{"messages": row["messages"]} for _, row in read_jsonl(data)]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = GlmForCausalLM.from_pretrained(model_dir)
    config = SFTConfig(output_dir=str(out), per_device_train_batch_size=args.batch, max_steps=args.steps,
                       learning_rate=1e-4, lr_scheduler_type="cosine", warmup_steps=0, weight_decay=0.0,
                       adam_beta2=0.999, max_grad_norm=1.0, gradient_checkpointing=False, use_cpu=True,
                       assistant_only_loss=True, max_length=1024, packing=False, save_strategy="no",
                       report_to="none", logging_steps=args.steps, seed=0, dataloader_num_workers=0,
                       include_num_input_tokens_seen="non_padding")
    class SameBatches(SFTTrainer):
        """TRL's trainer on exactly the batches of our random batching (its own shuffle would pad
        differently, and the padding share decides the figure)."""

        def _get_train_sampler(self, train_dataset=None):
            sampler = PermutationSampler(len(rows), args.batch, 0)  # align.sft's random batching, seed 0
            return [i for p in range(args.steps) for i in sampler.batch(p)]

    clock = StepClock()
    trainer = SameBatches(model=model, args=config, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    tokens = int(trainer.state.num_input_tokens_seen)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_s": tokens / (clock.end - clock.start), "tokens": tokens,
            "final_loss": losses[-1] if losses else None}


RUNS = ("ours_random_batching", "trl_sft_trainer", "ours_sorted_batching", "ours_packed")


def measure(name: str, root: Path, args) -> dict:
    """One measurement, in this process (``--only``)."""
    if name == "trl_sft_trainer":
        return run_trl(root / "exported", root / "train.jsonl", root / "trl", args)
    batching = "sorted" if name == "ours_sorted_batching" else "random"
    return run_ours(root / "ours", root / "train.jsonl", root / name, args, batching, packed=name == "ours_packed")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each trainer keeps its best")
    parser.add_argument("--only", choices=RUNS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:  # a child process: accelerate's state is per process, so each trainer gets its own
        print("RESULT " + json.dumps(measure(args.only, Path(args.root), args)))
        return {}

    import subprocess

    from world.default import world_files

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_models(root, args)
        train, _ = world_files("sft")
        rows = [row for _, row in read_jsonl(train)][: args.batch * args.steps]
        write_jsonl(root / "train.jsonl", [{"messages": row["messages"]} for row in rows])
        for _ in range(args.rounds):  # interleaved rounds, the best of each kept: load hits all alike
            for name in RUNS:
                child = [sys.executable, __file__, "--only", name, "--root", str(root)] + \
                        [f"--{k}={v}" for k, v in vars(args).items() if k not in ("only", "root")]
                done = subprocess.run(child, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if done.returncode or not lines:
                    raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
                result = json.loads(lines[-1].removeprefix("RESULT "))
                if name not in results or result["tokens_per_s"] > results[name]["tokens_per_s"]:
                    results[name] = result
    trl = results["trl_sft_trainer"]["tokens_per_s"]
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("only", "root")},
        "results": results,
        "speedup_vs_trl": {name: r["tokens_per_s"] / trl for name, r in results.items() if name != "trl_sft_trainer"},
        "targets": {"speedup_vs_trl": ">= 1.5"},
    }
    for name, r in results.items():
        print(f"{name:22s} {r['tokens_per_s']:8.0f} tokens/s  ({r['tokens']} tokens, last loss {r['final_loss']})")
    print("speedup vs TRL: " + ", ".join(f"{k} {v:.2f}x" for k, v in result["speedup_vs_trl"].items()))
    print(f"wrote {write_result('sft_step', result)}")
    return result


if __name__ == "__main__":
    main()
