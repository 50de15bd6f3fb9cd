"""Memory per GPU of a training stage, on paper: ``python -m align.estimate --config FILE``.

    python -m align.estimate --config configs/ppo/base.yaml --size glm4-9b --gpus 8 --gpu-mem 80

For a stage (pretrain, sft, rm, dpo, ppo) and a model (a named size of
:mod:`glm_base.configuration`, or the ``model`` section of the config), it prints the bytes per GPU
under DDP, ZeRO-2, ZeRO-3 and FSDP (full shard), term by term, whether each fits in ``--gpu-mem``,
and the formulas. Every term is a closed formula of the parameter count ``P``, the shape of the
model and the batch; nothing is measured, so read it as a plan (10-20% for allocator fragmentation,
CUDA context and communication buffers is not included: ``--headroom`` keeps that share free).

Formulas (bytes; ``N`` GPUs; mixed precision with bf16 weights and fp32 Adam, as ZeRO's paper):

- trained model: weights ``2P``, gradients ``2P``, optimizer ``12P`` (fp32 master copy 4P + Adam
  m 4P + v 4P). DDP keeps all three whole; ZeRO-2 shards gradients and optimizer (``2P + 14P/N``);
  ZeRO-3 and FSDP shard all (``16P/N``).
- frozen model (PPO's reference and reward model, DPO's reference): ``2P`` (``2P/N`` under
  ZeRO-3/FSDP, which shard them too).
- activations of one micro-batch of ``b`` rows of ``s`` tokens, per layer, at 16 bits, with
  memory-efficient attention (no ``s^2`` term), after Korthikanti et al. (2022):
  ``s*b*(14h + 4*kv + 8i)`` bytes for GLM-4 (SwiGLU: gate/up output 4sbi, SiLU and product 2sbi
  each; attention input, q, k, v, output, norms) and ``s*b*(34h + 4*kv - 4h)`` i.e.
  ``s*b*(30h + 4*kv)`` for GLM-1 (GeLU MLP of width i = 4h: 19sbh); ``h`` hidden, ``kv`` the K/V
  width (kv heads x head_dim), ``i`` the MLP width. With gradient checkpointing only each layer's
  input is kept (``2sbh`` per layer) plus one layer's activations during recomputation. The output
  layer adds ``6*s*b*V`` (bf16 logits and their fp32 copy for the loss).
- PPO adds the critic (trained, the policy's size unless ``--critic-size``; none for GRPO/RLOO,
  read from ``ppo.algorithm``), the reward model (frozen), and the colocated vLLM engine's share (``gpu_memory_utilization x GPU memory``: its weights and KV cache).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.cli import run_main
from common.config import read_yaml
from common.errors import UserError

GIB = 1024 ** 3
STAGES = ("pretrain", "sft", "rm", "dpo", "ppo")
STRATEGIES = ("ddp", "zero2", "zero3", "fsdp")


@dataclass(frozen=True)
class Shape:
    """What the formulas need of a model."""

    architecture: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    max_positions: int
    tied: bool

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


def shape_of(config) -> Shape:
    """The :class:`Shape` of a ``GLMConfig``."""
    return Shape(config.architecture, config.vocab_size, config.hidden_size, config.num_hidden_layers,
                 config.num_attention_heads, config.num_key_value_heads, config.head_dim, config.intermediate_size,
                 config.max_position_embeddings, bool(config.tie_word_embeddings))


def parameter_count(m: Shape) -> int:
    """Exact parameter count of ``GLMForCausalLM`` with this shape (tested against the model)."""
    q, kv = m.heads * m.head_dim, m.kv_width
    if m.architecture == "glm1":
        attention = m.hidden * (q + 2 * kv) + (q + 2 * kv) + q * m.hidden + m.hidden
        mlp = m.hidden * m.intermediate + m.intermediate + m.intermediate * m.hidden + m.hidden
        norms = 2 * 2 * m.hidden
        embeddings = m.vocab * m.hidden + 2 * m.max_positions * m.hidden
        final_norm = 2 * m.hidden
    else:
        attention = m.hidden * (q + 2 * kv) + (q + 2 * kv) + q * m.hidden
        mlp = m.hidden * 2 * m.intermediate + m.intermediate * m.hidden
        norms = 2 * m.hidden
        embeddings = m.vocab * m.hidden
        final_norm = m.hidden
    head = 0 if m.tied else m.vocab * m.hidden
    return embeddings + m.layers * (attention + mlp + norms) + final_norm + head


def activation_bytes(m: Shape, micro_batch: int, seq_len: int, checkpointing: bool) -> int:
    """Activations kept for backward of one micro-batch (see the module docstring)."""
    sb = seq_len * micro_batch
    if m.architecture == "glm1":
        per_layer = sb * (30 * m.hidden + 4 * m.kv_width)
    else:
        per_layer = sb * (14 * m.hidden + 4 * m.kv_width + 8 * m.intermediate)
    layers = (m.layers * 2 * sb * m.hidden + per_layer) if checkpointing else m.layers * per_layer
    return layers + 6 * sb * m.vocab


@dataclass
class Plan:
    """Bytes per GPU, term by term, for one strategy."""

    strategy: str
    terms: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.terms.values())


def trained_model_bytes(params: int, strategy: str, gpus: int) -> dict[str, int]:
    weights, grads, optimizer = 2 * params, 2 * params, 12 * params
    if strategy == "ddp":
        return {"weights": weights, "gradients": grads, "optimizer": optimizer}
    if strategy == "zero2":
        return {"weights": weights, "gradients": grads // gpus, "optimizer": optimizer // gpus}
    return {"weights": weights // gpus, "gradients": grads // gpus, "optimizer": optimizer // gpus}


def frozen_model_bytes(params: int, strategy: str, gpus: int) -> int:
    return 2 * params // gpus if strategy in ("zero3", "fsdp") else 2 * params


@dataclass
class Workload:
    stage: str
    shape: Shape
    micro_batch: int
    seq_len: int
    checkpointing: bool
    critic: Shape | None = None
    vllm_utilization: float = 0.0
    with_critic: bool = True  # PPO with GAE; GRPO and RLOO have no critic


def plan(work: Workload, strategy: str, gpus: int, gpu_mem_gib: float) -> Plan:
    """The bytes per GPU of ``work`` under ``strategy`` on ``gpus`` GPUs of ``gpu_mem_gib`` GiB."""
    if strategy not in STRATEGIES:
        raise UserError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    params = parameter_count(work.shape)
    result = Plan(strategy)
    for name, value in trained_model_bytes(params, strategy, gpus).items():
        result.terms[f"policy {name}" if work.stage in ("ppo", "dpo") else name] = value
    result.terms["activations"] = activation_bytes(work.shape, work.micro_batch, work.seq_len, work.checkpointing)
    if work.stage in ("ppo", "dpo"):
        result.terms["reference (frozen)"] = frozen_model_bytes(params, strategy, gpus)
    if work.stage == "ppo":
        critic = work.critic or work.shape
        critic_params = parameter_count(critic)
        if work.with_critic:
            for name, value in trained_model_bytes(critic_params, strategy, gpus).items():
                result.terms[f"critic {name}"] = value
            critic_acts = activation_bytes(critic, work.micro_batch, work.seq_len, work.checkpointing)
            result.terms["critic activations"] = critic_acts - 6 * work.seq_len * work.micro_batch * critic.vocab
        result.terms["reward model (frozen)"] = frozen_model_bytes(critic_params, strategy, gpus)
        if work.vllm_utilization > 0:
            result.terms["vLLM engine (colocated)"] = int(work.vllm_utilization * gpu_mem_gib * GIB)
    return result


def _get(values: dict, dotted: str, default: Any) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def workload_from_config(path: str | Path, stage: str | None, size: str | None, critic_size: str | None,
                         micro_batch: int | None, seq_len: int | None) -> Workload:
    """Read what the formulas need from a stage's YAML config (the keys every entry point uses)."""
    from glm_base.configuration import MODEL_SIZES, config_for_size

    path = Path(path)
    values = read_yaml(path)
    stage = stage or path.parent.name
    if stage not in STAGES:
        raise UserError(f"{path}: cannot tell the stage from the folder {path.parent.name!r}; pass --stage "
                        f"({' | '.join(STAGES)})")

    def config_of(name: str | None):
        name = name or _get(values, "model.size", None)
        overrides = dict(_get(values, "model.overrides", {}) or {})
        if name is None:
            init_from = _get(values, "model.init_from", None) or _get(values, "init_from", None)
            if init_from and (Path(init_from) / "config.json").is_file():
                from glm_base.configuration import GLMConfig

                return GLMConfig.from_pretrained(init_from)
            raise UserError(f"{path}: no model.size and no readable model.init_from; pass --size "
                            f"({' | '.join(MODEL_SIZES)})")
        if name not in MODEL_SIZES:
            raise UserError(f"--size {name!r} is not a named size; known: {sorted(MODEL_SIZES)}")
        arch = _get(values, "model.architecture", "glm4")
        return config_for_size(name, architecture=arch, **overrides)

    shape = shape_of(config_of(size))
    critic = shape_of(config_of(critic_size)) if critic_size else None
    rows = micro_batch or max(1, int(_get(values, "batch_size", 1)))
    length = seq_len or int(_get(values, "data.max_length", 0) or 0)
    if stage == "ppo" and not seq_len:
        length = length or 0
        prompt = int(_get(values, "data.max_prompt_length", 512))
        length = max(length, prompt + int(_get(values, "rollout.max_new_tokens", 512)))
    if length <= 0:
        raise UserError(f"{path}: no data.max_length; pass --seq-len")
    vllm = 0.0
    if stage == "ppo" and _get(values, "rollout.engine", "hf") == "vllm":
        vllm = float(_get(values, "rollout.vllm_gpu_memory_utilization", _get(values, "rollout.gpu_memory_utilization", 0.3)))
    with_critic = _get(values, "ppo.algorithm", "ppo") == "ppo"
    return Workload(stage, shape, rows, length, bool(_get(values, "gradient_checkpointing", False)), critic, vllm,
                    with_critic)


