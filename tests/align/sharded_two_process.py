"""Run by ``test_sharded_generation.py`` under ``torchrun --nproc_per_node=2`` (gloo, CPU).

Each process first computes, with its whole unsharded model, what the evaluation code returns; then
it shards the model with FSDP2 (``fully_shard``: every forward all-gathers the weights) and runs the
same code with the processes doing unequal work: different reply lengths (one process stops after
one token) and different numbers of prompts and held-out rows. Without the processes kept in step
this hangs; the results are written to ``OUT/rank<r>.json`` for the test to compare.

    python -m torch.distributed.run --nproc_per_node=2 tests/align/sharded_two_process.py POLICY_DIR OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.distributed.fsdp import fully_shard

import glm_base  # noqa: F401  (registers the Auto classes)
from align.evaluate import evaluate_policy, heldout_examples
from align.ppo_data import PromptRow
from align.rl.rollout import HFRollout, chat_prompt_ids
from align.sft import generate_reply
from glm_base.loading import load_model_and_tokenizer
from glm_base.sharded import forwards_are_collective

policy, out = Path(sys.argv[1]), Path(sys.argv[2])
accelerator = Accelerator(cpu=True)
rank = accelerator.process_index
model, tokenizer = load_model_and_tokenizer(str(policy), eval_mode=True)
rows = [PromptRow([{"role": "user", "content": text}], {"lang": "en", "expected": "help"})
        for text in ("Where does Ana live?", "What is 2 x 3?", "Say hello.")]
examples = heldout_examples(tokenizer, "glm4", 3)
question = [{"role": "user", "content": ("Tell me a story." if rank == 0 else "Name a colour.")}]
prompt = chat_prompt_ids(tokenizer, question, "glm4")


def sampler_for(m):
    # process 0 stops at any token (a one-token reply), process 1 only at the chat stops
    chat = HFRollout.for_chat(m, tokenizer, max_new_tokens=6, temperature=0.0)
    if rank != 0:
        return chat
    return HFRollout(m, eos_token_ids=list(range(len(tokenizer))), pad_token_id=chat.pad_token_id,
                     max_new_tokens=6, temperature=0.0)


def results(m, acc):
    return {
        "rollout": sampler_for(m).generate([prompt]).response_ids[0].tolist(),
        "reply": generate_reply(m, tokenizer, question, "glm4", max_new_tokens=6),
        "eval": evaluate_policy(m, tokenizer, rows, examples, max_new_tokens=5, batch_size=1, accelerator=acc)["counts"],
    }


whole = {"collective": forwards_are_collective(model), **results(model, None)}
for layer in model.model.layers:
    fully_shard(layer)
fully_shard(model)
sharded = {"collective": forwards_are_collective(model), **results(model, accelerator)}
(out / f"rank{rank}.json").write_text(json.dumps({"whole": whole, "sharded": sharded}))
accelerator.wait_for_everyone()
