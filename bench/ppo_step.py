"""Throughput of one PPO iteration (samples/s) and its breakdown, for our GLM-4 variant on CPU.

One iteration, as align.ppo runs it: generate 32 new tokens for each of 16 prompts of 32 tokens
(HFRollout, KV cache; no end token can occur, so every response has 32 tokens) -> score the 16
responses with a reward model of the same size -> experience (policy and reference log-probs,
critic values, GAE) -> the update (4 PPO epochs x 2 minibatches of 8, policy and critic steps).
Also HF generation with and without the KV cache.

Two critic designs (``--critic``, default both): ``separate`` (a copy of the backbone + value head with
its own optimizer: three forwards in experience making, two forward+backward passes per minibatch)
and ``shared`` (a value head on the policy's trunk, ``PolicyWithValueHead``, loss = policy loss +
0.1 x value loss: two forwards, one forward+backward per minibatch; TRL's classic design). Each
starts from the same random weights.

Reference point: TRL 0.11.4's ``PPOTrainer.step`` (its last PPO trainer with that API) on a random
Llama of the same size, measured on this kind of machine (2 cores): 5.6 samples/s at hidden 256 /
4 layers, 2.5 at hidden 512. Target: at least 2x. Its step covers the experience and the update
(``step`` receives the generated responses and their scores); we report both our full iteration and
the same scope (experience + update).

    python bench/ppo_step.py [--hidden 256 512] [--layers 4] [--repeats 3] [--critic both|separate|shared]

Writes bench/results/ppo_step.json (``--out`` elsewhere): per hidden size the separate design's
figures at the top level (the keys of earlier runs) and the shared design's under ``shared_critic``
(with ``speedup_vs_trl_*`` and ``speedup_vs_separate``). The phase ``reference_critic_forward`` is
experience making (with the shared design: the policy+value forward and the reference forward).
Run it on an idle machine (``uptime`` load < 1.5): other work on the 2 cores skews every figure,
and two torch threads on a contended machine are several times slower than one (a first run at
load ~3 measured 1.0 samples/s where an idle single thread gives 5.0).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from align.rl.experience import make_experience  # noqa: E402
from align.rl.rollout import HFRollout, layout_position_ids  # noqa: E402
from align.rl.update import PPOUpdateArgs, ppo_update  # noqa: E402
from align.rl.value_model import PolicyWithValueHead, ValueModel  # noqa: E402
from bench.common import write_result  # noqa: E402
from glm_base import GLMConfig, GLMForCausalLM, GLMForSequenceClassification  # noqa: E402
from glm_base.trainkit.accel import make_accelerator  # noqa: E402

TRL_0_11_4 = {256: 5.6, 512: 2.5}  # samples/s of PPOTrainer.step, random Llama of the same size
DESIGNS = ("separate", "shared")


def build(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    config = GLMConfig(architecture="glm4", vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 8 // 3,
                       num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                       max_position_embeddings=256, pad_token_id=0)
    policy = GLMForCausalLM(config)
    reward_config = copy.deepcopy(config)
    reward_config.num_labels = 1
    reward_model = GLMForSequenceClassification(reward_config).eval().requires_grad_(False)
    return policy, reward_model


def iteration(parts: dict, prompts: list[list[int]], args) -> dict[str, float]:
    """One PPO iteration; seconds per phase."""
    accelerator, model, reference, critic = parts["accelerator"], parts["model"], parts["reference"], parts["critic"]
    shared = parts["shared"]
    times = {}
    start = time.perf_counter()
    rollout = parts["sampler"].generate(prompts)
    times["generation"] = time.perf_counter() - start

    start = time.perf_counter()
    with torch.no_grad():
        scores = parts["reward_model"](input_ids=rollout.input_ids, attention_mask=rollout.attention_mask).logits[:, 0]
    times["scoring"] = time.perf_counter() - start

    start = time.perf_counter()
    experience, _ = make_experience(rollout, scores, model, reference, critic, kl_coef=0.05, gamma=1.0, lam=0.95,
                                    shared_critic=shared)
    times["reference_critic_forward"] = time.perf_counter() - start

    start = time.perf_counter()
    update_args = PPOUpdateArgs(ppo_epochs=args.epochs, minibatch_size=args.batch // args.minibatches, vf_coef=0.1)
    ppo_update(accelerator, model, parts["policy_opt"], experience, update_args, critic=critic,
               critic_optimizer=parts["critic_opt"], generator=torch.Generator().manual_seed(0), shared_critic=shared)
    times["update"] = time.perf_counter() - start
    assert int(rollout.response_mask.sum()) == args.batch * args.new_tokens, "every response must be full length"
    return times


def generation_seconds(sampler: HFRollout, prompt_ids: torch.Tensor, use_cache: bool) -> float:
    config = sampler.generation_config()
    config.use_cache = use_cache
    mask = torch.ones_like(prompt_ids)
    positions = layout_position_ids(mask, mask[:, :0])
    start = time.perf_counter()
    with torch.no_grad():
        sampler.model.generate(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, generation_config=config)
    return time.perf_counter() - start


def setup(design: str, hidden: int, args) -> dict:
    """The models, optimizers and sampler of one critic design (same random weights for both)."""
    policy, reward_model = build(hidden, args.layers, args.heads, args.kv_heads, args.vocab)
    reference = copy.deepcopy(policy).eval().requires_grad_(False)
    accelerator = make_accelerator(grad_accum=1, mixed_precision="no")
    shared = design == "shared"
    if shared:
        model, critic, critic_opt = PolicyWithValueHead(policy), None, None
        policy_opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        model, policy_opt = accelerator.prepare(model, policy_opt)
        policy = accelerator.unwrap_model(model).policy
    else:
        critic = ValueModel.from_causal_lm(policy)
        policy_opt = torch.optim.AdamW(policy.parameters(), lr=1e-6)
        critic_opt = torch.optim.AdamW(critic.parameters(), lr=1e-6)
        model, policy_opt, critic, critic_opt = accelerator.prepare(policy, policy_opt, critic, critic_opt)
        policy = accelerator.unwrap_model(model)
    # an end token outside the vocabulary never occurs: every response has exactly new_tokens tokens
    sampler = HFRollout(policy, eos_token_ids=[args.vocab + 7], pad_token_id=0, max_new_tokens=args.new_tokens,
                        temperature=1.0)
    return dict(accelerator=accelerator, model=model, reference=reference, critic=critic, sampler=sampler,
                reward_model=reward_model, policy_opt=policy_opt, critic_opt=critic_opt, shared=shared,
                parameters=sum(p.numel() for p in policy.parameters()))


def time_design(parts: dict, prompts: list[list[int]], hidden: int, args) -> dict:
    """Best of ``args.repeats`` iterations (after a warm-up): seconds and shares per phase, samples/s
    of the full iteration and of TRL's scope (experience + update), speedups against TRL."""
    iteration(parts, prompts, args)  # warm-up
    runs = [iteration(parts, prompts, args) for _ in range(args.repeats)]
    best = min(runs, key=lambda t: sum(t.values()))
    total = sum(best.values())
    trl_scope = best["reference_critic_forward"] + best["update"]
    result = {
        "seconds": {**best, "total": total},
        "share": {k: v / total for k, v in best.items()},
        "samples_per_s": args.batch / total,
        "samples_per_s_experience_and_update": args.batch / trl_scope,
    }
    reference_rate = TRL_0_11_4.get(hidden)
    if reference_rate:
        result["speedup_vs_trl_full_iteration"] = result["samples_per_s"] / reference_rate
        result["speedup_vs_trl_same_scope"] = result["samples_per_s_experience_and_update"] / reference_rate
    return result


