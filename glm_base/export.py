"""Convert between glm_base checkpoints and transformers' own ``GlmForCausalLM``.

``python -m glm_base.export --checkpoint DIR --out DIR`` turns a GLM-4-variant checkpoint into a plain
transformers ``GlmForCausalLM`` directory (config, safetensors, tokenizer) that loads without glm_base
and gives the same logits on causal input: the path by which vLLM, TGI, PEFT and any HF tool serve
our models. The weights already carry ``GlmForCausalLM``'s names, so the conversion is a copy.

``python -m glm_base.export --from-hf --checkpoint DIR --out DIR`` goes the other way: a
``GlmForCausalLM`` checkpoint (such as a released GLM-4 base model) becomes a glm_base checkpoint
whose span-position half of the rotary channels starts at rotation 0, so users can align real GLM-4
weights with blank infilling.

GLM-1 checkpoints have learned 2D position tables that ``GlmForCausalLM`` has no place for; they are
refused with a clear error.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, GlmConfig, GlmForCausalLM

from common.cli import run_main
from common.errors import UserError

from .configuration import GLMConfig
from .loading import check_model_dir
from .modeling import GLMForCausalLM

logger = logging.getLogger(__name__)

# Fields copied verbatim between the two configs.
_SHARED_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "attention_bias", "attention_dropout", "tie_word_embeddings", "pad_token_id",
    "bos_token_id", "eos_token_id", "use_cache",
)


class ExportError(UserError):
    """The checkpoint cannot be converted; the message says why and what would work."""


def to_transformers_config(config: GLMConfig) -> GlmConfig:
    if config.architecture != "glm4":
        raise ExportError(
            f"only GLM-4-variant checkpoints export to transformers' GlmForCausalLM; this one is "
            f"architecture={config.architecture!r} (GLM-1's learned 2D position tables have no "
            f"counterpart there). Serve it with glm_base, or pretrain a glm4 variant."
        )
    values = {name: getattr(config, name) for name in _SHARED_FIELDS}
    values["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": config.rope_theta,
        "partial_rotary_factor": config.partial_rotary_factor,
    }
    hf_config = GlmConfig(**values)
    # GlmConfig fills missing special ids with GLM-4-9B's; keep ours (None stays None).
    hf_config.eos_token_id, hf_config.pad_token_id = config.eos_token_id, config.pad_token_id
    return hf_config


def from_transformers_config(config: GlmConfig) -> GLMConfig:
    rope = dict(config.rope_parameters or {})
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"rope_type {rope.get('rope_type')!r} is not supported; glm_base uses default RoPE")
    factor = rope.get("partial_rotary_factor", 0.5)
    if factor > 0.5:
        raise ExportError(
            f"partial_rotary_factor={factor}: the 2D RoPE needs the unrotated half of each head for "
            f"span positions, so the factor must be <= 0.5"
        )
    values = {name: getattr(config, name) for name in _SHARED_FIELDS}
    return GLMConfig(
        architecture="glm4", rope_theta=rope.get("rope_theta", 10000.0), partial_rotary_factor=factor,
        scaled_residual_init=False, **values,
    )


def _copy_tokenizer(src: Path, dst: Path) -> bool:
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as err:
        logger.warning("no tokenizer copied from %s (%s)", src, err)
        return False
    tokenizer.save_pretrained(dst)
    return True


def _convert(source_cls, target_cls, target_config, checkpoint: Path, out: Path, dtype) -> Path:
    """Load ``checkpoint`` with ``source_cls``, copy its tensors into ``target_cls(target_config)``
    (same names), and save model and tokenizer to ``out``."""
    source = source_cls.from_pretrained(checkpoint, dtype=dtype)
    target = target_cls(target_config).to(source.dtype)
    missing, unexpected = target.load_state_dict(source.state_dict(), strict=False)
    missing = [k for k in missing if not (target_config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ExportError(f"weight names do not line up: missing {missing}, unexpected {unexpected}")
    target.save_pretrained(out)
    _copy_tokenizer(checkpoint, out)
    return out


def export_to_transformers(checkpoint: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``out`` as a ``GlmForCausalLM`` checkpoint equal to the glm_base one at ``checkpoint``."""
    checkpoint, out = Path(checkpoint), Path(out)
    target_config = to_transformers_config(GLMConfig.from_pretrained(checkpoint))
    return _convert(GLMForCausalLM, GlmForCausalLM, target_config, checkpoint, out, dtype)


def import_from_transformers(checkpoint: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``out`` as a glm_base GLM-4-variant checkpoint equal to the ``GlmForCausalLM`` one."""
    checkpoint, out = Path(checkpoint), Path(out)
    target_config = from_transformers_config(GlmConfig.from_pretrained(checkpoint))
    return _convert(GlmForCausalLM, GLMForCausalLM, target_config, checkpoint, out, dtype)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm_base.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="source checkpoint directory")
    parser.add_argument("--out", required=True, help="directory to write")
    parser.add_argument("--from-hf", action="store_true", help="convert a transformers GlmForCausalLM into glm_base")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="weight dtype to write (default: as stored)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    convert = import_from_transformers if args.from_hf else export_to_transformers
    out = run_main(lambda: convert(check_model_dir(args.checkpoint, "--checkpoint"), args.out, dtype))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
