"""Convert between glm_base checkpoints and transformers' own ``GlmForCausalLM``.

``python -m glm_base.export --checkpoint DIR --out DIR`` turns a GLM-4-variant checkpoint into a plain
transformers ``GlmForCausalLM`` directory (config, safetensors, tokenizer) that loads without glm_base
and gives the same logits on causal input: the path by which vLLM, TGI, PEFT and any HF tool serve
our models. The weights already carry ``GlmForCausalLM``'s names, so the conversion is a copy. A
``GLMForSequenceClassification`` checkpoint (a reward model) becomes a ``GlmForSequenceClassification``
with the same scores; a non-zero ``reward_offset`` has no place in that class, so it is written to the
exported config as ``reward_offset`` (scores there are ours + offset) and a warning says so.

``python -m glm_base.export --from-hf --checkpoint DIR --out DIR`` goes the other way: a
``GlmForCausalLM`` checkpoint (such as a released GLM-4 base model) becomes a glm_base checkpoint
whose span-position half of the rotary channels starts at rotation 0, so users can align real GLM-4
weights with blank infilling.

RoPE scaling (``rope_parameters``: linear, dynamic, yarn, llama3, ...) carries over both ways.

GLM-1 checkpoints have learned 2D position tables that ``GlmForCausalLM`` has no place for; they are
refused with a clear error.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from transformers import AutoTokenizer, GlmConfig, GlmForCausalLM, GlmForSequenceClassification

from common.cli import run_main
from common.errors import UserError

from .configuration import GLMConfig
from .loading import check_model_dir
from .modeling import GLMForCausalLM, GLMForSequenceClassification

logger = logging.getLogger(__name__)

# Fields copied verbatim between the two configs.
_SHARED_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "attention_bias", "attention_dropout", "tie_word_embeddings", "pad_token_id",
    "bos_token_id", "eos_token_id", "use_cache", "id2label", "label2id", "problem_type",
)

# glm_base class -> transformers class, by the name saved in ``config.architectures``.
_HEADS = {
    GLMForCausalLM.__name__: (GLMForCausalLM, GlmForCausalLM),
    GLMForSequenceClassification.__name__: (GLMForSequenceClassification, GlmForSequenceClassification),
}


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
    values["rope_parameters"] = dict(config.rope_parameters)  # type, theta, partial factor, any scaling
    hf_config = GlmConfig(**values)
    # GlmConfig fills missing special ids with GLM-4-9B's; keep ours (None stays None).
    hf_config.eos_token_id, hf_config.pad_token_id = config.eos_token_id, config.pad_token_id
    if config.reward_offset:
        logger.warning("reward_offset=%s is written to the exported config; GlmForSequenceClassification does not "
                       "subtract it, so its scores are glm_base's + %s", config.reward_offset, config.reward_offset)
        hf_config.reward_offset = config.reward_offset
    return hf_config


def from_transformers_config(config: GlmConfig) -> GLMConfig:
    rope = dict(config.rope_parameters or {})
    factor = rope.setdefault("partial_rotary_factor", 0.5)
    if factor > 0.5:
        raise ExportError(
            f"partial_rotary_factor={factor}: the 2D RoPE needs the unrotated half of each head for "
            f"span positions, so the factor must be <= 0.5"
        )
    values = {name: getattr(config, name) for name in _SHARED_FIELDS}
    return GLMConfig(
        architecture="glm4", rope_parameters=rope, rope_theta=rope.get("rope_theta", 10000.0),
        partial_rotary_factor=factor,
        scaled_residual_init=False, reward_offset=getattr(config, "reward_offset", 0.0), **values,
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


def _head_classes(architectures: list[str] | None, ours: bool) -> tuple[type, type]:
    """(source class, target class) for a checkpoint saved as ``architectures`` (causal LM when unset)."""
    name = (architectures or [GLMForCausalLM.__name__])[0]
    for glm_base_class, transformers_class in _HEADS.values():
        if name in (glm_base_class.__name__, transformers_class.__name__):
            return (glm_base_class, transformers_class) if ours else (transformers_class, glm_base_class)
    raise ExportError(f"architecture {name!r} has no counterpart; convertible: {sorted(_HEADS)}")


def export_to_transformers(checkpoint: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``out`` as a transformers ``GlmForCausalLM`` (or ``GlmForSequenceClassification``)
    checkpoint equal to the glm_base one at ``checkpoint``."""
    checkpoint, out = Path(checkpoint), Path(out)
    config = GLMConfig.from_pretrained(checkpoint)
    target_config = to_transformers_config(config)
    return _convert(*_head_classes(config.architectures, ours=True), target_config, checkpoint, out, dtype)


def import_from_transformers(checkpoint: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``out`` as a glm_base GLM-4-variant checkpoint equal to the ``GlmForCausalLM`` (or
    ``GlmForSequenceClassification``) one."""
    checkpoint, out = Path(checkpoint), Path(out)
    config = GlmConfig.from_pretrained(checkpoint)
    target_config = from_transformers_config(config)
    return _convert(*_head_classes(config.architectures, ours=False), target_config, checkpoint, out, dtype)


PARITY_TEXTS = ("Velda is the capital of Lorin.", "维达是洛林的首都。", "def f(x): return x * 2  # 代码")


@torch.no_grad()
def check_parity(source: str | Path, exported: str | Path, from_hf: bool = False) -> dict:
    """Max |difference| between the two directories' outputs (logits, or scores) on a padded batch
    of :data:`PARITY_TEXTS`; writes ``parity.json`` into ``exported``."""
    source, exported = Path(source), Path(exported)
    tokenizer = AutoTokenizer.from_pretrained(exported)
    config = (GlmConfig if from_hf else GLMConfig).from_pretrained(source)
    ours_cls, theirs_cls = _head_classes(config.architectures, ours=not from_hf)
    a_model, b_model = ours_cls.from_pretrained(source).eval(), theirs_cls.from_pretrained(exported).eval()
    batch = tokenizer(list(PARITY_TEXTS), return_tensors="pt", padding=True)
    a, b = a_model(**batch), b_model(**batch)
    if hasattr(a, "logits") and a.logits.dim() == 3:
        mask = batch["attention_mask"].bool()
        diff = float((a.logits - b.logits).abs()[mask].max())
    else:
        diff = float((a.logits - b.logits).abs().max())
    result = {"max_abs_diff": diff, "texts": len(PARITY_TEXTS), "source": str(source), "exported": str(exported),
              "class": theirs_cls.__name__}
    (exported / "parity.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m glm_base.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
                        help="source model directory (a run's model/ or checkpoints/step-N/)")
    parser.add_argument("--out", required=True, help="directory to write")
    parser.add_argument("--from-hf", action="store_true", help="convert a transformers GlmForCausalLM into glm_base")
    parser.add_argument("--check-parity", action="store_true",
                        help="compare both directories' outputs on a few texts; write OUT/parity.json")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="weight dtype to write (default: as stored)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    convert = import_from_transformers if args.from_hf else export_to_transformers
    out = run_main(lambda: convert(check_model_dir(args.checkpoint, "--model"), args.out, dtype))
    print(f"wrote {out}")
    if args.check_parity:
        result = check_parity(args.checkpoint, out, from_hf=args.from_hf)
        print(f"parity: max |difference| {result['max_abs_diff']:.2e} over {result['texts']} texts ({out / 'parity.json'})")


if __name__ == "__main__":
    main()
