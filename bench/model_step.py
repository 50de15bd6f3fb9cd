"""Training-step throughput of GLMForCausalLM (glm4 variant) against transformers' GlmForCausalLM.

One process, same size, same causal batch, same AdamW step; the two models alternate round by round
and each keeps its fastest step, so machine noise hits both alike. Also reports the achieved FLOP/s
of our step against this CPU's measured fp32 matmul peak.

FLOPs per step = tokens x (6 x matmul parameters + 6 x layers x seq x heads x head_dim), the usual
6N training count plus causal attention (QK^T and AV, half the square).

    python bench/model_step.py [--hidden 512] [--layers 4] [--seq 256] [--batch 4]

Writes bench/results/model_step.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from transformers import GlmForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import best_time, matmul_peak_flops, write_result  # noqa: E402
from glm_base import GLMConfig, GLMForCausalLM  # noqa: E402
from glm_base.export import to_transformers_config  # noqa: E402


def step_fn(model, batch):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=False, foreach=True)

    def step():
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def step_flops(config: GLMConfig, batch: int, seq: int) -> float:
    h, layers = config.hidden_size, config.num_hidden_layers
    q_width, kv_width = config.num_attention_heads * config.head_dim, config.num_key_value_heads * config.head_dim
    per_layer = h * q_width + 2 * h * kv_width + q_width * h + 3 * h * config.intermediate_size
    matmul_params = layers * per_layer + h * config.vocab_size
    tokens = batch * seq
    return tokens * (6 * matmul_params + 6 * layers * seq * q_width)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)

    config = GLMConfig(architecture="glm4", vocab_size=args.vocab, hidden_size=args.hidden,
                       num_hidden_layers=args.layers, num_attention_heads=args.heads,
                       num_key_value_heads=args.kv_heads)
    torch.manual_seed(0)
    ours = GLMForCausalLM(config).train()
    theirs = GlmForCausalLM._from_config(to_transformers_config(config), attn_implementation="sdpa").train()
    theirs.load_state_dict(ours.state_dict(), strict=False)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq))
    steps = {"glm_base": step_fn(ours, batch), "transformers": step_fn(theirs, batch)}
    times = {name: float("inf") for name in steps}
    for _ in range(args.rounds):
        for name, fn in steps.items():
            times[name] = min(times[name], best_time(fn, repeats=2, warmup=1))

    tokens = args.batch * args.seq
    peak = matmul_peak_flops()
    flops = step_flops(config, args.batch, args.seq)
    result = {
        "config": vars(args),
        "tokens_per_s": {name: tokens / t for name, t in times.items()},
        "speedup_vs_transformers": times["transformers"] / times["glm_base"],
        "matmul_peak_gflops": peak / 1e9,
        "achieved_gflops": flops / times["glm_base"] / 1e9,
        "fraction_of_matmul_peak": flops / times["glm_base"] / peak,
        "targets": {"speedup_vs_transformers": ">= 1.0 (aim 1.2)", "fraction_of_matmul_peak": ">= 0.40"},
    }
    path = write_result("model_step", result)
    print(f"tokens/s  glm_base {result['tokens_per_s']['glm_base']:.0f}   "
          f"transformers {result['tokens_per_s']['transformers']:.0f}   "
          f"ratio {result['speedup_vs_transformers']:.2f}x")
    print(f"achieved {result['achieved_gflops']:.1f} GFLOP/s of matmul peak {result['matmul_peak_gflops']:.1f} "
          f"= {100 * result['fraction_of_matmul_peak']:.0f}%")
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