def report(work: Workload, gpus: int, gpu_mem_gib: float, headroom: float) -> tuple[str, dict]:
    params = parameter_count(work.shape)
    budget = gpu_mem_gib * (1 - headroom)
    plans = [plan(work, s, gpus, gpu_mem_gib) for s in STRATEGIES]
    terms = list(dict.fromkeys(t for p in plans for t in p.terms))
    lines = [f"{work.stage}: {params / 1e9:.2f} B parameters ({work.shape.architecture}, hidden {work.shape.hidden}, "
             f"{work.shape.layers} layers), micro-batch {work.micro_batch} x {work.seq_len} tokens, "
             f"gradient checkpointing {'on' if work.checkpointing else 'off'}; {gpus} GPUs x {gpu_mem_gib:g} GiB "
             f"(budget {budget:.1f} GiB after {headroom:.0%} headroom)", "",
             "| GiB per GPU | " + " | ".join(STRATEGIES) + " |", "|---|" + "---:|" * len(STRATEGIES)]
    for term in terms:
        lines.append(f"| {term} | " + " | ".join(f"{p.terms.get(term, 0) / GIB:.1f}" for p in plans) + " |")
    lines.append("| **total** | " + " | ".join(f"**{p.total / GIB:.1f}**" for p in plans) + " |")
    lines.append("| fits | " + " | ".join("yes" if p.total / GIB <= budget else "no" for p in plans) + " |")
    lines += ["", "Formulas: trained model 2P weights + 2P gradients + 12P Adam states (DDP whole; ZeRO-2 shards "
              "gradients and states /N; ZeRO-3 and FSDP shard all /N); frozen models 2P (/N under ZeRO-3/FSDP); "
              "activations per layer s*b*(14h + 4kv + 8i) bytes (GLM-4) or s*b*(30h + 4kv) (GLM-1), 2sbh per "
              "layer plus one layer under checkpointing, plus 6sbV for the logits. See `python -m align.estimate "
              "--help`."]
    data = {"stage": work.stage, "parameters": params, "shape": asdict(work.shape), "gpus": gpus,
            "gpu_mem_gib": gpu_mem_gib, "budget_gib": budget,
            "plans": {p.strategy: {"terms_gib": {k: v / GIB for k, v in p.terms.items()}, "total_gib": p.total / GIB,
                                   "fits": p.total / GIB <= budget} for p in plans}}
    return "\n".join(lines), data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m align.estimate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--config", required=True, help="a stage's YAML config (configs/<stage>/*.yaml)")
    parser.add_argument("--stage", choices=STAGES, help="default: the config's folder name")
    parser.add_argument("--size", help="named model size (tiny | small | base | glm4-9b); default: the config's")
    parser.add_argument("--critic-size", help="PPO critic/reward model size (default: the policy's)")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--gpu-mem", type=float, default=80.0, help="GiB per GPU")
    parser.add_argument("--micro-batch", type=int, help="rows per GPU per micro-batch (default: config batch_size)")
    parser.add_argument("--seq-len", type=int, help="tokens per row (default: the config's max length)")
    parser.add_argument("--headroom", type=float, default=0.1, help="share of GPU memory kept free")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    def body():
        if args.gpus < 1 or args.gpu_mem <= 0:
            raise UserError("--gpus must be >= 1 and --gpu-mem > 0")
        work = workload_from_config(args.config, args.stage, args.size, args.critic_size, args.micro_batch,
                                    args.seq_len)
        text, data = report(work, args.gpus, args.gpu_mem, args.headroom)
        print(text)
        if args.json:
            Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")

    run_main(body)


if __name__ == "__main__":
    sys.exit(main())