def measure(hidden: int, args) -> dict:
    designs = DESIGNS if args.critic == "both" else (args.critic,)
    generator = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(1, args.vocab, (args.batch, args.query_tokens), generator=generator)
    prompts = prompt_ids.tolist()
    timed, sampler, parameters = {}, None, 0
    for design in designs:
        parts = setup(design, hidden, args)
        timed[design] = time_design(parts, prompts, hidden, args)
        sampler, parameters = parts["sampler"], parts["parameters"]
        del parts
    generation_seconds(sampler, prompt_ids, True)  # warm-up
    with_cache = min(generation_seconds(sampler, prompt_ids, True) for _ in range(args.repeats))
    without_cache = min(generation_seconds(sampler, prompt_ids, False) for _ in range(args.repeats))
    result = {
        "parameters": parameters,
        **timed.get("separate", {}),
        "generation_kv_cache_s": with_cache,
        "generation_no_cache_s": without_cache,
        "kv_cache_speedup": without_cache / with_cache,
        "trl_0_11_4_samples_per_s": TRL_0_11_4.get(hidden),
    }
    if "shared" in timed:
        result["shared_critic"] = timed["shared"]
        if "separate" in timed:
            result["shared_critic"]["speedup_vs_separate"] = (timed["shared"]["samples_per_s"]
                                                              / timed["separate"]["samples_per_s"])
    return result


def summary_line(name: str, r: dict, trl) -> str:
    return (f"{name}: {r['samples_per_s']:.2f} samples/s (experience + update: "
            f"{r['samples_per_s_experience_and_update']:.2f}; TRL 0.11.4 {trl}), "
            f"shares {', '.join(f'{k} {v:.0%}' for k, v in r['share'].items())}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--query-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default, one per core)")
    parser.add_argument("--critic", choices=["both", *DESIGNS], default="both",
                        help="critic design(s) to time: a separate critic model, a value head on the policy, or both")
    parser.add_argument("--out", default="ppo_step", help="result name under bench/results/")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {str(h): measure(h, args) for h in args.hidden}
    config = {k: v for k, v in vars(args).items() if k != "out"}
    payload = {"config": config, "results": results, "target": ">= 2x TRL 0.11.4 PPOTrainer.step samples/s"}
    path = write_result(args.out, payload)
    for hidden, r in results.items():
        trl = r["trl_0_11_4_samples_per_s"]
        if "samples_per_s" in r:
            print(summary_line(f"hidden {hidden}, separate critic", r, trl))
        if "shared_critic" in r:
            shared = r["shared_critic"]
            versus = (f" ({shared['speedup_vs_separate']:.2f}x the separate critic)"
                      if "speedup_vs_separate" in shared else "")
            print(summary_line(f"hidden {hidden}, shared critic", shared, trl) + versus)
        print(f"hidden {hidden}: KV cache {r['kv_cache_speedup']:.1f}x")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
